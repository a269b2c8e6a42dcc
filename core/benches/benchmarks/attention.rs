//! Packed attention (tokens/s) on a HellaSwag-like batch — 16 requests of an 80-token context
//! with 4 continuations of 12 tokens — at stories260K's head size (8 heads over 4, 8 wide), 16
//! and 32 wide: the CPU span kernel ([`PackedBatch::attend`]) against libtorch's kernel on the
//! padded passes ([`PackedBatch::attend_padded`]). From 32 wide `attend` takes libtorch's
//! path too, so both rows time it.

use super::config;
use criterion::{criterion_group, BenchmarkId, Criterion, SamplingMode, Throughput};
use evalkit_core::model::packed::{PackedBatch, PackedRequest};
use tch::{Device, Kind, Tensor};

fn attention(c: &mut Criterion) {
    let mut group = c.benchmark_group("packed_attention");
    group.sampling_mode(SamplingMode::Flat);
    let context: Vec<i64> = vec![0; 80];
    let segment: Vec<i64> = vec![0; 11];
    let segments: Vec<&[i64]> = vec![&segment; 4];
    let requests: Vec<PackedRequest<'_>> = (0..16)
        .map(|_| PackedRequest {
            context: &context,
            segments: &segments,
        })
        .collect();
    let batch = PackedBatch::new(&requests, Device::Cpu).expect("layout");
    let t = batch.tokens() as i64;
    group.throughput(Throughput::Elements(t as u64));
    for (heads, kv_heads, dim) in [(8i64, 4i64, 8i64), (8, 8, 16), (8, 8, 32)] {
        let q = Tensor::randn([1, heads, t, dim], (Kind::Float, Device::Cpu));
        let k = Tensor::randn([1, kv_heads, t, dim], (Kind::Float, Device::Cpu));
        let v = Tensor::randn([1, kv_heads, t, dim], (Kind::Float, Device::Cpu));
        let shape = format!("{heads}x{dim}");
        group.bench_function(BenchmarkId::new("spans", &shape), |b| {
            b.iter(|| batch.attend(&q, &k, &v, None).expect("spans"))
        });
        group.bench_function(BenchmarkId::new("padded", &shape), |b| {
            b.iter(|| batch.attend_padded(&q, &k, &v, None).expect("padded"))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = attention
}
