//! Test helpers: where the shared models and data live, and opening them.

use std::path::PathBuf;

/// The shared folder: `EVALKIT_SHARED`, else the `shared` folder beside the workspace root (or
/// beside one of its ancestors).
pub fn shared() -> PathBuf {
    if let Some(p) = std::env::var_os("EVALKIT_SHARED") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    root.ancestors()
        .map(|a| a.join("shared"))
        .find(|p| p.join("models").is_dir())
        .unwrap_or_else(|| root.join("../shared"))
}

/// A checkpoint directory under shared/models.
pub fn model_dir(name: &str) -> PathBuf {
    shared().join("models").join(name)
}

/// A copy of the files of shared checkpoint `name` in a new folder `to` (a checkpoint a test
/// may edit, or whose weights it may remove); returns `to`.
pub fn copy_checkpoint(name: &str, to: &std::path::Path) -> PathBuf {
    std::fs::create_dir_all(to).expect("checkpoint folder");
    for f in std::fs::read_dir(model_dir(name)).expect("shared checkpoint") {
        let f = f.expect("entry").path();
        if f.is_file() {
            std::fs::copy(&f, to.join(f.file_name().expect("name"))).expect("copy");
        }
    }
    to.to_path_buf()
}

/// Chunks journaled in the journal folder `dir`: the whole lines of its `.jsonl` files past
/// each one's header. A kill may leave a last line half written, and that is no chunk a rerun
/// resumes (a torn line once made a resume test count one chunk too many, under load).
pub fn journaled_in(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .map(|t| t.matches('\n').count().saturating_sub(1))
                .sum()
        })
        .unwrap_or(0)
}

/// The JSON document in the file at `path` (results.json, a config).
/// For a test whose outside tool is `missing`: a note that it is skipped, or, where `var` is
/// set (as .ci/run sets it), a failure saying what is missing.
pub fn skip_unless_required(var: &str, missing: &str) {
    assert!(std::env::var_os(var).is_none(), "{var} is set but {missing}");
    eprintln!("note: test skipped: {missing}");
}

pub fn read_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The shared data directory.
pub fn data_dir() -> PathBuf {
    shared().join("data")
}

/// The records of `samples_<task>.jsonl` in a run's output directory.
pub fn samples(out: &std::path::Path, task: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join(format!("samples_{task}.jsonl")))
        .expect("samples")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

/// One libtorch thread: the CI machine has two cores and OpenMP threads fight otherwise.
pub fn init() {
    tch::set_num_threads(1);
}

/// Opens a shared checkpoint on the CPU in float32.
pub fn open(name: &str) -> (Box<dyn evalkit::core::Model>, evalkit::core::Tokenizer) {
    open_dir(&model_dir(name))
}

/// Opens a checkpoint directory on the CPU in float32.
pub fn open_dir(dir: &std::path::Path) -> (Box<dyn evalkit::core::Model>, evalkit::core::Tokenizer) {
    init();
    let model = evalkit::core::load_checkpoint(dir, Default::default()).expect("checkpoint loads");
    let tok = evalkit::core::Tokenizer::from_dir(dir).expect("tokenizer loads");
    (model, tok)
}

/// A seeded random GPT-NeoX checkpoint in `parent`: `tests/fixtures/gpt-neox/<variant>.json`
/// (`parallel` or `sequential`) with seed 7 and the shared GPT-NeoX-20B tokenizer, as
/// `scripts/gpt-neox-reference` makes it for transformers' reference outputs. Made by
/// `evalkit random-checkpoint` in a process of its own: its weights come from libtorch's global
/// generator, which other tests of this process draw from at the same time.
pub fn gpt_neox(variant: &str, parent: &std::path::Path) -> PathBuf {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt-neox");
    let tokenizer = parent.join("gpt-neox-tokenizer");
    if !tokenizer.join("tokenizer.json").is_file() {
        std::fs::create_dir_all(&tokenizer).expect("tokenizer dir");
        let json = model_dir("gpt-neox-20b-tokenizer").join("20B_tokenizer.json");
        std::fs::copy(json, tokenizer.join("tokenizer.json")).expect("tokenizer.json");
        std::fs::copy(
            fixtures.join("tokenizer_config.json"),
            tokenizer.join("tokenizer_config.json"),
        )
        .expect("tokenizer_config.json");
    }
    let out = parent.join(format!("gpt-neox-{variant}"));
    let made = std::process::Command::new(env!("CARGO_BIN_EXE_evalkit"))
        .arg("random-checkpoint")
        .arg("--config")
        .arg(fixtures.join(format!("{variant}.json")))
        .arg("--tokenizer")
        .arg(&tokenizer)
        .args(["--seed", "7", "--output"])
        .arg(&out)
        .output()
        .expect("evalkit runs");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    out
}

