//! Printing results: an aligned text table, JSON or Markdown.

use super::args::Format;
use evalkit::core::evaluator::RECORD_KEYS;
use serde_json::Value;

/// Prints `results.json`'s results (and groups) as a table of task, metric, value, stderr
/// (JSON prints the document, Markdown the report).
pub fn print_results(doc: &Value, format: Format) {
    match format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(doc).unwrap_or_default()),
        Format::Md => out!("{}", markdown_report(doc, None)),
        Format::Text | Format::Html => print_table(&["task", "metric", "value", "stderr", "n"], &result_rows(doc)),
    }
}

/// A Markdown report: the model and settings, then one table row per task and metric; `run`
/// names the run in the heading where a report holds several.
pub fn markdown_report(doc: &Value, run: Option<&str>) -> String {
    let c = &doc["config"];
    let mut title = c["model_name"].as_str().unwrap_or("model").to_string();
    // The step where the run's name does not already say it (`step-100`).
    let step = c["step"]
        .as_u64()
        .filter(|s| !run.is_some_and(|r| r.contains(&s.to_string())))
        .map(|s| format!("step {s}"));
    let named: Vec<String> = run.map(str::to_string).into_iter().chain(step).collect();
    if !named.is_empty() {
        title = format!("{title} ({})", named.join(", "));
    }
    let mut out = format!(
        "## evalkit results: {title}\n\nModel `{}`, seed {}, evalkit {} on libtorch {}.\n\n| task | metric | value | stderr | n |\n|---|---|---:|---:|---:|\n",
        c["model"].as_str().unwrap_or("?"),
        c["seed"],
        doc["versions"]["evalkit"].as_str().unwrap_or("?"),
        doc["versions"]["libtorch"].as_str().unwrap_or("?"),
    );
    for [task, metric, value, se, n] in result_rows(doc) {
        out.push_str(&format!("| {task} | {metric} | {value} | {se} | {n} |\n"));
    }
    let failed = failures(doc);
    if !failed.is_empty() {
        out.push_str("\n**Not reported:**\n\n");
        for (task, why) in failed {
            out.push_str(&format!("- `{task}`: {}\n", why.replace('\n', " ")));
        }
    }
    out
}

/// The tasks a run could not report (results.json's `failed`), with why, in its order.
pub fn failures(doc: &Value) -> Vec<(String, String)> {
    doc["failed"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(task, why)| {
            (
                task.clone(),
                why.as_str().map_or_else(|| why.to_string(), str::to_string),
            )
        })
        .collect()
}

fn result_rows(doc: &Value) -> Vec<[String; 5]> {
    let mut rows: Vec<[String; 5]> = vec![];
    for section in ["results", "groups"] {
        let Some(map) = doc[section].as_object() else { continue };
        for (task, m) in map {
            let n = m["n"].as_u64().map(|n| n.to_string()).unwrap_or_default();
            let Some(obj) = m.as_object() else { continue };
            for (k, v) in obj {
                if k.ends_with("_stderr") || !v.is_number() || RECORD_KEYS.contains(&k.as_str()) {
                    continue;
                }
                let se = obj
                    .get(&format!("{k}_stderr"))
                    .and_then(Value::as_f64)
                    .map(|s| format!("± {s:.4}"))
                    .unwrap_or_default();
                rows.push([
                    task.clone(),
                    k.clone(),
                    format!("{:.4}", v.as_f64().unwrap_or(f64::NAN)),
                    se,
                    n.clone(),
                ]);
            }
        }
    }
    rows
}

/// Prints rows under a header as `format` asks: a Markdown table for `md`, else aligned text.
pub fn print_rows<R: AsRef<[String]>>(format: Format, header: &[&str], rows: &[R]) {
    if format == Format::Md {
        print_markdown_table(header, rows);
    } else {
        print_table(header, rows);
    }
}

/// Prints a Markdown table (`|` in cells escaped).
pub fn print_markdown_table<R: AsRef<[String]>>(header: &[&str], rows: &[R]) {
    assert!(
        rows.iter().all(|r| r.as_ref().len() == header.len()),
        "a row as wide as the header"
    );
    let line = |cells: Vec<&str>| {
        format!(
            "| {} |",
            cells
                .iter()
                .map(|c| c.replace('|', "\\|"))
                .collect::<Vec<_>>()
                .join(" | ")
        )
    };
    outln!("{}", line(header.to_vec()));
    outln!("|{}", "---|".repeat(header.len()));
    for r in rows {
        outln!("{}", line(r.as_ref().iter().map(String::as_str).collect()));
    }
}

/// Prints rows aligned under a header.
pub fn print_table<R: AsRef<[String]>>(header: &[&str], rows: &[R]) {
    assert!(
        rows.iter().all(|r| r.as_ref().len() == header.len()),
        "a row as wide as the header"
    );
    let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.as_ref().iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    outln!("{}", line(header.to_vec()));
    outln!("{}", w.iter().map(|n| "-".repeat(*n)).collect::<Vec<_>>().join("  "));
    for r in rows {
        outln!("{}", line(r.as_ref().iter().map(String::as_str).collect()));
    }
}
