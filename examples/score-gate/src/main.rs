//! `cargo run -- [CHECKPOINT]`: scores a checkpoint (default: the shared stories260K) on this
//! crate's benchmark and prints each metric.

use evalkit::core::{load_checkpoint, task, Evaluator, Tokenizer};
use score_gate::{data_file, read_rows, shared_model};

fn main() -> anyhow::Result<()> {
    let dir = match std::env::args_os().nth(1) {
        Some(dir) => dir.into(),
        None => shared_model("stories260K-hf")?,
    };
    let model = load_checkpoint(&dir, Default::default())?;
    let tokenizer = Tokenizer::from_dir(&dir)?;
    let mut evaluator = Evaluator::new(model.as_ref(), &tokenizer);
    evaluator.add(task(read_rows(&data_file())?).build());
    for (name, metrics) in evaluator.evaluate()? {
        for (metric, value) in metrics {
            println!("{name} {metric} {value:.4}");
        }
    }
    Ok(())
}