/// A temporary directory named after the test.
#[macro_export]
macro_rules! tempdir {
    ($name:expr) => {
        tempfile::Builder::new()
            .prefix(concat!("evalkit-", $name, "-"))
            .tempdir()
            .expect("tempdir")
    };
}

/// Asserts that two float slices agree elementwise within `tol`, printing the first difference.
#[macro_export]
macro_rules! assert_close {
    ($a:expr, $b:expr, $tol:expr) => {{
        let (a, b): (&[f64], &[f64]) = (&$a, &$b);
        assert_eq!(a.len(), b.len(), "lengths differ: {} vs {}", a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= $tol, "element {i}: {x} vs {y} (tolerance {})", $tol);
        }
    }};
}

/// A bigram "oracle" model: the logits at a position are row `ids[pos]` of a fixed table of
/// log-probabilities, so every score can be computed by hand.
pub mod oracle {
    use evalkit::core::model::{KvCache, Model};
    use evalkit::core::{Result, Tokenizer};
    use tch::{Device, Kind, Tensor};

    /// Vocabulary: `<s>` 0, `a` 1, `b` 2, `c` 3.
    pub const VOCAB: [&str; 4] = ["<s>", "a", "b", "c"];

    /// `P[prev][next]`.
    pub const P: [[f64; 4]; 4] = [
        [0.1, 0.5, 0.3, 0.1],
        [0.1, 0.2, 0.6, 0.1],
        [0.25, 0.25, 0.25, 0.25],
        [0.1, 0.1, 0.1, 0.7],
    ];

    /// ln P(next | prev).
    pub fn lp(prev: usize, next: usize) -> f64 {
        P[prev][next].ln()
    }

    /// The oracle model with a given max length.
    pub struct Oracle {
        pub max_len: usize,
        table: Tensor,
    }

    impl Oracle {
        pub fn new(max_len: usize) -> Self {
            let flat: Vec<f32> = P.iter().flatten().map(|p| p.ln() as f32).collect();
            Oracle {
                max_len,
                table: Tensor::from_slice(&flat).view([4, 4]),
            }
        }
    }

    impl Model for Oracle {
        fn max_len(&self) -> usize {
            self.max_len
        }
        fn vocab_size(&self) -> usize {
            4
        }
        fn device(&self) -> Device {
            Device::Cpu
        }
        fn describe(&self) -> String {
            format!("oracle:{}", self.max_len)
        }
        fn hidden_states(&self, ids: &Tensor, _mask: &Tensor, cache: Option<&mut KvCache>) -> Result<Tensor> {
            if let Some(c) = cache {
                c.advance(ids.size()[1] as usize);
            }
            Ok(ids.one_hot(4).to_kind(Kind::Float))
        }
        fn head(&self, hidden: &Tensor) -> Result<Tensor> {
            Ok(hidden.matmul(&self.table))
        }
        fn new_cache(&self) -> Option<KvCache> {
            Some(KvCache::new(0, self.max_len))
        }
    }

    /// A word-level tokenizer over [`VOCAB`] (no special tokens added; `<s>` is BOS).
    pub fn tokenizer() -> Tokenizer {
        use tokenizers::models::wordlevel::WordLevel;
        let vocab = VOCAB
            .iter()
            .enumerate()
            .map(|(i, w)| (w.to_string(), i as u32))
            .collect();
        let model = WordLevel::builder()
            .vocab(vocab)
            .unk_token("<s>".into())
            .build()
            .expect("wordlevel");
        let mut t = tokenizers::Tokenizer::new(model);
        t.with_pre_tokenizer(Some(tokenizers::pre_tokenizers::whitespace::Whitespace {}));
        t.with_decoder(Some(tokenizers::decoders::wordpiece::WordPiece::default()));
        Tokenizer::from_parts(t, Some(0), vec![0])
    }
}
