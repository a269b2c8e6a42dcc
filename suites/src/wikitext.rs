//! WikiText-2 raw test (lm-eval `wikitext`): whole articles scored by rolling perplexity.
//! Pages start at each top-level heading (`^ = [^=].* = $`) and run to the next; the scored
//! text is lm-eval's `wikitext_detokenizer(page)`, while words and bytes are counted on the
//! page before detokenizing.

use crate::data::read_text;
use crate::error::Result;
use crate::LoadOptions;
use evalkit_core::Evaluation;
use regex::Regex;

/// One article.
#[derive(Debug, Clone, Evaluation)]
#[eval(name = "wikitext", kind = perplexity, metrics(word_perplexity, byte_perplexity, bits_per_byte), text = Self::detokenized)]
pub struct WikiPage {
    /// The page as in the file (words and bytes are counted on it).
    #[eval(count_text)]
    pub page: String,
}

impl WikiPage {
    fn detokenized(&self) -> String {
        detokenize(&self.page)
    }
}

/// Splits `wiki.test.raw` into pages.
pub fn pages(raw: &str) -> Vec<WikiPage> {
    let heading = Regex::new(r"^ = [^=].* = $").expect("valid regex");
    let mut out: Vec<Vec<&str>> = vec![];
    for line in raw.split('\n') {
        if heading.is_match(line) {
            out.push(vec![line]);
        } else if let Some(p) = out.last_mut() {
            p.push(line);
        }
    }
    // The file ends with a newline: the split leaves one empty string that is no line.
    if raw.ends_with('\n') {
        if let Some(p) = out.last_mut() {
            p.pop();
        }
    }
    out.into_iter()
        .map(|lines| WikiPage { page: lines.join("\n") })
        .collect()
}

/// lm-eval's `wikitext_detokenizer`, step for step.
///
/// ```
/// assert_eq!(evalkit_suites::wikitext::detokenize("a @-@ b , c ( d ) 's"), "a-b, c (d)'s");
/// ```
pub fn detokenize(page: &str) -> String {
    let mut s = page.replace("s '", "s'");
    s = Regex::new(r"/' [0-9]/")
        .expect("valid")
        .replace_all(&s, "/'[0-9]/")
        .into_owned();
    for (a, b) in [
        (" @-@ ", "-"),
        (" @,@ ", ","),
        (" @.@ ", "."),
        (" : ", ": "),
        (" ; ", "; "),
        (" . ", ". "),
        (" ! ", "! "),
        (" ? ", "? "),
        (" , ", ", "),
    ] {
        s = s.replace(a, b);
    }
    for (pat, rep) in [
        (r"\(\s*([^\)]*?)\s*\)", "($1)"),
        (r"\[\s*([^\]]*?)\s*\]", "[$1]"),
        (r"\{\s*([^}]*?)\s*\}", "{$1}"),
        (r#""\s*([^"]*?)\s*""#, "\"$1\""),
        (r"'\s*([^']*?)\s*'", "'$1'"),
    ] {
        s = Regex::new(pat).expect("valid").replace_all(&s, rep).into_owned();
    }
    for (a, b) in [
        ("= = = =", "===="),
        ("= = =", "==="),
        ("= =", "=="),
        (" \u{b0} ", "\u{b0}"),
        (" \n", "\n"),
        ("\n ", "\n"),
        (" N ", " 1 "),
        (" 's", "'s"),
    ] {
        s = s.replace(a, b);
    }
    s
}

/// Loads `wikitext`.
pub fn load(opts: &LoadOptions, name: &str) -> Result<Vec<Box<dyn Evaluation>>> {
    opts.no_fewshot(name)?;
    let (path, what) = (opts.data_dir.join("wikitext2/wiki.test.raw"), "WikiText-2 raw test");
    let source = "https://huggingface.co/datasets/wikitext (wikitext-2-raw-v1, wiki.test.raw)";
    let raw = read_text(&path, what, source)?;
    let pages = pages(&raw);
    if pages.is_empty() && !raw.trim().is_empty() {
        // Text, but none that the reader takes for a page.
        return Err(crate::data::unusable(
            &path,
            format!(
                "no page: none of its {} lines is a top-level heading such as ` = Robert Boulter = ` (a line \
                 matching `^ = [^=].* = $`), which starts each page of {what}; obtain it again from {source}",
                raw.lines().count()
            ),
        ));
    }
    let pages = crate::data::not_empty(pages, &path, what, source)?;
    Ok(vec![evalkit_core::task(pages).named(name).build()])
}

#[cfg(test)]
mod tests {
    /// Loads `wikitext` from a data directory whose `wiki.test.raw` is `raw`.
    fn load(raw: &str) -> crate::Result<usize> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("wikitext2")).unwrap();
        std::fs::write(dir.path().join("wikitext2/wiki.test.raw"), raw).unwrap();
        Ok(super::load(&crate::LoadOptions::new(dir.path().to_path_buf()), "wikitext")?[0].len())
    }

    #[test]
    fn text_without_headings_says_what_starts_a_page() {
        let e = load(" some text without headings\n more text\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(
                "wiki.test.raw: no page: none of its 2 lines is a top-level heading such as ` = Robert Boulter = `"
            ),
            "{e}"
        );
        // An empty file holds no rows; a heading starts a page.
        let e = load("\n").unwrap_err().to_string();
        assert!(e.contains("wiki.test.raw holds no rows"), "{e}");
        assert_eq!(load(" = A = \n text\n = B = \n more\n").unwrap(), 2);
    }
}
