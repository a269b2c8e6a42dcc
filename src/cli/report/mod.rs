//! `evalkit report`: one or more run folders (results.json + samples_<task>.jsonl) as a
//! self-contained `report.html` (charts as inline SVG, no network needed to view it) with the
//! same charts as PNG files in `charts/` beside it, or as Markdown for a pull request.

mod charts;
mod samples;

use anyhow::{bail, Context, Result};
use charts::{Bar, Chart, Point};
use evalkit::core::evaluator::RECORD_KEYS;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const TEMPLATE: &str = include_str!("report.html");

/// One run folder as the report reads it.
pub struct Run {
    /// The folder (or the folder of the results.json given).
    pub dir: PathBuf,
    /// A short name that tells the runs apart.
    pub label: String,
    /// Its results.json.
    pub doc: Value,
}

/// Reads the runs named on the command line (folders, or their results.json files) and gives
/// each a distinct label (the folder's name, its path where names repeat).
pub fn read_runs(paths: &[PathBuf]) -> Result<Vec<Run>> {
    let mut runs = vec![];
    for p in paths {
        let (dir, file) = if p.is_dir() {
            (p.clone(), p.join("results.json"))
        } else {
            let parent = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            (parent.to_path_buf(), p.clone())
        };
        let text = super::results_text(&file)?;
        let doc: Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
        if !doc["results"].is_object() {
            bail!(
                "{} has no \"results\" object: not an evalkit results file",
                file.display()
            );
        }
        let name = dir
            .canonicalize()
            .unwrap_or_else(|_| dir.clone())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string());
        runs.push(Run { dir, label: name, doc });
    }
    let names: Vec<String> = runs.iter().map(|r| r.label.clone()).collect();
    for r in &mut runs {
        if names.iter().filter(|n| **n == r.label).count() > 1 {
            r.label = r.dir.display().to_string();
        }
    }
    Ok(runs)
}

/// The numeric metrics of one results entry, in its order, with their standard errors.
fn metrics(entry: &Value) -> Vec<(String, f64, Option<f64>)> {
    let Some(obj) = entry.as_object() else { return vec![] };
    obj.iter()
        .filter(|(k, v)| !k.ends_with("_stderr") && v.is_number() && !RECORD_KEYS.contains(&k.as_str()))
        .filter_map(|(k, v)| {
            let se = obj.get(&format!("{k}_stderr")).and_then(Value::as_f64);
            v.as_f64().map(|v| (k.clone(), v, se))
        })
        .collect()
}

/// Every (section, task) that any run reports, evaluations first, in first-seen order.
fn tasks(runs: &[Run]) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = vec![];
    for section in ["results", "groups"] {
        for r in runs {
            for task in r.doc[section].as_object().into_iter().flat_map(|m| m.keys()) {
                if !out.iter().any(|(_, t)| t == task) {
                    out.push((section, task.clone()));
                }
            }
        }
    }
    out
}

#[derive(Serialize)]
struct Cell {
    present: bool,
    value: String,
    raw: String,
    interval: String,
}

#[derive(Serialize)]
struct ResultRow {
    task: String,
    metric: String,
    group: bool,
    cells: Vec<Cell>,
}

#[derive(Serialize)]
struct ChartView {
    title: String,
    svg: String,
    png: String,
}

#[derive(Serialize)]
struct SampleTable {
    task: String,
    run: String,
    file: String,
    shown: usize,
    total: usize,
    rows: Vec<samples::Row>,
    problem: Option<String>,
}

#[derive(Serialize)]
struct Evaluation {
    task: String,
    fields: Vec<(String, String)>,
    notes: Vec<String>,
}

#[derive(Serialize)]
struct RunView {
    label: String,
    /// Tasks the run could not report, with why.
    failed: Vec<(String, String)>,
    dir: String,
    config: Vec<(String, String)>,
    versions: String,
    evaluations: Vec<Evaluation>,
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "—".into(),
        other => other.to_string(),
    }
}

