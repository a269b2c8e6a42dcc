//! Named weights of a checkpoint: reads `model.safetensors` or the shards listed in
//! `model.safetensors.index.json`, and hands tensors out by name with their shape checked,
//! converted to the model's dtype and device. Errors name the file and the tensor.
//!
//! Each file is memory-mapped while its tensors are copied out of it: the weights are copied
//! once, into the process's memory, from the page cache (reading the file into a buffer first,
//! as `Tensor::read_safetensors` does, copies them twice and holds them twice in the process's
//! own memory; on GPT-2 small's 500 MB that cost about 0.3 s of start-up).

use crate::error::{read_json, Error, Result, TorchContext};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// The tensors of a checkpoint, by name, each with the file it came from.
pub struct Weights {
    tensors: HashMap<String, (Tensor, PathBuf)>,
    /// The names [`Weights::get`] has handed out (or been asked for).
    taken: RefCell<HashSet<String>>,
    /// What errors name as the source when a tensor is missing (the file or the index).
    origin: PathBuf,
    kind: Kind,
    device: Device,
}

#[derive(serde::Deserialize)]
struct ShardIndex {
    weight_map: BTreeMap<String, String>,
}

impl Weights {
    /// Reads the safetensors weights of the checkpoint directory `dir`.
    pub fn from_dir(dir: &Path, kind: Kind, device: Device) -> Result<Self> {
        let index = dir.join("model.safetensors.index.json");
        let single = dir.join("model.safetensors");
        let (files, origin) = if index.exists() {
            let idx: ShardIndex = read_json(&index)?;
            let mut files: Vec<PathBuf> = idx.weight_map.values().map(|f| dir.join(f)).collect();
            files.sort();
            files.dedup();
            (files, index)
        } else if single.exists() {
            (vec![single.clone()], single)
        } else {
            // Older checkpoints (Pythia's training-step revisions among them) hold only
            // PyTorch pickles, which evalkit does not unpickle.
            let pickled = ["pytorch_model.bin", "pytorch_model.bin.index.json"]
                .iter()
                .any(|f| dir.join(f).exists());
            let hint = if pickled {
                "a checkpoint needs model.safetensors or model.safetensors.index.json; this one holds PyTorch \
                 pickles (pytorch_model.bin): convert it once, e.g. with transformers' \
                 `AutoModelForCausalLM.from_pretrained(dir).save_pretrained(out)`"
            } else {
                "a checkpoint needs model.safetensors or model.safetensors.index.json"
            };
            return Err(Error::MissingFile {
                path: single,
                hint: Some(hint.into()),
            });
        };
        let mut tensors = HashMap::new();
        for file in files {
            if !file.exists() {
                return Err(Error::MissingFile {
                    path: file,
                    hint: Some(format!("listed in {}", origin.display())),
                });
            }
            for (name, t) in read_mapped(&file)? {
                tensors.insert(name, (t, file.clone()));
            }
        }
        Ok(Weights {
            tensors,
            taken: RefCell::default(),
            origin,
            kind,
            device,
        })
    }

    /// Builds weights from in-memory tensors (tests, and models made in process).
    pub fn from_tensors(
        tensors: impl IntoIterator<Item = (String, Tensor)>,
        origin: impl Into<PathBuf>,
        kind: Kind,
        device: Device,
    ) -> Self {
        let origin = origin.into();
        let tensors = tensors.into_iter().map(|(n, t)| (n, (t, origin.clone()))).collect();
        Weights {
            tensors,
            taken: RefCell::default(),
            origin,
            kind,
            device,
        }
    }

