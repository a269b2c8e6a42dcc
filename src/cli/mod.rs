//! The CLI: parses arguments once into settings, then dispatches on the subcommand. Exit codes:
//! 0 success, 1 a score gate (`--min`) failed, 2 an error (a task that failed to load, or whose
//! run stopped on a row of its data, is reported and the others still run; the exit status
//! then is 2).

#[macro_use]
mod out;

mod args;
mod compare;
mod log;
mod report;
mod samples_file;
mod settings;
mod shards;
mod table;

use anyhow::{Context, Result};
use args::{Cli, Command, Format};
use clap::Parser;
use evalkit::core::error::first_few;
use evalkit::core::evaluator::{Evaluator, RunEnd, RECORD_KEYS};
use evalkit::core::kinds::TaskKind;
use evalkit::core::shard::Share;
use evalkit::core::throughput::RawThroughput;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Runs the command line; returns the process's exit status (a number rather than an
/// `ExitCode`: `main` ends the process itself, skipping libtorch's teardown).
pub fn run() -> Result<u8> {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help, --version (status 0) and usage errors (2), printed as clap prints them.
        Err(e) => {
            e.print()?;
            return Ok(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    log::init();
    tch::set_num_threads(cli.global.threads());
    // A format a command does not print is refused, not silently replaced by text.
    let prints = |command: &str, formats: &[Format], names: &str| -> Result<()> {
        if formats.contains(&cli.global.format) {
            Ok(())
        } else {
            anyhow::bail!("`{command}` prints {names}, not --format {}", cli.global.format.name())
        }
    };
    let tables = [Format::Text, Format::Json, Format::Md];
    match &cli.command {
        Command::Run(_) => prints("run", &tables, "text, json or md")?,
        Command::Show { .. } => prints("show", &tables, "text, json or md")?,
        Command::Compare { .. } => prints("compare", &[Format::Text, Format::Json], "text or json")?,
        Command::Demo(_) => prints("demo", &tables, "text, json or md")?,
        Command::Merge { .. } => prints("merge", &tables, "text, json or md")?,
        Command::RandomCheckpoint(_) => prints("random-checkpoint", &[Format::Text], "text")?,
        Command::List { .. } => prints("list", &tables, "text, json or md")?,
        Command::Report { .. } => {}
    }
    match cli.command {
        Command::Run(a) => run_tasks(&a, &cli.global),
        Command::List { data_dir } => list(cli.global.format, data_dir.as_deref()),
        Command::Show { path } => {
            let doc = read_results(&path)?;
            table::print_results(&doc, cli.global.format);
            failed_notes(&doc, |_| true);
            Ok(0)
        }
        Command::Report { paths, output, rows } => write_report(&paths, output, rows, &cli.global),
        Command::Compare { a, b } => compare(&a, &b, cli.global.format),
        Command::Merge { dir } => merge(&dir, &cli.global),
        Command::RandomCheckpoint(r) => random_checkpoint(&r),
        Command::Demo(d) => demo(&d, &cli.global),
    }
}

/// `evalkit random-checkpoint`: writes the checkpoint and says what it holds.
fn random_checkpoint(r: &args::RandomCheckpointArgs) -> Result<u8> {
    use evalkit::core::model::random;
    let config = match (&r.preset, &r.config) {
        (Some(name), _) => random::preset(name)?,
        (None, Some(path)) => random::read_config(path)?,
        (None, None) => anyhow::bail!("give --preset or --config"),
    };
    let made = random::write(&config, &r.tokenizer, r.seed, r.dtype.into(), &r.output)?;
    outln!(
        "wrote {}: {} parameters ({:.1} MB of weights, seed {})",
        made.dir.display(),
        made.parameters,
        made.bytes as f64 / 1e6,
        r.seed
    );
    Ok(0)
}

fn read_results(path: &Path) -> Result<Value> {
    let file = if path.is_dir() {
        path.join("results.json")
    } else {
        path.to_path_buf()
    };
    let text = results_text(&file)?;
    let doc: Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
    if !doc["results"].is_object() {
        anyhow::bail!(
            "{} has no `results` object: not an evalkit results file",
            file.display()
        );
    }
    Ok(doc)
}

/// The text of a run's results.json; a run that has not finished (its journal is there) says
/// how to finish it.
pub fn results_text(file: &Path) -> Result<String> {
    std::fs::read_to_string(file).with_context(|| {
        let journal = file.with_file_name(".journal");
        if journal.is_dir() {
            format!(
                "reading {}: the run has not finished; rerun its command to resume it from {} (or `evalkit merge` a sharded run whose shards are done)",
                file.display(),
                journal.display()
            )
        } else {
            format!("reading {}", file.display())
        }
    })
}

/// `evalkit list`: every benchmark; with `data_dir`, the rows each loads from it, or why not.
fn list(format: Format, data_dir: Option<&Path>) -> Result<u8> {
    if let Some(dir) = data_dir.filter(|d| !d.is_dir()) {
        anyhow::bail!("--data-dir {}: no such folder", dir.display());
    }
    let suites = evalkit::suites::all();
    let found: Vec<Option<std::result::Result<usize, String>>> = suites
        .iter()
        .map(|s| data_dir.map(|dir| rows_found(&s.name, dir)))
        .collect();
    match format {
        Format::Json => {
            let mut entries = serde_json::to_value(&suites)?;
            if let Some(entries) = entries.as_array_mut() {
                for (entry, found) in entries.iter_mut().zip(&found) {
                    match found {
                        Some(Ok(n)) => entry["rows_found"] = (*n).into(),
                        Some(Err(e)) => entry["data_error"] = e.as_str().into(),
                        None => {}
                    }
                }
            }
            outln!("{}", serde_json::to_string_pretty(&entries)?);
            return Ok(0);
        }
        Format::Text | Format::Md | Format::Html => {}
    }
    let rows: Vec<Vec<String>> = suites
        .iter()
        .zip(&found)
        .map(|(s, found)| {
            let mut row = vec![
                s.name.clone(),
                s.kind.as_str().into(),
                s.metrics.join(","),
                s.split.into(),
                s.rows.to_string(),
                s.num_fewshot.to_string(),
            ];
            match found {
                None => {}
                Some(Ok(n)) => row.push(n.to_string()),
                Some(Err(_)) => row.push("-".into()),
            }
            row
        })
        .collect();
    let header = ["task", "kind", "metrics", "split", "rows", "fewshot", "found"];
    // `found` only where a data folder was read.
    table::print_rows(format, &header[..6 + usize::from(data_dir.is_some())], &rows);
    let errors: Vec<_> = suites
        .iter()
        .zip(&found)
        .filter_map(|(s, f)| match f {
            Some(Err(e)) => Some((&s.name, e)),
            _ => None,
        })
        .collect();
    if let (Some(dir), false) = (data_dir, errors.is_empty()) {
        eprintln!(
            "\n{} of {} tasks do not load from {}:",
            errors.len(),
            suites.len(),
            dir.display()
        );
        for (name, e) in errors {
            eprintln!("  {name}: {e}");
        }
    }
    Ok(0)
}

/// The rows benchmark `name` loads from `dir` at its default few-shot setting (the evaluations'
/// rows summed), or why it does not load. HumanEval is read as if its code were confirmed to
/// run (listing runs no completion), so it loads where a run would: where its problems are
/// and a `python3` answers to run their tests.
fn rows_found(name: &str, dir: &Path) -> std::result::Result<usize, String> {
    let opts = evalkit::suites::LoadOptions {
        confirm_run_unsafe_code: true,
        ..evalkit::suites::LoadOptions::new(dir.to_path_buf())
    };
    let loaded = evalkit::suites::load(name, &opts).map_err(|e| e.to_string())?;
    match loaded.not_loaded.first() {
        Some((member, e)) => Err(format!(
            "{} of its members do not load; {member}: {e}",
            loaded.not_loaded.len()
        )),
        None => Ok(loaded.evaluations.iter().map(|e| e.len()).sum()),
    }
}

/// `evalkit run`: the whole run in this process, `--shards N` workers, or (launched by
/// `--shards`, torchrun or Slurm) one shard of a run.
fn run_tasks(a: &args::RunArgs, g: &args::Global) -> Result<u8> {
    // An unknown task name (or a pattern matching none) is refused before a model loads.
    settings::expand_tasks(&a.tasks)?;
    let launch = shards::launch()?;
    let shards = usize::from(a.shards);
    match &launch {
        None if shards > 1 => {
            // A served model's results go under its id on the server, known once connected:
            // ask it, as each shard will.
            let name = if settings::served_url(&a.model).is_some() && a.output.is_none() {
                settings::served_name(&a.model, &hub_options(a))?
            } else {
                settings::model_name(&a.model)
            };
            let output = settings::output_dir(a, &name);
            let doc = shards::spawn(a, shards, g.threads, &output)?;
            let code = finish(&doc, a, g, &output)?;
            // Evaluations that failed on their own: the worker that merged named them.
            return Ok(if doc.get("failed").is_some() { 2 } else { code });
        }
        Some(l) if shards > 1 && shards != l.world => anyhow::bail!(
            "--shards {shards}, but {} started {} processes (drop --shards under a launcher)",
            l.launcher,
            l.world
        ),
        _ => {}
    }
    let share = match &launch {
        Some(l) => Share::rank(l.rank, l.world)?,
        None => Share::Whole,
    };
    let device = shards::device_for(&a.model.device, launch.as_ref().map(|l| l.local_rank))?;
    let command: Vec<String> = std::env::args().skip(1).collect();
    let mut model_args = a.model.clone();
    model_args.device = device;
    let opened = settings::open_model(&model_args, &hub_options(a))?;
    run_process(a, g, share, opened, launch.as_ref(), command)
}

fn hub_options(a: &args::RunArgs) -> evalkit::suites::hub::HubOptions {
    evalkit::suites::hub::HubOptions {
        offline: a.offline || evalkit::suites::hub::HubOptions::default().offline,
        ..Default::default()
    }
}

/// `evalkit merge DIR`: the recorded run, computing nothing: the tokenizer and the tasks are
/// opened as the shards opened them, the model is not (a stand-in from the run's record).
fn merge(dir: &Path, g: &args::Global) -> Result<u8> {
    let dir = std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))?;
    let rec = shards::recorded(&dir)?;
    std::env::set_current_dir(&rec.cwd)
        .with_context(|| format!("entering {}, where the run was started", rec.cwd.display()))?;
    let mut a = rec.args;
    a.output = Some(dir);
    let opened = settings::open_unloaded(&a.model, &hub_options(&a), rec.model)?;
    run_process(&a, g, Share::Merge { world: rec.world }, opened, None, rec.command)
}

