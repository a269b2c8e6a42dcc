//! Log-probabilities and greedy tokens from 512 positions of logits (positions/s), at GPT-2's
//! 50,257-token vocabulary and stories260K's 512: evalkit's one-pass CPU reduction
//! ([`log_probs`]) against libtorch's `logsumexp`, gather and `argmax`, the operators it
//! replaced (and still runs on other devices).

use super::config;
use criterion::{criterion_group, BenchmarkId, Criterion, SamplingMode, Throughput};
use evalkit_core::batch::logprobs::log_probs;
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
        let (r, t) = (Tensor::from_slice(&rows), Tensor::from_slice(&targets));
        group.bench_function(BenchmarkId::new("libtorch", vocab), |b| {
            b.iter(|| {
                let lse = logits.logsumexp([-1], false);
                assert!(bool::try_from(lse.isfinite().all()).expect("bool"));
                let lp = logits.index(&[Some(&r), Some(&t)]) - lse.index_select(0, &r);
                let am = logits.argmax(-1, false).index_select(0, &r);
                (
                    Vec::<f32>::try_from(&lp).expect("floats"),
                    Vec::<i64>::try_from(&am).expect("ints"),
                )
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = logprobs
}
