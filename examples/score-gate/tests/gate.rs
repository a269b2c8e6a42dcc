//! The checkpoint must keep its score on this crate's benchmark: a regression fails `cargo test`
//! with the score, its standard error and the rows that went wrong first.

use evalkit::core::gate::Bound;
use evalkit::core::{load_checkpoint, task, Evaluator, Tokenizer};
use score_gate::{data_file, read_rows, shared_model};

#[test]
fn stories260k_picks_sensible_endings() -> anyhow::Result<()> {
    let dir = shared_model("stories260K-hf")?;
    let model = load_checkpoint(&dir, Default::default())?;
    let tokenizer = Tokenizer::from_dir(&dir)?;
    let mut evaluator = Evaluator::new(model.as_ref(), &tokenizer);
    evaluator.add(task(read_rows(&data_file())?).build());
    let outcome = evaluator.outcomes()?.remove(0);
    assert_eq!(outcome.n, 12);
    outcome.require("acc", Bound::AtLeast(GATE))?;
    // The gate can fail: an unreachable bound gives an error naming the score and the rows.
    let err = outcome.require("acc", Bound::AtLeast(1.01)).unwrap_err().to_string();
    assert!(err.contains("story_endings: acc = ") && err.contains("row "), "{err}");
    Ok(())
}

/// The score this checkpoint reached when the gate was set (12 of 12), less a margin.
const GATE: f64 = 0.9;