/// Runs this process's part with the opened model: loads the tasks, runs, prints and gates
/// the results where this process wrote them. `command` (the `run` arguments) is recorded
/// (`evalkit merge` rebuilds a sharded run from it).
fn run_process(
    a: &args::RunArgs,
    g: &args::Global,
    share: Share,
    opened: settings::OpenedModel,
    launch: Option<&evalkit::core::shard::Launch>,
    command: Vec<String>,
) -> Result<u8> {
    let s = settings::run_settings(a, &opened)?;
    if !g.quiet && launch.is_none_or(|l| l.rank == 0) {
        for n in &s.notes {
            eprintln!("note: {n}");
        }
    }
    let mut ev = Evaluator::new(opened.model.as_ref(), &opened.tokenizer);
    ev.options = s.options.clone();
    ev.options.share = share;
    // One progress display per machine: the first shard's.
    ev.progress = !g.quiet && launch.is_none_or(|l| l.local_rank == 0) && !matches!(share, Share::Merge { .. });
    let mut failed = false;
    // Each evaluation and group once, however often asked (`arc_easy,arc_easy`, or `mmlu` and
    // one of its subjects): the kinds by name, the groups' members.
    let mut kinds: Vec<(String, TaskKind)> = vec![];
    let mut groups: Vec<(String, Vec<String>)> = vec![];
    let mut repeated: Vec<String> = vec![];
    let mut unloaded: Vec<String> = vec![];
    for t in &s.tasks {
        match evalkit::suites::load(t, &s.suite_options) {
            Ok(loaded) => {
                for e in loaded.evaluations {
                    if kinds.iter().any(|(n, _)| n == e.name()) {
                        repeated.push(e.name().to_string());
                        continue;
                    }
                    kinds.push((e.name().to_string(), e.kind()));
                    ev.add(e);
                }
                for gr in loaded.groups {
                    if groups.iter().any(|(n, _)| *n == gr.name) {
                        repeated.push(gr.name.clone());
                        continue;
                    }
                    groups.push((gr.name.clone(), gr.members.clone()));
                    ev.add_group(gr);
                }
                // Members that did not load while the others did (an MMLU subject).
                for (member, e) in loaded.not_loaded {
                    if unloaded.contains(&member) {
                        continue;
                    }
                    let message = error_message(&e.into());
                    print_error(&format!("task {member}: {message}"));
                    ev.not_loaded(&member, &message);
                    unloaded.push(member);
                    failed = true;
                }
            }
            Err(e) => {
                // (Not named twice where the error names the task itself.)
                let message = error_message(&e.into());
                if message.contains(&format!("`{t}`")) {
                    print_error(&message);
                } else {
                    print_error(&format!("task {t}: {message}"));
                }
                ev.not_loaded(t, &message);
                unloaded.push(t.clone());
                failed = true;
            }
        }
    }
    if ev.names().is_empty() {
        anyhow::bail!("no task could be loaded");
    }
    if !repeated.is_empty() && !g.quiet {
        eprintln!(
            "note: {} asked more than once (by name or through a group): evaluated once",
            first_few(&repeated, 5)
        );
    }
    // A gate on an evaluation the run does not have, or on a metric it cannot report, would
    // only fail at the end.
    check_gates(&settings::gates(a)?, &kinds, &groups)?;
    // Generation settings where nothing generates are ignored: said, not silently.
    let generation: Vec<&str> = [
        (a.samples_per_prompt > 1, "--samples-per-prompt"),
        (a.temperature > 0.0, "--temperature"),
        (a.top_p != 1.0, "--top-p"),
        (a.max_new_tokens.is_some(), "--max-new-tokens"),
        (a.gen_kwargs.is_some(), "--gen-kwargs"),
    ]
    .into_iter()
    .filter_map(|(given, flag)| given.then_some(flag))
    .collect();
    // (Said once per run, even with -q: a setting that does nothing is not noise.)
    let says = launch.is_none_or(|l| l.rank == 0) && !matches!(share, Share::Merge { .. });
    if says && !generation.is_empty() && !kinds.iter().any(|(_, k)| *k == TaskKind::Generate) {
        eprintln!(
            "note: {} only {} to tasks that generate, and none of these does: ignored",
            generation.join(", "),
            if generation.len() == 1 { "applies" } else { "apply" }
        );
    }
    if failed && share != Share::Whole {
        anyhow::bail!("a sharded run needs every task: fix the tasks above, then start the shards again");
    }
    ev.config.insert("model_name".into(), opened.name.clone().into());
    ev.config.insert(
        "data_dir".into(),
        absolute(&s.suite_options.data_dir).display().to_string().into(),
    );
    ev.config
        .insert("num_fewshot".into(), serde_json::json!(s.suite_options.num_fewshot));
    // How the run was started, and where (`evalkit merge` rebuilds a sharded run from them).
    let cwd = std::env::current_dir().context("reading the current directory")?;
    ev.config.insert("command".into(), serde_json::json!(command));
    ev.config.insert("cwd".into(), serde_json::json!(cwd));
    if let Some(step) = a.step {
        ev.at_step(step);
    }
    // (A merge computes nothing: no floor to measure.)
    if a.floor && !matches!(share, Share::Merge { .. }) {
        let raw = RawThroughput::measure(opened.model.as_ref(), std::time::Duration::from_secs(10))
            .context("measuring the model's raw speed (--floor)")?;
        if g.verbose {
            let who = launch.map_or_else(String::new, |l| format!("shard {} of {}: ", l.rank, l.world));
            eprintln!(
                "{who}raw speed: body {:.0} tokens/s (batch {} × {}; {:.0} pruned), head {:.3} ms per position",
                raw.body_tokens_per_second,
                raw.body_batch,
                raw.body_seq,
                raw.body_pruned_tokens_per_second,
                raw.head_seconds_per_position * 1e3
            );
        }
        ev.raw_throughput = Some(raw);
    }
    let interrupt_note = (share == Share::Whole).then(|| InterruptNote::install(&s.output));
    let start = std::time::Instant::now();
    let end = match ev.run_share(&s.output) {
        Ok(end) => end,
        // Every evaluation failed on its own: the shard that merged says so, and the process
        // that started the workers asks for the same command again (not one shard alone).
        Err(e) if shards::is_worker() && failed_on_their_own(&e) => {
            print_error(&error_message(&anyhow::Error::from(e)));
            return Ok(shards::ALL_FAILED_EXIT);
        }
        // It names the folder.
        Err(e @ evalkit::core::Error::Locked { .. }) => return Err(e.into()),
        Err(e) => {
            let doing = if matches!(share, Share::Merge { .. }) {
                "merging"
            } else {
                "running into"
            };
            return Err(anyhow::Error::from(e).context(format!("{doing} {}", s.output.display())));
        }
    };
    drop(interrupt_note);
    let who = launch.map_or_else(String::new, |l| format!("shard {} of {}: ", l.rank, l.world));
    let doc = match end {
        RunEnd::Results(doc) => doc,
        RunEnd::Partial { doc, failed: errors } => {
            for e in errors {
                print_error(&error_message(&e.into()));
            }
            // The groups left out for them (the evaluations' own errors are above, as are the
            // tasks that did not load).
            let evaluations = ev.names();
            failed_notes(&doc, |name| {
                !evaluations.contains(&name) && !unloaded.iter().any(|t| t == name)
            });
            eprintln!(
                "note: the other evaluations' results are written; the journal in {} is kept, so the \
                 same command, once the above is fixed, reuses their work",
                s.output.join(".journal").display()
            );
            failed = true;
            doc
        }
        RunEnd::Waiting { ranks } => {
            let ranks: Vec<String> = ranks.iter().map(ToString::to_string).collect();
            eprintln!(
                "{who}share done in {:.1} s; shard(s) {} not done yet (running, or to be started; the last to finish writes {})",
                start.elapsed().as_secs_f64(),
                ranks.join(", "),
                s.output.join("results.json").display()
            );
            return Ok(0);
        }
        RunEnd::Merging => {
            eprintln!(
                "{who}share done; another shard is writing the results (if none is, run `evalkit merge {}`)",
                s.output.display()
            );
            return Ok(0);
        }
    };
    if !g.quiet {
        eprintln!(
            "{who}wrote {} ({:.1} s)",
            s.output.join("results.json").display(),
            start.elapsed().as_secs_f64()
        );
    }
    if shards::is_worker() {
        // The process that started the workers prints the table and checks the gates.
        return Ok(if failed { shards::PARTIAL_EXIT } else { 0 });
    }
    stale_samples(&doc, &s.output);
    let code = finish(&doc, a, g, &s.output)?;
    Ok(if failed { 2 } else { code })
}

