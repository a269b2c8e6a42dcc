//! What the library's unit tests share.

use crate::Tokenizer;

/// A word-level tokenizer of `<s>` (0, also the prefix token and EOS), `a`, `b` and `c`,
/// split on whitespace: the vocabulary of the unit tests' four-token models.
pub(crate) fn abc_tokenizer() -> Tokenizer {
    let vocab = ["<s>", "a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, w)| (w.to_string(), i as u32))
        .collect();
    let wl = tokenizers::models::wordlevel::WordLevel::builder()
        .vocab(vocab)
        .unk_token("<s>".into())
        .build()
        .expect("vocabulary");
    let mut t = tokenizers::Tokenizer::new(wl);
    t.with_pre_tokenizer(Some(tokenizers::pre_tokenizers::whitespace::Whitespace {}));
    Tokenizer::from_parts(t, Some(0), vec![0])
}