    /// True when the checkpoint holds a tensor of that name.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Takes the tensor `name`, checks that its shape is `shape`, and converts it to the
    /// model's dtype and device.
    pub fn get(&self, name: &str, shape: &[i64]) -> Result<Tensor> {
        self.taken.borrow_mut().insert(name.to_string());
        let (t, file) = self.tensors.get(name).ok_or_else(|| Error::Tensor {
            path: self.origin.clone(),
            name: name.to_string(),
            message: "missing from the checkpoint".into(),
        })?;
        if t.size() != shape {
            return Err(Error::Tensor {
                path: file.clone(),
                name: name.to_string(),
                message: format!("expected shape {shape:?}, got {:?}", t.size()),
            });
        }
        if !matches!(t.kind(), Kind::Half | Kind::BFloat16 | Kind::Float | Kind::Double) {
            return Err(Error::Tensor {
                path: file.clone(),
                name: name.to_string(),
                message: format!(
                    "stored as {:?}: a weight must be floating point (F16, BF16, F32, F64)",
                    t.kind()
                ),
            });
        }
        t.f_to_dtype(self.kind, false, false)
            .and_then(|t| t.f_to_device(self.device))
            .op(&format!("moving tensor `{name}` to {:?}", self.device))
    }

    /// The first tensor (by layer) of a layer numbered `layers` or more, where layers are
    /// named `{prefix}{n}.…`: a checkpoint with more layers than its config says, whose extra
    /// layers a model built from the config would silently leave out.
    ///
    /// ```
    /// use evalkit_core::model::weights::Weights;
    /// use tch::{Device, Kind, Tensor};
    /// let names = ["h.0.w", "h.1.w", "h.2.w", "wte"];
    /// let w = Weights::from_tensors(
    ///     names.map(|n| (n.to_string(), Tensor::zeros([1], (Kind::Float, Device::Cpu)))),
    ///     "model.safetensors",
    ///     Kind::Float,
    ///     Device::Cpu,
    /// );
    /// assert_eq!(w.layer_beyond("h.", 3), None);
    /// assert_eq!(w.layer_beyond("h.", 1).as_deref(), Some("h.1.w"));
    /// ```
    pub fn layer_beyond(&self, prefix: &str, layers: usize) -> Option<String> {
        self.tensors
            .keys()
            .filter_map(|name| {
                let (n, _) = name.strip_prefix(prefix)?.split_once('.')?;
                let n: usize = n.parse().ok()?;
                (n >= layers).then_some((n, name))
            })
            .min()
            .map(|(_, name)| name.clone())
    }