/// Whether `e` is the failure of evaluations on their own (rows of their data, requests the
/// model cannot run), each of them.
fn failed_on_their_own(e: &evalkit::core::Error) -> bool {
    match e {
        evalkit::core::Error::Evaluations(all) => all.iter().all(evalkit::core::Error::is_evaluation_specific),
        one => one.is_evaluation_specific(),
    }
}

/// Prints the results and checks the run's gates: exit 1 when one fails.
fn finish(doc: &Value, a: &args::RunArgs, g: &args::Global, output: &Path) -> Result<u8> {
    table::print_results(doc, g.format);
    notes(doc, g.verbose);
    let mut gate_failed = false;
    for gate in &settings::gates(a)? {
        if let Some(why) = gate_failure(gate, doc, output) {
            eprintln!("{why}");
            gate_failed = true;
        }
    }
    Ok(if gate_failed { 1 } else { 0 })
}

/// What the table leaves out, on stderr: rows whose input was cut to fit the model (always),
/// and with `--verbose` each evaluation's seconds, tokens, chunks and efficiency.
fn notes(doc: &Value, verbose: bool) {
    let max_len = &doc["config"]["max_len"];
    // A --limit beyond a task's rows (a partial copy of a file, or a small MMLU subject).
    let subset = &doc["config"]["subset"];
    if let Some(limit) = subset["first"].as_u64().or(subset["sample"].as_u64()) {
        let short: Vec<String> = doc["results"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(task, e)| e["n"].as_u64().filter(|&n| n < limit).map(|n| format!("{task} {n}")))
            .collect();
        if !short.is_empty() {
            eprintln!(
                "note: --limit {limit}: {} task(s) have fewer rows, all of which were evaluated: {}",
                short.len(),
                first_few(&short, 5)
            );
        }
    }
    let cut: Vec<(&String, u64, u64)> = doc["results"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(task, e)| (task, e["truncated"].as_u64().unwrap_or(0), e["n"].as_u64().unwrap_or(0)))
        .filter(|&(_, t, _)| t > 0)
        .collect();
    print_notes(task_notes(
        cut.iter()
            .map(|(task, t, n)| {
                (
                    format!("{task} {t} of {n}"),
                    format!("{task}: {t} of {n} rows were cut to fit the model's max length {max_len} (their earliest tokens dropped; `truncated` in samples_{task}.jsonl)"),
                )
            })
            .collect(),
        |count, all| {
            format!("rows of {count} tasks were cut to fit the model's max length {max_len} (their earliest tokens dropped; `truncated` in their samples files): {all}")
        },
    ));
    let (mut discarded, mut resumed) = (vec![], vec![]);
    for (task, e) in doc["results"].as_object().into_iter().flatten() {
        let n = |k: &str| e[k].as_u64().unwrap_or(0);
        // A chat template that refuses a system message: rendered without it, as lm-eval
        // renders it after its warning.
        let refused = &e["notes"]["chat_template"];
        if let Some(rows) = refused["rows_without_system_message"].as_u64().filter(|&r| r > 0) {
            eprintln!(
                "note: {task}: the chat template refuses a system message ({}), so {rows} of {} rows were rendered without it (the system instruction and any description)",
                refused["reason"].as_str().unwrap_or("no reason given"),
                n("n")
            );
        }
        // Generation with less room than asked (a short model): lm-eval lowers it the same way.
        let lowered = &e["notes"]["max_new_tokens"];
        if let (Some(asked), Some(used)) = (lowered["requested"].as_u64(), lowered["used"].as_u64()) {
            eprintln!(
                "note: {task}: at most {used} new tokens were generated, not the {asked} asked ({})",
                lowered["reason"].as_str().unwrap_or("no reason given")
            );
        }
        if n("chunks_discarded") > 0 {
            discarded.push((task, n("chunks_discarded")));
        }
        if n("chunks_resumed") > 0 && !verbose {
            resumed.push((task, n("chunks_resumed"), n("chunks_resumed") + n("chunks_computed")));
        }
        if verbose {
            let wall = e["wall_seconds"].as_f64().unwrap_or(0.0);
            let efficiency = e["efficiency"]
                .as_f64()
                .map_or_else(String::new, |f| format!(", {:.0}% of its floor", 100.0 * f));
            eprintln!(
                "{task}: {wall:.2} s, {} tokens forwarded ({:.0}/s), {} scored; {} chunks computed, {} resumed{efficiency}",
                n("tokens_forwarded"),
                n("tokens_forwarded") as f64 / wall.max(1e-9),
                n("tokens_scored"),
                n("chunks_computed"),
                n("chunks_resumed"),
            );
        }
    }
    const OTHER_SETTINGS: &str =
        "chunks of an earlier run with other settings (data, tokenizer, weights, batch or chunk size): discarded, and computed afresh";
    print_notes(task_notes(
        discarded
            .iter()
            .map(|(task, d)| {
                (
                    format!("{task} {d}"),
                    format!("{task}: the journal held {d} {OTHER_SETTINGS}"),
                )
            })
            .collect(),
        |count, all| format!("the journals of {count} tasks held {OTHER_SETTINGS}: {all}"),
    ));
    print_notes(task_notes(
        resumed
            .iter()
            .map(|(task, r, of)| {
                (
                    format!("{task} {r} of {of}"),
                    format!("{task}: {r} of {of} chunks were read back from the journal of an earlier, unfinished run"),
                )
            })
            .collect(),
        |count, all| {
            format!("chunks of {count} tasks were read back from the journal of an earlier, unfinished run: {all}")
        },
    ));
}

