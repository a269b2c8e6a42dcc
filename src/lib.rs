//! evalkit: evaluate language models on benchmarks, in Rust, on libtorch.
//!
//! This crate is the facade: it re-exports the engine ([`core`]), the derive macro and the
//! standard suites ([`suites`]), and holds the `evalkit` command-line tool.

pub use evalkit_core as core;
pub use evalkit_suites as suites;
