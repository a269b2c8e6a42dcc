//! evalkit-core: everything that runs an evaluation — models on libtorch, the tokenizer, the
//! token-level requests every evaluation kind lowers to, the scheduler, the five kinds, metrics
//! and the evaluator that writes results and resumes interrupted runs.
//!
//! The engine runs any [`Model`]: a Hugging Face checkpoint ([`load_checkpoint`]), a
//! TorchScript export, or your own module. Here a model that finds every token equally likely
//! scores a continuation through the whole engine (lowering, scheduling, batching, scoring):
//!
//! ```
//! use evalkit_core::kinds::{Env, LlItem, Loglikelihood, LoglikelihoodTask, RowError};
//! use evalkit_core::model::{KvCache, Model};
//! use evalkit_core::{Evaluation, RunOptions, Tokenizer};
//! use tch::{Device, Kind, Tensor};
//!
//! struct Uniform;
//! impl Model for Uniform {
//!     fn max_len(&self) -> usize { 32 }
//!     fn vocab_size(&self) -> usize { 4 }
//!     fn device(&self) -> Device { Device::Cpu }
//!     fn describe(&self) -> String { "uniform".into() }
//!     fn hidden_states(&self, ids: &Tensor, _mask: &Tensor, cache: Option<&mut KvCache>) -> evalkit_core::Result<Tensor> {
//!         if let Some(c) = cache { c.advance(ids.size()[1] as usize) }
//!         Ok(ids.zeros_like().to_kind(Kind::Float).unsqueeze(-1))
//!     }
//!     fn head(&self, hidden: &Tensor) -> evalkit_core::Result<Tensor> {
//!         Ok(hidden.matmul(&Tensor::zeros([1, 4], (Kind::Float, Device::Cpu)))) // equal logits
//!     }
//!     fn new_cache(&self) -> Option<KvCache> { Some(KvCache::new(0, 64)) }
//! }
//!
//! struct Row;
//! impl Loglikelihood for Row {
//!     fn get(&self) -> Result<LlItem, RowError> {
//!         Ok(LlItem { context: "a".into(), continuation: " b c".into() })
//!     }
//! }
//!
//! // A word-level tokenizer over four words; `<s>` is the prefix token.
//! let vocab = ["<s>", "a", "b", "c"].iter().enumerate().map(|(i, w)| (w.to_string(), i as u32)).collect();
//! let wl = tokenizers::models::wordlevel::WordLevel::builder().vocab(vocab).unk_token("<s>".into()).build().unwrap();
//! let mut t = tokenizers::Tokenizer::new(wl);
//! t.with_pre_tokenizer(Some(tokenizers::pre_tokenizers::whitespace::Whitespace {}));
//! let tokenizer = Tokenizer::from_parts(t, Some(0), vec![0]);
//!
//! let task = LoglikelihoodTask::new("demo", vec![Row]);
//! let env = Env { model: &Uniform, tokenizer: &tokenizer, options: &RunOptions::default(), journal_dir: None, progress: None };
//! let out = task.evaluate(&env)?;
//! let ll = out.per_sample["loglikelihood"][0];
//! assert!((ll - 2.0 * (0.25f64).ln()).abs() < 1e-6); // two tokens, each 1/4
//! # Ok::<(), evalkit_core::Error>(())
//! ```
#![deny(missing_docs)]

pub mod device;
pub mod error;
pub mod model;
pub mod tokenizer;

pub use device::{DeviceSpec, Dtype};
pub use error::{Error, Result};
pub use model::{load_checkpoint, KvCache, LoadOptions, Model};
pub use tokenizer::Tokenizer;
pub mod allocator;
pub mod batch;
pub mod chat;
pub mod evaluator;
pub mod journal;
pub mod kinds;
pub mod metrics;
mod output_lock;
pub mod paired;
pub mod progress;
pub mod request;
pub mod schedule;
pub mod shard;
pub mod threads;
pub mod throughput;

pub use evaluator::Evaluator;
pub use kinds::{Evaluation, Outcome, RunOptions, TaskKind};
pub use progress::Progress;
pub mod benchmark;
pub mod builtins;
pub mod fewshot;
pub mod fingerprint;
pub mod gate;
pub mod pyrandom;

pub use benchmark::{task, Benchmark};
#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
#[cfg(test)]
mod test_support;

pub use evalkit_macros::Evaluation;

// Lets `#[derive(Evaluation)]`'s `::evalkit_core::...` paths resolve inside this crate too.
extern crate self as evalkit_core;