/// Notes about tasks, one per task where there are at most three, else one line for them all
/// (MMLU's 57 subjects): each item is the task's short form (`arc_easy 3 of 10`) and its own
/// note; `all` says it of `count` tasks, given the first few short forms.
fn task_notes(items: Vec<(String, String)>, all: impl FnOnce(usize, String) -> String) -> Vec<String> {
    if items.len() > 3 {
        let short: Vec<String> = items.iter().map(|(s, _)| s.clone()).collect();
        vec![all(items.len(), first_few(&short, 5))]
    } else {
        items.into_iter().map(|(_, note)| note).collect()
    }
}

fn print_notes(notes: Vec<String>) {
    for n in notes {
        eprintln!("note: {n}");
    }
}

fn write_report(paths: &[PathBuf], output: Option<PathBuf>, rows: usize, g: &args::Global) -> Result<u8> {
    let runs = report::read_runs(paths)?;
    let has_extension = |p: &Path, ext: &str| p.extension().is_some_and(|e| e.eq_ignore_ascii_case(ext));
    match g.format {
        Format::Md => match output {
            Some(out) => {
                // `--output report.md` is the file itself; anything else a directory for it.
                let path = if has_extension(&out, "md") {
                    out
                } else if out.is_file() {
                    anyhow::bail!(
                        "--output {} is a file: give a directory (report.md is written in it) or a path ending in .md",
                        out.display()
                    );
                } else {
                    out.join("report.md")
                };
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
                }
                evalkit::core::evaluator::write_atomic(&path, report::markdown(&runs).as_bytes())?;
                if !g.quiet {
                    eprintln!("wrote {}", path.display());
                }
            }
            None => out!("{}", report::markdown(&runs)),
        },
        Format::Json => anyhow::bail!("report writes HTML (the default) or Markdown (--format md), not JSON"),
        Format::Text | Format::Html => {
            let out = match (output, runs.as_slice()) {
                (Some(o), _) => o,
                (None, [one]) => one.dir.clone(),
                (None, _) => anyhow::bail!("a report of several runs needs --output DIR"),
            };
            if out.is_file() || has_extension(&out, "html") {
                anyhow::bail!(
                    "--output {} names a file: the HTML report is a directory (report.html and its charts/ are written in it)",
                    out.display()
                );
            }
            let written = report::write_html(&runs, &out, rows)?;
            if !g.quiet {
                eprintln!(
                    "wrote {} and {} charts in {}",
                    written.html.display(),
                    written.pngs.len(),
                    out.join("charts").display()
                );
            }
        }
    }
    Ok(0)
}

