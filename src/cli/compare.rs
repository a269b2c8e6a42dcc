//! `evalkit compare A B`: two runs paired row by row on the rows both evaluated. Per metric:
//! the means, the difference, a seeded 95% paired bootstrap interval and, for 0/1 metrics,
//! McNemar's exact p-value; a significant difference is marked `*` (McNemar's p < 0.05 for 0/1
//! metrics, else an interval that excludes zero). Corpus
//! metrics (perplexities) have no per-row values and show the difference of the aggregates
//! only, recomputed over the common rows where the runs evaluated different rows. Runs whose
//! rows differ (a row's inputs are not the same text) are refused.

use super::args::Format;
use super::table;
use anyhow::{bail, Context, Result};
use evalkit::core::evaluator::RECORD_KEYS;
use evalkit::core::paired::{compare as paired, PairedDiff};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// Bootstrap resamples and their seed (reported with every interval).
const RESAMPLES: usize = 10_000;
const SEED: u64 = 1234;

/// The fields of a sample record that are its inputs (what was asked), by kind.
const INPUT_FIELDS: &[&str] = &["contexts", "continuations", "answer", "prompt", "target", "text"];

/// Reads `samples_<task>.jsonl` of a run into index → record.
fn samples(dir: &Path, task: &str, doc: &Value) -> Result<BTreeMap<u64, Value>> {
    super::samples_file::read(dir, task, doc)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let index = v["index"].as_u64().with_context(|| {
                format!(
                    "{}: record {}: no `index`",
                    super::samples_file::path(dir, task).display(),
                    i + 1
                )
            })?;
            Ok((index, v))
        })
        .collect()
}

/// The run directory of a results path (a directory or its results.json).
fn run_dir(p: &Path) -> &Path {
    if p.is_dir() {
        p
    } else {
        p.parent().unwrap_or(Path::new("."))
    }
}

/// One output row: task, metric, and either a paired comparison or the aggregates alone.
struct Line {
    task: String,
    metric: String,
    a: f64,
    b: f64,
    paired: Option<PairedDiff>,
}

