//! A model known only by what a run recorded of it: for merging a sharded run's journals,
//! which computes nothing, without loading weights or connecting to a server.

use super::{KvCache, Model};
use crate::error::{Error, Result};
use tch::{Device, Tensor};

/// Stands in for the model a sharded run used, from its recorded description, context length
/// and vocabulary size: enough to plan and merge the run's evaluations exactly as its shards
/// did (the journals are keyed by the description and the weights' stamp). Any forward pass is
/// an error.
///
/// ```
/// use evalkit_core::model::{unloaded::Unloaded, Model};
/// let m = Unloaded::new("llama:models/stories260K-hf (Float)", 512, 512);
/// assert_eq!((m.describe().as_str(), m.max_len()), ("llama:models/stories260K-hf (Float)", 512));
/// assert!(m.head(&tch::Tensor::zeros([1, 64], tch::kind::FLOAT_CPU)).is_err());
/// ```
#[derive(Debug, Clone)]
pub struct Unloaded {
    describe: String,
    max_len: usize,
    vocab_size: usize,
    weights_stamp: Option<String>,
}

impl Unloaded {
    /// The model that `describe` names, of `max_len` tokens and `vocab_size` outputs.
    pub fn new(describe: impl Into<String>, max_len: usize, vocab_size: usize) -> Unloaded {
        Unloaded {
            describe: describe.into(),
            max_len,
            vocab_size,
            weights_stamp: None,
        }
    }

    /// With the [`Model::weights_stamp`] the run recorded (`config.weights_stamp`): the
    /// journals are keyed by it too.
    pub fn with_weights_stamp(mut self, stamp: Option<String>) -> Unloaded {
        self.weights_stamp = stamp;
        self
    }

    fn not_loaded(&self) -> Error {
        Error::Unsupported(format!(
            "{} is not loaded here (a merge reads the shards' journals and computes nothing): a request without a journaled result cannot be scored",
            self.describe
        ))
    }
}

impl Model for Unloaded {
    fn max_len(&self) -> usize {
        self.max_len
    }
    fn vocab_size(&self) -> usize {
        self.vocab_size
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn describe(&self) -> String {
        self.describe.clone()
    }
    fn weights_stamp(&self) -> Option<String> {
        self.weights_stamp.clone()
    }
    fn hidden_states(&self, _ids: &Tensor, _mask: &Tensor, _cache: Option<&mut KvCache>) -> Result<Tensor> {
        Err(self.not_loaded())
    }
    fn head(&self, _hidden: &Tensor) -> Result<Tensor> {
        Err(self.not_loaded())
    }
    fn new_cache(&self) -> Option<KvCache> {
        None
    }
}