fn results_table(runs: &[Run]) -> Vec<ResultRow> {
    let mut rows = vec![];
    for (section, task) in tasks(runs) {
        let mut names: Vec<String> = vec![];
        for r in runs {
            for (m, _, _) in metrics(&r.doc[section][&task]) {
                if !names.contains(&m) {
                    names.push(m);
                }
            }
        }
        for metric in names {
            let cells = runs
                .iter()
                .map(|r| {
                    let found = metrics(&r.doc[section][&task])
                        .into_iter()
                        .find(|(m, _, _)| *m == metric);
                    match found {
                        Some((_, v, se)) => Cell {
                            present: true,
                            value: format!("{v:.4}"),
                            raw: v.to_string(),
                            interval: se
                                .map(|s| {
                                    let (lo, hi) = charts::interval(&metric, v, Some(s));
                                    format!("[{lo:.4}, {hi:.4}]")
                                })
                                .unwrap_or_default(),
                        },
                        None => Cell {
                            present: false,
                            value: "—".into(),
                            raw: String::new(),
                            interval: String::new(),
                        },
                    }
                })
                .collect();
            rows.push(ResultRow {
                task: task.clone(),
                metric,
                group: section == "groups",
                cells,
            });
        }
    }
    rows
}

/// A file name made of the metric's name (`pass@1` → `pass_1`).
fn slug(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn bar_charts(runs: &[Run]) -> Vec<(String, Chart)> {
    let labels: Vec<String> = runs.iter().map(|r| r.label.clone()).collect();
    let mut by_metric: BTreeMap<String, Vec<Bar>> = BTreeMap::new();
    let mut order: Vec<String> = vec![];
    for (section, task) in tasks(runs) {
        for (i, r) in runs.iter().enumerate() {
            for (m, value, stderr) in metrics(&r.doc[section][&task]) {
                if !order.contains(&m) {
                    order.push(m.clone());
                }
                by_metric.entry(m).or_default().push(Bar {
                    task: task.clone(),
                    run: i,
                    value,
                    stderr,
                });
            }
        }
    }
    order
        .into_iter()
        .filter_map(|m| {
            let bars = by_metric.remove(&m)?;
            Some((
                format!("bars-{}", slug(&m)),
                Chart::Bars {
                    metric: m,
                    runs: labels.clone(),
                    bars,
                },
            ))
        })
        .collect()
}

/// Score-against-step charts for the runs that record `config.step` (a training job's
/// evaluations), one per metric, one line per task.
fn step_charts(runs: &[Run]) -> Vec<(String, Chart)> {
    let stepped: Vec<(f64, &Run)> = runs
        .iter()
        .filter_map(|r| r.doc["config"]["step"].as_f64().map(|s| (s, r)))
        .collect();
    if stepped.is_empty() {
        return vec![];
    }
    let mut lines: BTreeMap<String, BTreeMap<String, Vec<Point>>> = BTreeMap::new();
    for (step, r) in &stepped {
        for (section, task) in tasks(runs) {
            for (m, value, stderr) in metrics(&r.doc[section][&task]) {
                lines
                    .entry(m)
                    .or_default()
                    .entry(task.clone())
                    .or_default()
                    .push(Point {
                        step: *step,
                        value,
                        stderr,
                    });
            }
        }
    }
    lines
        .into_iter()
        .map(|(m, tasks)| {
            let lines = tasks
                .into_iter()
                .map(|(t, mut pts)| {
                    pts.sort_by(|a, b| a.step.total_cmp(&b.step));
                    (t, pts)
                })
                .collect();
            (format!("steps-{}", slug(&m)), Chart::Steps { metric: m, lines })
        })
        .collect()
}

fn sample_tables(runs: &[Run], max_rows: usize) -> Vec<SampleTable> {
    let mut out = vec![];
    for r in runs {
        for task in r.doc["results"].as_object().into_iter().flat_map(|m| m.keys()) {
            let file = super::samples_file::path(&r.dir, task);
            let mut table = SampleTable {
                task: task.clone(),
                run: r.label.clone(),
                file: file.display().to_string(),
                shown: 0,
                total: 0,
                rows: vec![],
                problem: None,
            };
            match super::samples_file::read(&r.dir, task, &r.doc) {
                Ok(mut records) => {
                    samples::worst_first(&mut records);
                    table.total = records.len();
                    table.rows = records.iter().take(max_rows).map(samples::row).collect();
                    table.shown = table.rows.len();
                }
                Err(e) => table.problem = Some(format!("{e:#}")),
            }
            out.push(table);
        }
    }
    out
}

fn run_views(runs: &[Run]) -> Vec<RunView> {
    runs.iter()
        .map(|r| {
            let config = r.doc["config"]
                .as_object()
                .map(|c| c.iter().map(|(k, v)| (k.clone(), show(v))).collect())
                .unwrap_or_default();
            let versions = r.doc["versions"]
                .as_object()
                .map(|v| {
                    v.iter()
                        .map(|(k, v)| format!("{k} {}", show(v)))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            let evaluations = r.doc["results"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(task, e)| Evaluation {
                    task: task.clone(),
                    fields: [
                        "kind",
                        "n",
                        "truncated",
                        "fingerprint",
                        "tokens_forwarded",
                        "tokens_scored",
                        "tokens_pruned",
                        "seconds",
                        "wall_seconds",
                        "chunks_computed",
                        "chunks_resumed",
                        "floor_seconds",
                        "efficiency",
                    ]
                    .iter()
                    .map(|k| {
                        let v = &e[*k];
                        let shown = match v.as_f64() {
                            Some(f) if k.ends_with("seconds") => format!("{f:.2}"),
                            Some(f) if *k == "efficiency" => format!("{:.0}%", 100.0 * f),
                            _ => show(v),
                        };
                        (k.to_string(), shown)
                    })
                    .collect(),
                    notes: e["notes"]
                        .as_array()
                        .map(|n| n.iter().map(show).collect())
                        .unwrap_or_default(),
                })
                .collect();
            RunView {
                label: r.label.clone(),
                failed: super::table::failures(&r.doc),
                dir: r.dir.display().to_string(),
                config,
                versions,
                evaluations,
            }
        })
        .collect()
}

/// What [`write_html`] wrote.
pub struct Written {
    /// The page.
    pub html: PathBuf,
    /// The PNG charts.
    pub pngs: Vec<PathBuf>,
}

/// Writes `out/report.html` and `out/charts/*.png` for `runs`, with at most `max_rows` sample
/// rows per task and run (the worst; the page says how many it left out).
pub fn write_html(runs: &[Run], out: &Path, max_rows: usize) -> Result<Written> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    charts::register_font()?;
    let draw = |list: Vec<(String, Chart)>| -> Result<Vec<ChartView>> {
        list.into_iter()
            .map(|(file, chart)| {
                let title = match &chart {
                    Chart::Bars { metric, .. } => metric.clone(),
                    Chart::Steps { metric, .. } => format!("{metric} by step"),
                };
                let drawn = chart
                    .draw(out, &file)
                    .with_context(|| format!("drawing the {title} chart"))?;
                Ok(ChartView {
                    title,
                    svg: drawn.svg,
                    png: drawn.png.display().to_string(),
                })
            })
            .collect()
    };
    let bars = draw(bar_charts(runs))?;
    let steps = draw(step_charts(runs))?;
    let pngs: Vec<PathBuf> = bars.iter().chain(&steps).map(|c| out.join(&c.png)).collect();
    // Charts an earlier report drew into this folder that this one has not (a run with other
    // tasks) would pass for this report's.
    if let Ok(entries) = std::fs::read_dir(out.join("charts")) {
        for stale in entries.flatten().map(|e| e.path()).filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            // (Only the report's own: `bars-*.png` and `steps-*.png`.)
            (name.starts_with("bars-") || name.starts_with("steps-")) && name.ends_with(".png") && !pngs.contains(p)
        }) {
            std::fs::remove_file(&stale).with_context(|| format!("removing the old chart {}", stale.display()))?;
        }
    }
    let mut env = minijinja::Environment::new();
    env.add_template("report.html", TEMPLATE)
        .context("the report template")?;
    let page = env
        .get_template("report.html")?
        .render(minijinja::context! {
            runs => runs.iter().map(|r| r.label.clone()).collect::<Vec<_>>(),
            results => results_table(runs),
            bars => bars,
            steps => steps,
            samples => sample_tables(runs, max_rows),
            records => run_views(runs),
            max_rows => max_rows,
        })
        .context("rendering the report")?;
    let html = out.join("report.html");
    evalkit::core::evaluator::write_atomic(&html, page.as_bytes())?;
    Ok(Written { html, pngs })
}

/// The Markdown report: for each run, the model and settings, then one table row per task and
/// metric.
pub fn markdown(runs: &[Run]) -> String {
    // Several runs: each heading names its run (the label that tells them apart).
    let several = runs.len() > 1;
    runs.iter()
        .map(|r| super::table::markdown_report(&r.doc, several.then_some(r.label.as_str())))
        .collect::<Vec<_>>()
        .join("\n")
}
