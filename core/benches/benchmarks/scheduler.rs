//! Prefix sharing: multiple choice scored with each context's KV cache reused for every choice,
//! against each (context + choice) scored alone — wall time per item here, and the tokens each
//! way runs through the model printed once per model (the saving is in those counts).

use super::{config, model_dir};
use criterion::{criterion_group, BenchmarkId, Criterion, SamplingMode, Throughput};
use evalkit_core::kinds::{Env, McItem, MultipleChoice, MultipleChoiceTask, RowError, RunOptions};
use evalkit_core::{load_checkpoint, Evaluation, Tokenizer};

struct Item(String, Vec<String>);

impl MultipleChoice for Item {
    fn get(&self) -> Result<McItem, RowError> {
        Ok(McItem::shared(self.0.clone(), &self.1, 0))
    }
}

/// 32 items shaped like HellaSwag: a ~60-word context and four ~15-word endings.
fn items() -> Vec<Item> {
    let words = [
        "the", "girl", "ran", "to", "a", "big", "park", "and", "saw", "dog", "with", "red", "ball", "then", "they",
        "played",
    ];
    let text = |seed: usize, n: usize| {
        (0..n)
            .map(|i| words[(seed * 7 + i * 3 + i * i) % words.len()])
            .collect::<Vec<_>>()
            .join(" ")
    };
    (0..32)
        .map(|i| Item(text(i, 60), (0..4).map(|j| text(i * 4 + j + 100, 15)).collect()))
        .collect()
}

fn prefix_sharing(c: &mut Criterion) {
    let mut group = c.benchmark_group("multiple_choice");
    group.sampling_mode(SamplingMode::Flat);
    for name in ["stories260K-hf", "tiny-gpt2-random"] {
        let dir = model_dir(name);
        let model = load_checkpoint(&dir, Default::default()).expect("checkpoint");
        let tok = Tokenizer::from_dir(&dir).expect("tokenizer");
        let task = MultipleChoiceTask::new("bench", items());
        group.throughput(Throughput::Elements(32));
        for share in [true, false] {
            let opts = RunOptions {
                share_prefix: share,
                batch_size: Some(8),
                ..RunOptions::default()
            };
            let env = Env {
                model: model.as_ref(),
                tokenizer: &tok,
                options: &opts,
                journal_dir: None,
                progress: None,
            };
            let tokens = task.evaluate(&env).expect("evaluates").stats.work.tokens.forwarded;
            eprintln!(
                "{name}: {} prefix sharing runs {tokens} tokens through the model for 32 items",
                if share { "with" } else { "without" }
            );
            let id = BenchmarkId::new(name, if share { "shared_prefix" } else { "separate" });
            group.bench_function(id, |b| b.iter(|| task.evaluate(&env).expect("evaluates")));
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = prefix_sharing
}
