//! A run's `samples_<task>.jsonl` as `compare` and `report` read it: one JSON record per
//! line, as many as the rows results.json counts for the task (`n`), so that a file cut short,
//! or left by another run, is said rather than compared or shown as the run's.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Where `task`'s samples file is in the run folder `dir`.
pub fn path(dir: &Path, task: &str) -> PathBuf {
    dir.join(format!("samples_{task}.jsonl"))
}

/// The records of `task`'s samples file in the run folder `dir`, whose results are `doc`.
pub fn read(dir: &Path, task: &str, doc: &Value) -> Result<Vec<Value>> {
    let path = path(dir, task);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let records = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{}:{}: not JSON", path.display(), i + 1)))
        .collect::<Result<Vec<Value>>>()?;
    if let Some(n) = doc["results"][task]["n"].as_u64() {
        if records.len() as u64 != n {
            bail!(
                "{} holds {} records, but results.json counts {n} rows of {task}: the file was cut or is another run's (rerun the task to write both anew)",
                path.display(),
                records.len()
            );
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::read;
    use serde_json::json;

    #[test]
    fn a_samples_file_must_hold_the_rows_results_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("samples_t.jsonl"), "{\"index\": 0}\n\n{\"index\": 1}\n").expect("write");
        let doc = |n: u64| json!({"results": {"t": {"n": n}}});
        assert_eq!(read(dir.path(), "t", &doc(2)).expect("two rows").len(), 2);
        let e = format!("{:#}", read(dir.path(), "t", &doc(3)).expect_err("cut"));
        assert!(
            e.contains("holds 2 records, but results.json counts 3 rows of t"),
            "{e}"
        );
        std::fs::write(dir.path().join("samples_t.jsonl"), "{\"index\": 0}\n{\n").expect("write");
        let e = format!("{:#}", read(dir.path(), "t", &doc(2)).expect_err("torn"));
        assert!(e.contains("samples_t.jsonl:2: not JSON"), "{e}");
    }
}
