//! Forward throughput (tokens/s) of both test checkpoints at batch 1 and 16, 128 tokens a row:
//! the full forward (all logits) and the scoring path (body, then the head at one position per
//! row, as the engine scores a short continuation).

use super::{config, model_dir};
use criterion::{criterion_group, BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput};
use evalkit_core::{load_checkpoint, Model};
use tch::{Kind, Tensor};

fn forward(c: &mut Criterion) {
    let mut group = c.benchmark_group("forward");
    group.sampling_mode(SamplingMode::Flat);
    for name in ["stories260K-hf", "tiny-gpt2-random"] {
        let model = load_checkpoint(&model_dir(name), Default::default()).expect("checkpoint");
        let vocab = model.vocab_size() as i64;
        for batch in [1i64, 16] {
            let seq = 128i64;
            group.throughput(Throughput::Elements((batch * seq) as u64));
            let make = || {
                let ids = Tensor::randint(vocab, [batch, seq], (Kind::Int64, tch::Device::Cpu));
                let mask = ids.ones_like();
                (ids, mask)
            };
            group.bench_with_input(BenchmarkId::new(format!("{name}/all_logits"), batch), &batch, |b, _| {
                b.iter_batched(
                    make,
                    |(ids, mask)| model.forward(&ids, &mask).expect("forward"),
                    BatchSize::SmallInput,
                )
            });
            group.bench_with_input(
                BenchmarkId::new(format!("{name}/scored_head"), batch),
                &batch,
                |b, _| {
                    b.iter_batched(
                        make,
                        |(ids, mask)| {
                            let h = model.hidden_states(&ids, &mask, None).expect("body");
                            model.head(&h.narrow(1, seq - 1, 1)).expect("head")
                        },
                        BatchSize::SmallInput,
                    )
                },
            );
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = forward
}
