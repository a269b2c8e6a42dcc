//! Benchmark modules and their shared helpers: where the test checkpoints are.

pub mod attention;
pub mod forward;
pub mod logprobs;
pub mod scheduler;

use std::path::PathBuf;

/// shared/models/<name>: `EVALKIT_SHARED`, else the `shared` folder beside the workspace.
pub fn model_dir(name: &str) -> PathBuf {
    let shared = std::env::var_os("EVALKIT_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
            root.ancestors()
                .map(|a| a.join("shared"))
                .find(|p| p.join("models").is_dir())
                .unwrap_or_else(|| root.join("../shared"))
        });
    shared.join("models").join(name)
}

/// Slow forward passes: few samples, short warm-up, flat sampling.
pub fn config() -> criterion::Criterion {
    tch::set_num_threads(1);
    criterion::Criterion::default()
        .sample_size(10)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(3))
}
