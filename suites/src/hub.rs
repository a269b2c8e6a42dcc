//! The Hugging Face Hub: benchmark rows (the parquet files of a dataset revision) and model
//! checkpoints (`org/name[@revision]`), found in (or downloaded into) the standard hub cache
//! layout (`<cache>/{datasets,models}--<org>--<name>/{refs/<revision>, snapshots/<commit>/<file>}`),
//! with an offline mode that reads the cache only. Rows come back as JSON objects for the
//! suites' serde structs, so a loader reads the hub exactly as it reads local files; a model
//! comes back as its snapshot directory, which loads like any checkpoint directory.

use crate::data::{malformed, unusable};
use crate::error::{Error, Result};
use hf_hub::{Cache, Repo, RepoType};
use parquet::file::reader::{FileReader, SerializedFileReader};
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// Where a dataset split lives on the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSource {
    /// `org/name`.
    pub repo: String,
    /// Branch, tag or commit.
    pub revision: String,
    /// Parquet files of the split, in order, relative to the repository root.
    pub files: Vec<String>,
}

/// How the hub is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubOptions {
    /// The hub cache (default: `$HF_HOME/hub`, else `~/.cache/huggingface/hub`).
    pub cache_dir: PathBuf,
    /// Read the cache only; never touch the network.
    pub offline: bool,
}

impl Default for HubOptions {
    fn default() -> Self {
        let cache_dir = std::env::var_os("HF_HUB_CACHE")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HF_HOME").map(|h| PathBuf::from(h).join("hub")))
            .unwrap_or_else(|| {
                std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| ".".into())
                    .join(".cache/huggingface/hub")
            });
        let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
        HubOptions { cache_dir, offline }
    }
}

/// The local path of one file of `src`: from the cache, else downloaded unless offline.
pub fn fetch(src: &HubSource, file: &str, opts: &HubOptions) -> Result<PathBuf> {
    let repo = Repo::with_revision(src.repo.clone(), RepoType::Dataset, src.revision.clone());
    fetch_file(&repo, &src.repo, "dataset", file, opts)
}

/// One file of a hub repository (dataset or model): the cached copy, else a download unless
/// offline; errors name the path the cache would hold it at.
fn fetch_file(repo: &Repo, id: &str, what: &str, file: &str, opts: &HubOptions) -> Result<PathBuf> {
    if let Some(p) = Cache::new(opts.cache_dir.clone()).repo(repo.clone()).get(file) {
        return Ok(p);
    }
    // A revision that is a commit hash names its snapshot folder directly: Python's
    // huggingface_hub writes no `refs/<commit>` file for it, which hf-hub's cache looks up.
    let revision = repo.revision();
    if revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit()) {
        let p = opts
            .cache_dir
            .join(repo.folder_name())
            .join("snapshots")
            .join(revision.to_ascii_lowercase())
            .join(file);
        if p.is_file() {
            return Ok(p);
        }
    }
    let expected = opts
        .cache_dir
        .join(repo.folder_name())
        .join("snapshots")
        .join("<commit>")
        .join(file);
    let page = match what {
        "dataset" => format!("https://huggingface.co/datasets/{id}"),
        _ => format!("https://huggingface.co/{id}"),
    };
    if opts.offline {
        return Err(Error::NotCached {
            path: expected,
            what: format!("{file} of {what} {id} at revision {}", repo.revision()),
            source_hint: format!("{page}: run once online (offline now: --offline or HF_HUB_OFFLINE)"),
        });
    }
    let api = hf_hub::api::sync::ApiBuilder::new()
        .with_cache_dir(opts.cache_dir.clone())
        .with_progress(false)
        .build()
        .map_err(|e| Error::Setting {
            task: id.into(),
            message: format!("cannot reach the hub: {e}"),
        })?;
    api.repo(repo.clone()).get(file).map_err(|e| Error::NotCached {
        path: expected,
        what: format!("{file} of {what} {id} at revision {}", repo.revision()),
        source_hint: format!("{page} (fetching it failed: {e})"),
    })
}

/// `org/name[@revision]` → (`org/name`, revision, `main` by default), when `s` has that shape
/// (one `/`, names of letters, digits, `-`, `_`, `.`).
///
/// ```
/// use evalkit_suites::hub::parse_model_id;
/// assert_eq!(parse_model_id("Qwen/Qwen2-0.5B@v1"), Some(("Qwen/Qwen2-0.5B".into(), "v1".into())));
/// assert_eq!(parse_model_id("org/name"), Some(("org/name".into(), "main".into())));
/// assert_eq!(parse_model_id("./checkpoints/run"), None);
/// ```
pub fn parse_model_id(s: &str) -> Option<(String, String)> {
    let (id, rev) = s.split_once('@').unwrap_or((s, "main"));
    let (org, name) = id.split_once('/')?;
    let ok = |p: &str| {
        !p.is_empty()
            && !p.starts_with('.')
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    (ok(org) && ok(name) && !rev.is_empty()).then(|| (id.to_string(), rev.to_string()))
}

/// The checkpoint directory of hub model `id` at `revision`: its snapshot in the cache, holding
/// `config.json`, `tokenizer.json`, the optional `tokenizer_config.json` and
/// `generation_config.json`, and `model.safetensors` or `model.safetensors.index.json` with
/// every shard it names — downloaded first where missing, unless offline.
pub fn model_snapshot(id: &str, revision: &str, opts: &HubOptions) -> Result<PathBuf> {
    let repo = Repo::with_revision(id.to_string(), RepoType::Model, revision.to_string());
    let get = |file: &str| fetch_file(&repo, id, "model", file, opts);
    let config = get("config.json")?;
    get("tokenizer.json")?;
    for optional in ["tokenizer_config.json", "generation_config.json"] {
        // Absent from some repositories; a checkpoint loads without them.
        let _ = get(optional);
    }
    if get("model.safetensors").is_err() {
        let index = get("model.safetensors.index.json")?;
        let text = std::fs::read_to_string(&index).map_err(|e| evalkit_core::Error::io("reading", &index, e))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| malformed(&index, e.line(), "(json)", crate::data::json_message(&e)))?;
        let mut shards: Vec<&str> = v["weight_map"]
            .as_object()
            .ok_or_else(|| unusable(&index, "no `weight_map` object naming the shards"))?
            .values()
            .filter_map(serde_json::Value::as_str)
            .collect();
        shards.sort_unstable();
        shards.dedup();
        for shard in shards {
            get(shard)?;
        }
    }
    Ok(config.parent().map(Path::to_path_buf).unwrap_or_default())
}