fn compare(a: &Path, b: &Path, format: Format) -> Result<u8> {
    let (ra, rb) = (read_results(a)?, read_results(b)?);
    compare::compare(a, b, &ra, &rb, format)?;
    Ok(0)
}

/// `path` made absolute (as given where the current directory cannot be read), for records
/// read elsewhere.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn shared_dir(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    root.ancestors()
        .map(|a| a.join("shared"))
        .find(|p| p.join("models").is_dir())
        .unwrap_or_else(|| root.join("../shared"))
}

fn demo(d: &args::DemoArgs, g: &args::Global) -> Result<u8> {
    let shared = shared_dir(d.shared.as_deref());
    let models: Vec<PathBuf> = if d.model.is_empty() {
        ["stories260K-hf", "tiny-gpt2-random"]
            .iter()
            .map(|m| shared.join("models").join(m))
            .collect()
    } else {
        d.model.clone()
    };
    let data = shared.join("data");
    let mut tasks = vec![
        "synthetic_arithmetic",
        "synthetic_copy",
        "synthetic_sort",
        "synthetic_brackets",
    ];
    if data.is_dir() {
        tasks.extend([
            "arc_easy",
            "hellaswag",
            "lambada_openai",
            "wikitext",
            "mmlu_anatomy",
            "truthfulqa_mc2",
        ]);
    } else {
        eprintln!(
            "note: no benchmark data at {} (set EVALKIT_SHARED); scoring the synthetic suites only",
            data.display()
        );
    }
    let mut suite_options = evalkit::suites::LoadOptions::new(data);
    suite_options.synthetic.rows = d.limit;
    for dir in &models {
        let opened = settings::open_checkpoint(dir, evalkit::core::DeviceSpec::Auto, evalkit::core::Dtype::F32)
            .with_context(|| format!("the demo scores the shared test checkpoints; {} is missing (pass --model DIR or set EVALKIT_SHARED)", dir.display()))?;
        let mut ev = Evaluator::new(opened.model.as_ref(), &opened.tokenizer);
        ev.options.subset = Some(evalkit::core::kinds::Subset::First(d.limit));
        ev.progress = !g.quiet;
        for t in &tasks {
            let loaded = evalkit::suites::load(t, &suite_options)?.complete()?;
            loaded.evaluations.into_iter().for_each(|e| {
                ev.add(e);
            });
        }
        outln!(
            "\n== {} ({}, max length {})",
            opened.name,
            opened.model.describe(),
            opened.model.max_len()
        );
        let start = std::time::Instant::now();
        let outcomes = ev.outcomes()?;
        let doc = ev.results_document(&outcomes);
        table::print_results(&doc, g.format);
        let tokens: usize = outcomes.iter().map(|o| o.stats.work.tokens.forwarded).sum();
        outln!(
            "{} evaluations, {} rows, {tokens} tokens run through the model in {:.2} s",
            outcomes.len(),
            outcomes.iter().map(|o| o.n).sum::<usize>(),
            start.elapsed().as_secs_f64()
        );
    }
    Ok(0)
}

