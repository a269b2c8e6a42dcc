//! TorchScript modules (`torch.jit.trace`/`torch.jit.script` exports loaded with
//! `tch::CModule`): any model exported from PyTorch whose `forward` takes token ids
//! `(batch, seq)` int64 — and, when [`TorchScriptOptions::takes_mask`] is set, an attention
//! mask of the same shape — and returns logits `(batch, seq, vocab)` (a tuple or list whose
//! first element is the logits is accepted too). Such a module has no KV cache: the engine
//! recomputes instead of sharing a context, and its "hidden states" are the logits themselves.

use super::cache::KvCache;
use super::Model;
use crate::batch::TokenCounts;
use crate::error::{Error, Result, TorchContext};
use crate::request::{GenerateParams, GenerateRequest, Generation};
use crate::tokenizer::Tokenizer;
use std::path::{Path, PathBuf};
use tch::{CModule, Device, IValue, Kind, Tensor};

/// What evalkit must be told about a TorchScript module (it carries no config).
#[derive(Debug, Clone, Copy)]
pub struct TorchScriptOptions {
    /// Longest sequence the module accepts.
    pub max_len: usize,
    /// Whether `forward` takes `(ids, mask)` rather than `(ids)`.
    pub takes_mask: bool,
}

/// A loaded TorchScript language model.
#[derive(Debug)]
pub struct TorchScriptModel {
    module: CModule,
    opts: TorchScriptOptions,
    vocab: usize,
    device: Device,
    path: PathBuf,
    /// [`Model::weights_stamp`]: the module file's.
    stamp: String,
}

impl TorchScriptModel {
    /// Loads the module at `path` onto `device` and probes its vocabulary size with one token.
    pub fn load(path: &Path, device: Device, opts: TorchScriptOptions) -> Result<Self> {
        if !path.exists() {
            return Err(Error::MissingFile {
                path: path.to_path_buf(),
                hint: Some("a TorchScript module (.pt)".into()),
            });
        }
        let mut module =
            CModule::load_on_device(path, device).op(&format!("loading TorchScript module {}", path.display()))?;
        module.set_eval();
        let mut m = TorchScriptModel {
            module,
            opts,
            vocab: 0,
            device,
            path: path.to_path_buf(),
            stamp: crate::fingerprint::files_stamp(&[path.to_path_buf()])?,
        };
        let one = Tensor::zeros([1, 1], (Kind::Int64, device));
        let logits = m.run(&one, &Tensor::ones([1, 1], (Kind::Int64, device)))?;
        m.vocab = logits.size()[2] as usize;
        Ok(m)
    }

    fn run(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        let mut inputs = vec![IValue::Tensor(ids.to_device(self.device))];
        if self.opts.takes_mask {
            inputs.push(IValue::Tensor(mask.to_device(self.device)));
        }
        let out = self
            .module
            .forward_is(&inputs)
            .op(&format!("running TorchScript module {}", self.path.display()))?;
        let t = match out {
            IValue::Tensor(t) => t,
            IValue::Tuple(v) | IValue::GenericList(v) => match v.into_iter().next() {
                Some(IValue::Tensor(t)) => t,
                _ => return Err(self.shape_error("a tuple whose first element is not a tensor")),
            },
            _ => return Err(self.shape_error("neither a tensor nor a tuple")),
        };
        let (b, s) = ids.size2().op("ids shape")?;
        match t.size().as_slice() {
            [tb, ts, _] if *tb == b && *ts == s => Ok(t),
            other => Err(self.shape_error(&format!("logits of shape {other:?}, expected [{b}, {s}, vocab]"))),
        }
    }

    fn shape_error(&self, what: &str) -> Error {
        Error::Tensor {
            path: self.path.clone(),
            name: "forward output".into(),
            message: format!("returned {what}"),
        }
    }
}

impl Model for TorchScriptModel {
    fn max_len(&self) -> usize {
        self.opts.max_len
    }
    fn vocab_size(&self) -> usize {
        self.vocab
    }
    fn device(&self) -> Device {
        self.device
    }
    fn describe(&self) -> String {
        format!("torchscript:{}", self.path.display())
    }
    fn weights_stamp(&self) -> Option<String> {
        Some(self.stamp.clone())
    }
    fn hidden_states(&self, ids: &Tensor, mask: &Tensor, cache: Option<&mut KvCache>) -> Result<Tensor> {
        if cache.is_some() {
            return Err(Error::Unsupported("TorchScript models have no KV cache".into()));
        }
        self.run(ids, mask)
    }
    fn head(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(hidden.to_kind(Kind::Float))
    }
    fn new_cache(&self) -> Option<KvCache> {
        None
    }
    /// Generation left-pads a batch's prompts to one length, which only a module that reads
    /// the mask can ignore: a module without one generates the prompts of each length
    /// together, with no padding.
    fn generate(
        &self,
        tok: &Tokenizer,
        reqs: &[&GenerateRequest],
        params: &GenerateParams,
        counts: &mut TokenCounts,
    ) -> Result<Vec<Generation>> {
        if self.opts.takes_mask {
            return crate::batch::generate_batch(self, tok, reqs, params, counts);
        }
        let mut out: Vec<Option<Generation>> = vec![None; reqs.len()];
        let mut by_length: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
        for (i, r) in reqs.iter().enumerate() {
            by_length.entry(r.prompt.len()).or_default().push(i);
        }
        for at in by_length.into_values() {
            let same: Vec<&GenerateRequest> = at.iter().map(|&i| reqs[i]).collect();
            let gens = crate::batch::generate_batch(self, tok, &same, params, counts)?;
            for (i, g) in at.into_iter().zip(gens) {
                out[i] = Some(g);
            }
        }
        Ok(out.into_iter().map(|g| g.expect("every prompt has a length")).collect())
    }
}