/// Every row of a parquet file as a JSON object.
pub fn read_parquet(path: &Path) -> Result<Vec<serde_json::Value>> {
    let file = std::fs::File::open(path).map_err(|e| evalkit_core::Error::io("reading", path, e))?;
    let reader =
        SerializedFileReader::new(file).map_err(|e| unusable(path, format!("not a readable parquet file: {e}")))?;
    let rows = reader
        .get_row_iter(None)
        .map_err(|e| unusable(path, format!("its rows cannot be read: {e}")))?;
    rows.enumerate()
        .map(|(i, r)| {
            r.map(|r| r.to_json_value())
                .map_err(|e| malformed(path, i + 1, "(parquet row)", e.to_string()))
        })
        .collect()
}

/// The rows of a hub dataset split, deserialized as `T`; errors name the file, row and field,
/// and a split without rows is refused here, naming its file, as the data directory's are.
pub fn load_rows<T: DeserializeOwned>(src: &HubSource, opts: &HubOptions) -> Result<Vec<T>> {
    Ok(load_rows_located(src, opts)?.into_iter().map(|r| r.row).collect())
}

/// A row of a hub split and where it is, for errors found after reading it.
#[derive(Debug, Clone)]
pub struct Located<T> {
    /// The row.
    pub row: T,
    /// Its parquet file in the hub cache.
    pub file: PathBuf,
    /// Its 1-based index in that file.
    pub index: usize,
}

/// [`load_rows`], each row with its file and index there.
pub fn load_rows_located<T: DeserializeOwned>(src: &HubSource, opts: &HubOptions) -> Result<Vec<Located<T>>> {
    let mut out = vec![];
    let mut last = None;
    for file in &src.files {
        let path = fetch(src, file, opts)?;
        for (i, v) in read_parquet(&path)?.into_iter().enumerate() {
            let row = serde_path_to_error::deserialize(v).map_err(|e| {
                let field = crate::data::field_of(&e.path().to_string(), e.inner());
                malformed(&path, i + 1, &field, e.into_inner().to_string())
            })?;
            out.push(Located {
                row,
                file: path.clone(),
                index: i + 1,
            });
        }
        last = Some(path);
    }
    match last {
        Some(path) => {
            let what = match src.files.len() {
                1 => format!("the parquet file of dataset {} at revision {}", src.repo, src.revision),
                n => format!(
                    "the last of {n} parquet files of dataset {} at revision {}, none of which holds a row",
                    src.repo, src.revision
                ),
            };
            let source = format!(
                "https://huggingface.co/datasets/{} (remove it from the hub cache and run online)",
                src.repo
            );
            crate::data::not_empty(out, &path, &what, &source)
        }
        None => Ok(out),
    }
}

/// The hub source of a suite, where evalkit knows one whose rows its loader reads.
pub fn source(task: &str) -> Option<HubSource> {
    let (repo, files) = match task {
        "boolq" => ("google/boolq", vec!["data/validation-00000-of-00001.parquet"]),
        "hellaswag" => ("Rowan/hellaswag", vec!["data/validation-00000-of-00001.parquet"]),
        _ => return None,
    };
    Some(HubSource {
        repo: repo.into(),
        revision: "main".into(),
        files: files.into_iter().map(String::from).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::{load_rows, HubOptions, HubSource};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use std::sync::Arc;

    #[test]
    fn a_split_without_rows_is_refused_at_load_naming_its_file() {
        let cache = tempfile::tempdir().unwrap();
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let file = "data/validation-00000-of-00001.parquet";
        let path = cache
            .path()
            .join("datasets--google--boolq/snapshots")
            .join(commit)
            .join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let schema = "message schema { REQUIRED BYTE_ARRAY question (UTF8); REQUIRED BOOLEAN answer; }";
        let schema = Arc::new(parquet::schema::parser::parse_message_type(schema).unwrap());
        let w = SerializedFileWriter::new(
            std::fs::File::create(&path).unwrap(),
            schema,
            Arc::new(WriterProperties::builder().build()),
        )
        .unwrap();
        w.close().unwrap();
        let src = HubSource {
            repo: "google/boolq".into(),
            revision: commit.into(),
            files: vec![file.into()],
        };
        let opts = HubOptions {
            cache_dir: cache.path().to_path_buf(),
            offline: true,
        };
        let e = load_rows::<serde_json::Value>(&src, &opts).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "{} holds no rows (the parquet file of dataset google/boolq at revision {commit})",
                path.display()
            )),
            "{e}"
        );
    }
}