/// Refuses a gate that names no evaluation or group of the run (`kinds`: the evaluations by
/// name; `groups`: each group's members), or a metric that none of those can report: neither
/// one of its kind's, nor one its suite declares (a generation's scoring names its own, known
/// only once it runs), nor a standard error or a record of the run.
fn check_gates(gates: &[settings::Gate], kinds: &[(String, TaskKind)], groups: &[(String, Vec<String>)]) -> Result<()> {
    let suites = evalkit::suites::all();
    for gate in gates {
        let members: Vec<&str> = match groups.iter().find(|(n, _)| *n == gate.task) {
            Some((_, members)) => members.iter().map(String::as_str).collect(),
            None => vec![gate.task.as_str()],
        };
        let Some(member_kinds) = members
            .iter()
            .map(|m| kinds.iter().find(|(n, _)| n == m).map(|(n, k)| (n.as_str(), *k)))
            .collect::<Option<Vec<(&str, TaskKind)>>>()
        else {
            let names: Vec<&str> = kinds
                .iter()
                .map(|(n, _)| n.as_str())
                .chain(groups.iter().map(|(n, _)| n.as_str()))
                .collect();
            anyhow::bail!(
                "the gate on {}.{} names no evaluation of this run (it has {})",
                gate.task,
                gate.metric,
                first_few(&names, 8)
            );
        };
        // A metric of the kind or one the suite declares (a generation's scoring names its
        // own, known only once it runs), its standard error, or a record of the run.
        let known = |(name, kind): (&str, TaskKind)| {
            let m = gate.metric.strip_suffix("_stderr").unwrap_or(&gate.metric);
            let declared = suites.iter().any(|s| s.name == name && s.metrics.contains(&m));
            kind == TaskKind::Generate
                || kind.metrics().contains(&m)
                || declared
                || RECORD_KEYS.contains(&gate.metric.as_str())
        };
        if let Some(&(_, kind)) = member_kinds.iter().find(|&&member| !known(member)) {
            anyhow::bail!(
                "the gate on {}.{} names a metric {} does not report (a {} evaluation reports {})",
                gate.task,
                gate.metric,
                gate.task,
                kind.as_str(),
                kind.metrics().join(", ")
            );
        }
    }
    Ok(())
}

