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

/// The shared data directory.
pub fn data_dir() -> PathBuf {
    shared().join("data")
}

/// One libtorch thread: the CI machine has two cores and OpenMP threads fight otherwise.
pub fn init() {
    tch::set_num_threads(1);
}

/// Opens a shared checkpoint on the CPU in float32.
pub fn open(name: &str) -> (Box<dyn evalkit::core::Model>, evalkit::core::Tokenizer) {
    init();
    let dir = model_dir(name);
    let model = evalkit::core::load_checkpoint(&dir, Default::default()).expect("checkpoint loads");
    let tok = evalkit::core::Tokenizer::from_dir(&dir).expect("tokenizer loads");
    (model, tok)
}

/// A temporary directory named after the test.
#[macro_export]
macro_rules! tempdir {
    ($name:expr) => {
        tempfile::Builder::new().prefix(concat!("evalkit-", $name, "-")).tempdir().expect("tempdir")
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