/// Compares two runs (see the module docs).
pub fn compare(a: &Path, b: &Path, ra: &Value, rb: &Value, format: Format) -> Result<()> {
    let mut lines = vec![];
    let mut notes = vec![];
    let Some(tasks) = ra["results"].as_object() else {
        bail!("{}: no results", a.display());
    };
    let names = |r: &Value| {
        r["results"]
            .as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>().join(", "))
    };
    if !tasks.keys().any(|t| rb["results"][t].is_object()) {
        bail!(
            "the runs share no evaluation: {} has {}; {} has {}",
            a.display(),
            names(ra).unwrap_or_default(),
            b.display(),
            names(rb).unwrap_or_default()
        );
    }
    // Evaluations of one run alone are said, not silently left out.
    for (one, r, other) in [(a, ra, rb), (b, rb, ra)] {
        let alone: Vec<&str> = r["results"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(t, _)| !other["results"][t.as_str()].is_object())
            .map(|(t, _)| t.as_str())
            .collect();
        if !alone.is_empty() {
            notes.push(format!(
                "note: only {} has {}: not compared",
                one.display(),
                alone.join(", ")
            ));
        }
    }
    for (task, ma) in tasks {
        let mb = &rb["results"][task];
        if !mb.is_object() {
            continue;
        }
        let (sa, sb) = (samples(run_dir(a), task, ra)?, samples(run_dir(b), task, rb)?);
        let common: Vec<u64> = sa.keys().filter(|k| sb.contains_key(k)).copied().collect();
        if common.is_empty() {
            notes.push(format!(
                "note: {task}: the runs evaluated no row in common (a has {}, b has {}): not compared",
                sa.len(),
                sb.len()
            ));
            continue;
        }
        let same_rows = common.len() == sa.len() && common.len() == sb.len();
        if !same_rows {
            notes.push(format!(
                "note: {task}: paired on the {} rows both runs evaluated (a has {}, b has {}); the values compared are over those rows",
                common.len(),
                sa.len(),
                sb.len()
            ));
        }
        if ma["fingerprint"] != mb["fingerprint"] {
            // Different subsets may still share rows; those must have been asked the same.
            for k in &common {
                for f in INPUT_FIELDS {
                    if sa[k].get(*f) != sb[k].get(*f) {
                        bail!(
                            "{task}: the runs asked different questions (fingerprints {} and {}; row {k}'s `{f}` differs), so they cannot be paired",
                            ma["fingerprint"],
                            mb["fingerprint"]
                        );
                    }
                }
            }
        }
        let Some(obj) = ma.as_object() else { continue };
        for (metric, va) in obj {
            if metric.ends_with("_stderr") || RECORD_KEYS.contains(&metric.as_str()) {
                continue;
            }
            let (Some(mut x), Some(mut y)) = (va.as_f64(), mb[metric].as_f64()) else {
                continue;
            };
            let per_row = |s: &BTreeMap<u64, Value>| -> Option<Vec<f64>> {
                common.iter().map(|k| s[k]["metrics"][metric].as_f64()).collect()
            };
            // Only means have per-row values; corpus metrics (stderr null) are ratios of sums.
            let is_mean = ma[format!("{metric}_stderr")].is_number() || mb[format!("{metric}_stderr")].is_number();
            if !is_mean && !same_rows {
                // Each aggregate is over its own run's rows: recomputed over the common rows
                // where the samples hold what it sums, else not compared.
                let on_common = |s: &BTreeMap<u64, Value>| {
                    evalkit::core::metrics::corpus_metric(&common.iter().map(|k| &s[k]).collect::<Vec<_>>(), metric)
                };
                match (on_common(&sa), on_common(&sb)) {
                    (Some(on_a), Some(on_b)) => (x, y) = (on_a, on_b),
                    _ => {
                        notes.push(format!(
                            "note: {task}: {metric} is a corpus metric over each run's own rows, which its samples do not give over the common rows: not compared"
                        ));
                        continue;
                    }
                }
            }
            let paired = match (is_mean, per_row(&sa), per_row(&sb)) {
                (true, Some(pa), Some(pb)) => paired(&pa, &pb, RESAMPLES, SEED),
                _ => None,
            };
            if is_mean && paired.is_none() && !same_rows {
                notes.push(format!(
                    "note: {task}: {metric} has no value per row in the samples, so it is not known over the common rows: not compared"
                ));
                continue;
            }
            lines.push(Line {
                task: task.clone(),
                metric: metric.clone(),
                a: paired.as_ref().map_or(x, |p| p.a),
                b: paired.as_ref().map_or(y, |p| p.b),
                paired,
            });
        }
    }
    for n in &notes {
        eprintln!("{n}");
    }
    if lines.is_empty() {
        bail!(
            "nothing to compare: no evaluation of {} and {} has rows both runs evaluated",
            a.display(),
            b.display()
        );
    }
    if format == Format::Json {
        let out: Vec<Value> = lines
            .iter()
            .map(|l| {
                json!({"task": l.task, "metric": l.metric, "a": l.a, "b": l.b, "diff": l.b - l.a,
                       "paired": l.paired, "significant": l.paired.as_ref().map(PairedDiff::significant)})
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let rows: Vec<[String; 8]> = lines
        .iter()
        .map(|l| {
            let (ci, p, n, mark) = match &l.paired {
                Some(d) => (
                    format!("[{:+.4}, {:+.4}]", d.lo, d.hi),
                    d.mcnemar_p.map_or_else(String::new, |p| format!("{p:.4}")),
                    d.n.to_string(),
                    if d.significant() { "*" } else { "" },
                ),
                None => (String::new(), String::new(), String::new(), ""),
            };
            [
                l.task.clone(),
                l.metric.clone(),
                format!("{:.4}", l.a),
                format!("{:.4}", l.b),
                format!("{:+.4}{mark}", l.b - l.a),
                ci,
                p,
                n,
            ]
        })
        .collect();
    table::print_table(
        &[
            "task",
            "metric",
            "a",
            "b",
            "b - a",
            "95% CI (paired bootstrap)",
            "McNemar p",
            "rows",
        ],
        &rows,
    );
    outln!(
        "{RESAMPLES} bootstrap resamples, seed {SEED}; * marks a difference significant at 5% (McNemar's p for 0/1 metrics, else an interval that excludes 0)"
    );
    Ok(())
}