/// Why `gate` fails on the results `doc` written to `dir` (with the first rows that missed it,
/// read from the samples file), or `None` when it holds.
fn gate_failure(gate: &settings::Gate, doc: &Value, dir: &Path) -> Option<String> {
    let entry = doc["results"].get(&gate.task).or_else(|| doc["groups"].get(&gate.task));
    let Some((e, v)) = entry.and_then(|e| e[&gate.metric].as_f64().map(|v| (e, v))) else {
        // An evaluation (or group) the run could not report says why.
        if let Some(why) = doc["failed"][&gate.task].as_str() {
            return Some(format!(
                "gate failed: {}.{} was not reported: {} failed ({})",
                gate.task, gate.metric, gate.task, why
            ));
        }
        let reported: Vec<&str> = entry
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter(|(k, v)| v.is_number() && !k.ends_with("_stderr") && !RECORD_KEYS.contains(&k.as_str()))
            .map(|(k, _)| k.as_str())
            .collect();
        return Some(format!(
            "gate failed: {}.{} was not reported ({} reports {})",
            gate.task,
            gate.metric,
            gate.task,
            reported.join(", ")
        ));
    };
    if gate.bound.holds(v) {
        return None;
    }
    let se = e[format!("{}_stderr", gate.metric)]
        .as_f64()
        .map_or_else(String::new, |se| format!(" ± {se:.4}"));
    let mut msg = format!(
        "gate failed: {}.{} = {v:.4}{se} (n = {}) must be {}",
        gate.task, gate.metric, e["n"], gate.bound
    );
    // A group has no samples file of its own; an evaluation's file that cannot be read (cut,
    // torn, removed) is said rather than shown as fewer rows.
    if doc["results"].get(&gate.task).is_some() {
        match samples_file::read(dir, &gate.task, doc) {
            Ok(samples) => {
                let (n, rows) = evalkit::core::gate::wrong_rows(&samples, &gate.metric, gate.bound);
                if n > 0 {
                    msg.push_str(&format!("\n{n} row(s) on the wrong side; the first:"));
                    for r in rows {
                        msg.push_str(&format!("\n  {r}"));
                    }
                }
            }
            Err(e) => msg.push_str(&format!("\n(its rows are not shown: {e:#})")),
        }
    }
    Some(msg)
}

/// Notes what a run's results lack (`failed` in results.json: evaluations that failed on their
/// rows, groups left out for them), for the entries `which` picks.
fn failed_notes(doc: &Value, which: impl Fn(&str) -> bool) {
    for (name, why) in doc["failed"].as_object().into_iter().flatten() {
        if which(name) {
            eprintln!("note: {name}: {}", why.as_str().unwrap_or_default());
        }
    }
}

/// Notes samples files in `output` that this run did not write (an earlier run's, perhaps of
/// another model), and reports written before its results: they are left alone, but are not
/// this run's.
fn stale_samples(doc: &Value, output: &Path) {
    let Ok(entries) = std::fs::read_dir(output) else {
        return;
    };
    let mut stale: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|f| {
            f.strip_prefix("samples_")
                .and_then(|f| f.strip_suffix(".jsonl"))
                .is_some_and(|task| doc["results"].get(task).is_none())
        })
        .collect();
    stale.sort();
    if !stale.is_empty() {
        eprintln!(
            "note: {} also holds {} from an earlier run, not this run's results",
            output.display(),
            stale.join(", ")
        );
    }
    // A report written before these results shows an earlier run.
    let modified = |f: &str| std::fs::metadata(output.join(f)).and_then(|m| m.modified()).ok();
    let Some(results) = modified("results.json") else {
        return;
    };
    let dir = output.display();
    for (file, command) in [
        ("report.html", format!("evalkit report {dir}")),
        ("report.md", format!("evalkit report --format md --output {dir} {dir}")),
    ] {
        if modified(file).is_some_and(|t| t < results) {
            eprintln!("note: {dir} also holds {file} of an earlier run; `{command}` writes this run's");
        }
    }
}

