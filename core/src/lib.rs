//! evalkit-core: everything that runs an evaluation — models on libtorch, the tokenizer, the
//! token-level requests every evaluation kind lowers to, the scheduler, the five kinds, metrics
//! and the evaluator that writes results and resumes interrupted runs.
#![deny(missing_docs)]

pub mod device;
pub mod error;
pub mod model;
pub mod tokenizer;

pub use device::{DeviceSpec, Dtype};
pub use error::{Error, Result};
pub use model::{load_checkpoint, KvCache, LoadOptions, Model};
pub use tokenizer::Tokenizer;
pub mod batch;
pub mod evaluator;
pub mod journal;
pub mod kinds;
pub mod metrics;
pub mod request;
pub mod schedule;

pub use evaluator::Evaluator;
pub use kinds::{Evaluation, Outcome, RunOptions, TaskKind};
pub mod benchmark;
pub mod builtins;
pub mod fewshot;

pub use benchmark::{task, Benchmark};
#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use evalkit_macros::Evaluation;

// Lets `#[derive(Evaluation)]`'s `::evalkit_core::...` paths resolve inside this crate too.
extern crate self as evalkit_core;
