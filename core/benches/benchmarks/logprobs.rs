//! Log-probabilities and greedy tokens from 512 positions of logits (positions/s), at GPT-2's
//! 50,257-token vocabulary and stories260K's 512: evalkit's one-pass CPU reduction
//! ([`log_probs`]) against libtorch's `logsumexp`, gather and `argmax`
//! ([`log_probs_libtorch`], the path on other devices).

use super::config;
use criterion::{criterion_group, BenchmarkId, Criterion, SamplingMode, Throughput};
use evalkit_core::batch::logprobs::{log_probs, log_probs_libtorch};
use tch::{Device, Kind, Tensor};

fn logprobs(c: &mut Criterion) {
    let mut group = c.benchmark_group("logprobs");
    group.sampling_mode(SamplingMode::Flat);
    let positions = 512i64;
    group.throughput(Throughput::Elements(positions as u64));
    for vocab in [50_257i64, 512] {
        let logits = Tensor::randn([positions, vocab], (Kind::Float, Device::Cpu)) * 3.0;
        let rows: Vec<i64> = (0..positions).collect();
        let targets: Vec<i64> = (0..positions).map(|i| (i * 7919) % vocab).collect();
        group.bench_function(BenchmarkId::new("one_pass", vocab), |b| {
            b.iter(|| log_probs(&logits, &rows, &targets).expect("log-probs"))
        });
        group.bench_function(BenchmarkId::new("libtorch", vocab), |b| {
            b.iter(|| log_probs_libtorch(&logits, &rows, &targets).expect("log-probs"))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = logprobs
}