/// What Ctrl-C prints (set once, before the handler that reads it is installed).
static INTERRUPTED: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();

/// While it lives, Ctrl-C (SIGINT) says that the run stopped and how to resume it, then ends
/// the process by the signal, as it would have ended (so a shell loop over runs stops too):
/// every finished chunk is already journaled (each written whole), so nothing else needs doing
/// on the way out. A process started with SIGINT ignored (a background job) keeps ignoring it.
struct InterruptNote {
    previous: Option<libc::sigaction>,
}

impl InterruptNote {
    fn install(output: &Path) -> InterruptNote {
        extern "C" fn on_sigint(_: libc::c_int) {
            if let Some(m) = INTERRUPTED.get() {
                // SAFETY: `write` is async-signal-safe; the message was set before the handler
                // was installed and never changes.
                unsafe {
                    libc::write(2, m.as_ptr().cast(), m.len());
                }
            }
            // SAFETY: `raise` is async-signal-safe. The handler was installed with
            // SA_RESETHAND, so the signal, delivered once this handler returns, takes its
            // default action.
            unsafe {
                libc::raise(libc::SIGINT);
            }
        }
        let message = format!(
            "\ninterrupted: the finished chunks are journaled in {}; the same command resumes from them\n",
            output.join(".journal").display()
        );
        if INTERRUPTED.set(message.into_bytes()).is_err() {
            return InterruptNote { previous: None };
        }
        // SAFETY: plain sigaction calls on zero-initialised structs; the handler only calls
        // async-signal-safe functions.
        unsafe {
            let mut previous: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGINT, std::ptr::null(), &mut previous) != 0
                || previous.sa_sigaction == libc::SIG_IGN
            {
                return InterruptNote { previous: None };
            }
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESETHAND;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut()) != 0 {
                return InterruptNote { previous: None };
            }
            InterruptNote {
                previous: Some(previous),
            }
        }
    }
}

impl Drop for InterruptNote {
    /// The run's work is written: Ctrl-C goes back to what it did before.
    fn drop(&mut self) {
        if let Some(previous) = &self.previous {
            // SAFETY: restores the disposition read in `install`.
            unsafe {
                libc::sigaction(libc::SIGINT, previous, std::ptr::null_mut());
            }
        }
    }
}

/// An error's message with its causes, each said once (a cause whose text its wrapper already
/// ends with, such as an I/O error, is not repeated), and without the C++ stack trace libtorch
/// appends to its messages (`Exception raised from … frame #0: …`).
pub fn error_message(err: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        let text = text
            .split("\nException raised from ")
            .next()
            .unwrap_or_default()
            .trim_end();
        if !message.ends_with(text) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(text);
        }
    }
    message
}

/// `[shard R of N] ` in a process of a data-parallel run (its launcher's environment), else
/// nothing: what the process's errors and warnings start with.
pub fn shard_prefix() -> String {
    evalkit::core::shard::Launch::from_env()
        .ok()
        .flatten()
        .map_or_else(String::new, |l| format!("[shard {} of {}] ", l.rank, l.world))
}

/// Prints `error: MESSAGE` to stderr in one write, led by the shard in a sharded run
/// (`[shard R of N] `): the shards of `--shards` share the terminal, and a message written
/// in pieces would interleave with theirs.
pub fn print_error(message: &str) {
    use std::io::Write;
    let who = shard_prefix();
    let _ = std::io::stderr().write_all(format!("{who}error: {message}\n").as_bytes());
}

#[cfg(test)]
mod tests {
    use super::{error_message, task_notes};

    #[test]
    fn task_notes_are_one_line_for_many_tasks() {
        let items = |n: usize| -> Vec<(String, String)> {
            (0..n)
                .map(|i| (format!("t{i} 1 of 2"), format!("t{i}: 1 of 2 chunks")))
                .collect()
        };
        let all = |count: usize, first: String| format!("{count} tasks: {first}");
        assert_eq!(
            task_notes(items(2), all),
            vec!["t0: 1 of 2 chunks", "t1: 1 of 2 chunks"]
        );
        assert_eq!(
            task_notes(items(7), all),
            vec!["7 tasks: t0 1 of 2, t1 1 of 2, t2 1 of 2, t3 1 of 2, t4 1 of 2 and 2 more"]
        );
    }

    #[test]
    fn error_messages_say_each_cause_once_without_stack_traces() {
        let io = std::io::Error::other("File exists (os error 17)");
        let e = anyhow::Error::new(io).context("creating x: File exists (os error 17)");
        assert_eq!(error_message(&e), "creating x: File exists (os error 17)");
        let e = anyhow::Error::msg("disk full").context("writing y");
        assert_eq!(error_message(&e), "writing y: disk full");
        let torch = "loading m: not a ZIP archive\nException raised from valid at a.cc:242 (most recent call \
                     first):\nframe #0: c10::Error::Error() + 0x9d";
        assert_eq!(
            error_message(&anyhow::Error::msg(torch)),
            "loading m: not a ZIP archive"
        );
    }
}
