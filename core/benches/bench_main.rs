//! evalkit-core's one bench target: `cargo bench -p evalkit-core` (one libtorch thread).

use criterion::criterion_main;

mod benchmarks;

criterion_main! {
    benchmarks::attention::benches,
    benchmarks::forward::benches,
    benchmarks::logprobs::benches,
    benchmarks::scheduler::benches,
}