    /// The checkpoint's tensors that no [`Weights::get`] took, sorted, but those `buffer`
    /// says the model computes for itself (a causal mask, rotary frequencies): weights a
    /// model built from them leaves out, as transformers warns of them ("Some weights of the
    /// model checkpoint were not used").
    ///
    /// ```
    /// use evalkit_core::model::weights::Weights;
    /// use tch::{Device, Kind, Tensor};
    /// let names = ["wte", "h.0.attn.bias", "h.0.q.bias", "h.0.q.weight"];
    /// let w = Weights::from_tensors(
    ///     names.map(|n| (n.to_string(), Tensor::zeros([1], (Kind::Float, Device::Cpu)))),
    ///     "model.safetensors",
    ///     Kind::Float,
    ///     Device::Cpu,
    /// );
    /// w.get("wte", &[1])?;
    /// w.get("h.0.q.weight", &[1])?;
    /// assert_eq!(w.unused(|n| n.ends_with(".attn.bias")), ["h.0.q.bias"]);
    /// # Ok::<(), evalkit_core::Error>(())
    /// ```
    pub fn unused(&self, buffer: impl Fn(&str) -> bool) -> Vec<String> {
        let taken = self.taken.borrow();
        let mut names: Vec<String> = self
            .tensors
            .keys()
            .filter(|n| !taken.contains(n.as_str()) && !buffer(n))
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// Warns (`tracing`) of the tensors [`Weights::unused`] returns, naming the first five
    /// and how many in all: their model would compute something else than the checkpoint's.
    pub fn warn_unused(&self, buffer: impl Fn(&str) -> bool) {
        let unused = self.unused(buffer);
        if unused.is_empty() {
            return;
        }
        let quoted: Vec<String> = unused.iter().map(|n| format!("`{n}`")).collect();
        let (what, are) = match unused.len() {
            1 => ("tensor", "is"),
            _ => ("tensors", "are"),
        };
        tracing::warn!(
            "{}: {} {what} of the checkpoint {are} not used by the model: {} (does config.json \
             match the weights?)",
            self.origin.display(),
            unused.len(),
            crate::error::first_few(&quoted, 5)
        );
    }

    /// The token embedding `embed` and the output head, both `shape`, as transformers 5 reads
    /// them. Untied (`tied` false): the embedding and the first of `heads` the checkpoint
    /// holds. Tied: the embedding is the head, unless the checkpoint holds a head with other
    /// values — its config does not describe it, and transformers then warns and unties them,
    /// as this does; a tied checkpoint that stores only a head ties the embedding to it.
    ///
    /// ```
    /// use evalkit_core::model::weights::Weights;
    /// use tch::{Device, Kind, Tensor};
    /// let emb = Tensor::from_slice(&[1f32, 2.0]).view([2, 1]);
    /// let w = Weights::from_tensors(
    ///     [("wte".to_string(), emb.copy()), ("lm_head".to_string(), &emb * 0.5)],
    ///     "model.safetensors",
    ///     Kind::Float,
    ///     Device::Cpu,
    /// );
    /// // Tied in the config, but the stored head differs: the stored head is used.
    /// let (_, head) = w.embedding_and_head("wte", &["lm_head"], &[2, 1], true)?;
    /// assert_eq!(Vec::<f32>::try_from(head.view([-1]))?, [0.5, 1.0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn embedding_and_head(
        &self,
        embed: &str,
        heads: &[&str],
        shape: &[i64],
        tied: bool,
    ) -> Result<(Tensor, Tensor)> {
        let stored = heads.iter().copied().find(|h| self.contains(h));
        if !tied {
            let head = stored.or(heads.first().copied()).unwrap_or("lm_head.weight");
            return Ok((self.get(embed, shape)?, self.get(head, shape)?));
        }
        let Some(name) = stored else {
            let e = self.get(embed, shape)?;
            return Ok((e.shallow_clone(), e));
        };
        let head = self.get(name, shape)?;
        let Some(e) = self.get_opt(embed, shape)? else {
            return Ok((head.shallow_clone(), head));
        };
        if e.f_equal(&head).op("comparing the embedding and the head")? {
            return Ok((e.shallow_clone(), e));
        }
        tracing::warn!(
            "{}: config.json ties the output head to the token embedding, but the checkpoint \
             stores `{name}` with other values than `{embed}`: they are not tied (as transformers \
             reads it; set tie_word_embeddings to false to silence this)",
            self.origin.display()
        );
        Ok((e, head))
    }

    /// Like [`Weights::get`], but `None` when the tensor is absent.
    pub fn get_opt(&self, name: &str, shape: &[i64]) -> Result<Option<Tensor>> {
        if self.contains(name) {
            self.get(name, shape).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// The tensors of one safetensors file, each copied out of a read-only memory map of it.
fn read_mapped(file: &Path) -> Result<Vec<(String, Tensor)>> {
    let f = std::fs::File::open(file).map_err(|e| Error::io("opening", file, e))?;
    // SAFETY: the map is read-only and lives only while the tensors are copied out of it. As
    // with any memory-mapped file, another process truncating or rewriting the checkpoint
    // during those moments would change or fault what is read; checkpoints are not written
    // while they are evaluated.
    let map = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| Error::io("mapping", file, e))?;
    let st = safetensors::SafeTensors::deserialize(&map).map_err(|e| {
        use safetensors::SafeTensorError as E;
        let message = match e {
            E::MetadataIncompleteBuffer => format!(
                "its {} bytes are not the size its header describes (truncated, or bytes added)",
                map.len()
            ),
            E::InvalidHeaderLength => format!("truncated: its header runs past the file's {} bytes", map.len()),
            E::HeaderTooSmall => format!("{} bytes, too short for a safetensors file", map.len()),
            other => format!("not a safetensors file this build reads (its header: {other:?})"),
        };
        Error::Parse {
            path: file.to_path_buf(),
            line: None,
            message,
        }
    })?;
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let t = Tensor::try_from(view).map_err(|e| Error::Tensor {
                path: file.to_path_buf(),
                name: name.clone(),
                message: e.to_string(),
            })?;
            Ok((name, t))
        })
        .collect()
}
