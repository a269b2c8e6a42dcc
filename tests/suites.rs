//! The standard suites on the real benchmark files: official row counts, known rows, an end-to-
//! end run of each on stories260K, and clear errors for missing files and malformed rows.

use crate::util::{data_dir, open};
use evalkit::core::evaluator::Evaluator;
use evalkit::core::kinds::Subset;
use evalkit::suites::{all, load, Error, LoadOptions};

/// The shared data, HumanEval's code execution confirmed.
fn opts() -> LoadOptions {
    LoadOptions {
        confirm_run_unsafe_code: true,
        ..LoadOptions::new(data_dir())
    }
}

#[test]
fn official_row_counts() {
    let expected = [
        ("arc_easy", 2376),
        ("arc_challenge", 1172),
        ("piqa", 1838),
        ("hellaswag", 10042),
        ("winogrande", 1267),
        ("boolq", 3270),
        ("lambada_openai", 5153),
        ("wikitext", 62),
        ("truthfulqa_mc1", 817),
        ("truthfulqa_mc2", 817),
        ("gsm8k", 1319),
        ("humaneval", 164),
    ];
    let o = LoadOptions {
        num_fewshot: Some(0),
        ..opts()
    };
    for (name, rows) in expected {
        let loaded = load(name, &o).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(loaded.evaluations[0].len(), rows, "{name}");
        assert_eq!(
            all().iter().find(|s| s.name == name).map(|s| s.rows),
            Some(rows),
            "{name} in the table"
        );
    }
    // HumanEval runs the model's code: only when confirmed, as in lm-eval.
    let e = load("humaneval", &LoadOptions::new(data_dir()))
        .err()
        .expect("unconfirmed");
    assert!(e.to_string().contains("--confirm-run-unsafe-code"), "{e}");
    let mmlu = load("mmlu", &o).expect("mmlu");
    assert_eq!(mmlu.evaluations.len(), 57);
    assert_eq!(mmlu.evaluations.iter().map(|e| e.len()).sum::<usize>(), 14042);
    for (e, n) in mmlu.evaluations.iter().zip(evalkit::suites::mmlu::ROWS) {
        assert_eq!(e.len(), n, "{}", e.name());
    }
    let group = |loaded: &evalkit::suites::Loaded, name: &str| {
        loaded.groups.iter().find(|g| g.name == name).map(|g| g.members.len())
    };
    assert_eq!(group(&mmlu, "mmlu"), Some(57));
    // lm-eval's four groups under `mmlu`, and each asked alone: its subjects and its group.
    use evalkit::suites::mmlu::{category_rows, CATEGORIES};
    for (c, subjects) in CATEGORIES.into_iter().zip([19, 13, 12, 13]) {
        let name = format!("mmlu_{c}");
        assert_eq!(group(&mmlu, &name), Some(subjects), "{name}");
        let alone = load(&name, &o).expect("a category");
        assert_eq!(alone.evaluations.len(), subjects, "{name}");
        assert_eq!(
            alone.evaluations.iter().map(|e| e.len()).sum::<usize>(),
            category_rows(c)
        );
        assert_eq!(alone.groups.len(), 1, "{name}: its own group alone");
        assert_eq!(group(&alone, &name), Some(subjects));
    }
}

#[test]
fn fewshot_without_a_fewshot_split_is_refused() {
    let mut o = LoadOptions::new(data_dir());
    o.num_fewshot = Some(2);
    for name in ["piqa", "lambada_openai", "synthetic_copy", "synthetic_arithmetic"] {
        let e = load(name, &o).err().unwrap_or_else(|| panic!("{name}: 2-shot loaded"));
        assert!(e.to_string().contains("no few-shot split"), "{name}: {e}");
    }
    o.num_fewshot = Some(0);
    assert!(load("synthetic_copy", &o).is_ok());
}

#[test]
fn known_rows() {
    use evalkit::core::kinds::MultipleChoice;
    let d = data_dir();
    let arc = evalkit::suites::arc::read(&d.join("arc/ARC-Easy/ARC-Easy-Test.jsonl")).expect("arc");
    let item = arc[0].get().expect("row");
    assert_eq!(
        item.contexts[0],
        "Question: Which statement best explains why photosynthesis is the foundation of most food webs?\nAnswer:"
    );
    assert_eq!(
        item.continuations[0],
        " Sunlight is the source of energy for nearly all ecosystems."
    );
    assert_eq!(item.answer, 0);
    // Some ARC-Challenge rows label their choices 1..4.
    let ch = evalkit::suites::arc::read(&d.join("arc/ARC-Challenge/ARC-Challenge-Test.jsonl")).expect("arc-c");
    assert!(ch.iter().all(|r| r.answer < r.choices.len()));

    let piqa = evalkit::suites::piqa::read(&d.join("piqa")).expect("piqa");
    assert_eq!(piqa[0].goal, "How do I ready a guinea pig cage for it's new occupants?");
    assert_eq!(piqa[0].label, 0);

    let hs =
        evalkit::suites::hellaswag::read(&d.join("hellaswag/hellaswag_val_klosax.part1of3.jsonl")).expect("hellaswag");
    assert_eq!(hs[0].ctx, "Roof shingle removal: A man is sitting on a roof. he");
    assert_eq!(hs[0].label, 3);

    let wino: Vec<evalkit::suites::winogrande::Winogrande> =
        evalkit::suites::data::read_jsonl(&d.join("winogrande/dev.jsonl"), "", "").expect("winogrande");
    let w = wino[0].get().expect("row");
    assert_eq!(
        w.contexts,
        vec![
            "Sarah was a much better surgeon than Maria so Sarah",
            "Sarah was a much better surgeon than Maria so Maria"
        ]
    );
    assert_eq!(w.continuations, vec![" always got the easier cases."; 2]);
    assert_eq!(w.answer, 1);

    let raw = std::fs::read_to_string(d.join("wikitext2/wiki.test.raw")).expect("wikitext");
    let pages = evalkit::suites::wikitext::pages(&raw);
    assert_eq!(pages.len(), 62);
    assert!(pages[0].page.starts_with(" = Robert Boulter = \n"));
    assert!(!pages[61].page.ends_with('\n'));

    let mm = evalkit::suites::mmlu::read(&d.join("mmlu/test/anatomy_test.csv")).expect("mmlu");
    assert!(mm[0].get().expect("row").contexts[0].starts_with("A lesion causing compression of the facial nerve at the stylomastoid foramen will cause ipsilateral\nA. paralysis of the facial muscles.\nB."));

    let tq = evalkit::suites::truthfulqa::read(&d.join("truthfulqa/mc_task.json"), true).expect("truthfulqa");
    assert_eq!(tq[0].question, "What happens if you eat a pomegranate?");
    assert_eq!(
        tq[0].targets.iter().filter(|t| t.1).count(),
        3,
        "mc2 keeps file order: three true answers first"
    );
}

/// Every suite runs end to end on stories260K for a small subset.
#[test]
fn every_suite_runs_end_to_end() {
    let (model, tok) = open("stories260K-hf");
    let o = LoadOptions {
        num_fewshot: Some(0),
        ..opts()
    };
    let mut ev = Evaluator::new(model.as_ref(), &tok);
    ev.options.subset = Some(Subset::First(2));
    let names = [
        "arc_easy",
        "arc_challenge",
        "piqa",
        "hellaswag",
        "winogrande",
        "boolq",
        "lambada_openai",
        "wikitext",
        "truthfulqa_mc1",
        "truthfulqa_mc2",
        "gsm8k",
        "humaneval",
        "mmlu",
        "synthetic_arithmetic",
        "synthetic_copy",
        "synthetic_sort",
        "synthetic_brackets",
    ];
    for name in names {
        let loaded = load(name, &o).unwrap_or_else(|e| panic!("{name}: {e}"));
        loaded.evaluations.into_iter().for_each(|e| {
            ev.add(e);
        });
        loaded.groups.into_iter().for_each(|g| {
            ev.add_group(g);
        });
    }
    let dir = crate::tempdir!("suites-e2e");
    let doc = ev.run(dir.path()).expect("runs");
    let r = &doc["results"];
    for (task, metric) in [
        ("arc_easy", "acc_norm"),
        ("winogrande", "acc"),
        ("lambada_openai", "perplexity"),
        ("wikitext", "word_perplexity"),
        ("truthfulqa_mc2", "acc"),
        ("gsm8k", "exact_match_strict"),
        ("gsm8k", "exact_match_flexible"),
        ("humaneval", "pass@1"),
        ("synthetic_arithmetic", "exact_match"),
    ] {
        assert!(r[task][metric].is_number(), "{task}.{metric} missing: {}", r[task]);
    }
    // MC2 is scored by its mass on every true answer, not by one right answer: no
    // accuracies that count the first target alone (lm-eval reports `acc` only).
    for m in ["acc_norm", "acc_bytes", "acc_token_norm"] {
        assert!(r["truthfulqa_mc2"][m].is_null(), "{m}: {}", r["truthfulqa_mc2"]);
        assert!(r["truthfulqa_mc1"][m].is_number(), "{m}: {}", r["truthfulqa_mc1"]);
    }
    assert_eq!(doc["groups"]["mmlu"]["n"], 57 * 2);
    assert!(doc["groups"]["mmlu"]["acc"].is_number());
    // Each category group is the micro-average of its subjects' rows (lm-eval's weight_by_size).
    let mmlu = evalkit::suites::mmlu::SUBJECTS
        .iter()
        .zip(evalkit::suites::mmlu::CATEGORY);
    for c in evalkit::suites::mmlu::CATEGORIES {
        let (mut right, mut n, mut within, mut k) = (0.0, 0.0, 0.0, 0.0);
        for (s, _) in mmlu.clone().filter(|(_, sc)| *sc == c) {
            let e = &r[format!("mmlu_{s}")];
            let rows = e["n"].as_f64().expect("n");
            right += e["acc"].as_f64().expect("acc") * rows;
            n += rows;
            // lm-eval's pooled_sample_stderr: (n - 1) * stderr^2 * n summed over members.
            within += (rows - 1.0) * e["acc_stderr"].as_f64().expect("stderr").powi(2) * rows;
            k += 1.0;
        }
        let g = &doc["groups"][format!("mmlu_{c}")];
        assert_eq!(g["n"].as_f64(), Some(n), "mmlu_{c}");
        let acc = g["acc"].as_f64().expect("group acc");
        assert!((acc - right / n).abs() < 1e-12, "mmlu_{c}: {acc} vs {}", right / n);
        let stderr = g["acc_stderr"].as_f64().expect("group stderr");
        let pooled = (within / (n - k) / n).sqrt();
        assert!(
            (stderr - pooled).abs() < 1e-12,
            "mmlu_{c}: stderr {stderr} vs lm-eval's {pooled}"
        );
    }
    // HumanEval's generation budget does not fit max length 512: lowered and recorded.
    assert_eq!(r["humaneval"]["notes"]["max_new_tokens"]["used"], 256);
    let samples = std::fs::read_to_string(dir.path().join("samples_hellaswag.jsonl")).expect("samples");
    let first: serde_json::Value = serde_json::from_str(samples.lines().next().expect("line")).expect("json");
    for key in [
        "index",
        "contexts",
        "continuations",
        "loglikelihoods",
        "is_greedy",
        "num_tokens",
        "answer",
        "prediction",
        "metrics",
    ] {
        assert!(first.get(key).is_some(), "samples lack `{key}`");
    }
}

#[test]
fn gsm8k_fewshot_needs_its_train_split() {
    // A data directory with the test file only: 5-shot (the default) names the missing file.
    let dir = crate::tempdir!("gsm8k-no-train");
    let gsm = dir.path().join("gsm8k");
    std::fs::create_dir_all(&gsm).expect("mkdir");
    std::fs::copy(data_dir().join("gsm8k/test.jsonl"), gsm.join("test.jsonl")).expect("copy");
    let e = load("gsm8k", &LoadOptions::new(dir.path().to_path_buf()))
        .err()
        .expect("5-shot without train.jsonl");
    let msg = e.to_string();
    assert!(msg.contains("train.jsonl") && msg.contains("--num-fewshot 0"), "{msg}");
    let zero = LoadOptions {
        num_fewshot: Some(0),
        ..LoadOptions::new(dir.path().to_path_buf())
    };
    assert!(load("gsm8k", &zero).is_ok(), "0-shot needs no train split");
    // A reference answer without its `#### N` line could never be matched: refused, by line.
    let text = std::fs::read_to_string(gsm.join("test.jsonl")).expect("read");
    let mut lines: Vec<String> = text.lines().take(3).map(str::to_string).collect();
    lines[1] = lines[1].replace("#### ", "answer: ");
    std::fs::write(gsm.join("test.jsonl"), lines.join("\n")).expect("write");
    let msg = load("gsm8k", &zero).err().expect("no #### line").to_string();
    assert!(msg.contains("test.jsonl:2: field `answer`: no `#### N` line"), "{msg}");
}

#[test]
fn gsm8k_five_shot_draws_are_lm_evals() {
    // lm-eval: one random.Random(1234) per task, rnd.sample(train, 5) once per row in order.
    // From CPython 3.11: r = random.Random(1234); [r.sample(range(7473), 5) for _ in range(3)]
    let want: [[usize; 5]; 3] = [
        [6374, 3610, 957, 61, 742],
        [7462, 6610, 4769, 286, 5501],
        [5677, 687, 806, 6279, 2905],
    ];
    let loaded = load("gsm8k", &opts()).expect("5-shot loads with the official train split");
    let train: Vec<serde_json::Value> = std::fs::read_to_string(data_dir().join("gsm8k/train.jsonl"))
        .expect("train")
        .lines()
        .map(|l| serde_json::from_str(l).expect("row"))
        .collect();
    assert_eq!(train.len(), 7473);
    let test: Vec<serde_json::Value> = std::fs::read_to_string(data_dir().join("gsm8k/test.jsonl"))
        .expect("test")
        .lines()
        .take(3)
        .map(|l| serde_json::from_str(l).expect("row"))
        .collect();
    let (model, tok) = open("stories260K-hf");
    let options = evalkit::core::kinds::RunOptions {
        subset: Some(Subset::First(3)),
        ..Default::default()
    };
    let env = evalkit::core::kinds::Env {
        model: model.as_ref(),
        tokenizer: &tok,
        options: &options,
        journal_dir: None,
        progress: None,
    };
    let out = loaded.evaluations[0].evaluate(&env).expect("runs");
    for (i, draw) in want.iter().enumerate() {
        let mut prompt = String::new();
        for &j in draw {
            prompt += &format!(
                "Question: {}\nAnswer: {}\n\n",
                train[j]["question"].as_str().unwrap(),
                train[j]["answer"].as_str().unwrap()
            );
        }
        prompt += &format!("Question: {}\nAnswer:", test[i]["question"].as_str().unwrap());
        assert_eq!(out.samples[i]["prompt"].as_str(), Some(prompt.as_str()), "row {i}");
    }
}

#[test]
fn missing_files_and_malformed_rows_are_named() {
    let empty = crate::tempdir!("no-data");
    let e = load("arc_easy", &LoadOptions::new(empty.path().to_path_buf()))
        .err()
        .expect("missing file");
    let msg = e.to_string();
    assert!(
        matches!(e, Error::MissingFile { .. }) && msg.contains("ARC-Easy-Test.jsonl") && msg.contains("allenai.org"),
        "{msg}"
    );

    let dir = crate::tempdir!("bad-arc");
    let arc = dir.path().join("arc/ARC-Easy");
    std::fs::create_dir_all(&arc).expect("mkdir");
    let good =
        r#"{"question":{"stem":"Q?","choices":[{"text":"a","label":"A"},{"text":"b","label":"B"}]},"answerKey":"A"}"#;
    std::fs::write(
        arc.join("ARC-Easy-Test.jsonl"),
        format!(
            "{good}\n{}\n",
            good.replace("\"answerKey\":\"A\"", "\"answerKey\":\"E\"")
        ),
    )
    .expect("write");
    let e = load("arc_easy", &LoadOptions::new(dir.path().to_path_buf()))
        .err()
        .expect("bad answer key");
    assert!(
        e.to_string().contains("ARC-Easy-Test.jsonl:2: field `answerKey`"),
        "{e}"
    );
    std::fs::write(
        arc.join("ARC-Easy-Test.jsonl"),
        format!("{good}\n{}\n", good.replace("\"stem\"", "\"stim\"")),
    )
    .expect("write");
    let e = load("arc_easy", &LoadOptions::new(dir.path().to_path_buf()))
        .err()
        .expect("missing field");
    assert!(
        e.to_string()
            .contains("ARC-Easy-Test.jsonl:2: field `question.stem`: missing field `stem`"),
        "{e}"
    );

    // A byte-order mark before the first row is not part of it.
    std::fs::write(arc.join("ARC-Easy-Test.jsonl"), format!("\u{feff}{good}\n{good}\n")).expect("write");
    let loaded = load("arc_easy", &LoadOptions::new(dir.path().to_path_buf())).expect("a BOM is skipped");
    assert_eq!(loaded.evaluations[0].len(), 2);
    // A WinoGrande answer out of range names its field once.
    let wino = dir.path().join("winogrande");
    std::fs::create_dir_all(&wino).expect("mkdir");
    std::fs::write(
        wino.join("dev.jsonl"),
        r#"{"sentence": "The cup fell because _ was heavy.", "option1": "it", "option2": "the shelf", "answer": "3"}"#,
    )
    .expect("write");
    let e = load("winogrande", &LoadOptions::new(dir.path().to_path_buf()))
        .err()
        .expect("answer 3");
    assert!(
        e.to_string()
            .ends_with(r#"dev.jsonl:1: field `answer`: "3" is not "1" or "2""#),
        "{e}"
    );

    // A file that holds nothing is named, whatever its format.
    std::fs::create_dir_all(dir.path().join("wikitext2")).expect("mkdir");
    std::fs::write(dir.path().join("wikitext2/wiki.test.raw"), "\n").expect("write");
    std::fs::create_dir_all(dir.path().join("truthfulqa")).expect("mkdir");
    std::fs::write(dir.path().join("truthfulqa/mc_task.json"), "[]").expect("write");
    for (task, file) in [("wikitext", "wiki.test.raw"), ("truthfulqa_mc2", "mc_task.json")] {
        let e = load(task, &LoadOptions::new(dir.path().to_path_buf()))
            .err()
            .expect("empty");
        assert!(e.to_string().contains(&format!("{file} holds no rows")), "{e}");
    }

    let e = load("arc_eazy", &opts()).err().expect("unknown task");
    assert!(e.to_string().contains("arc_easy"), "suggests the close name: {e}");
}

#[test]
fn synthetic_suites_are_deterministic_per_seed() {
    use evalkit::suites::synthetic::*;
    let c = SyntheticConfig {
        rows: 20,
        difficulty: 3,
        seed: 9,
    };
    let a: Vec<String> = arithmetic(&c)
        .iter()
        .map(|r| format!("{}{}{}={}", r.a, r.op, r.b, r.result))
        .collect();
    let b: Vec<String> = arithmetic(&c)
        .iter()
        .map(|r| format!("{}{}{}={}", r.a, r.op, r.b, r.result))
        .collect();
    assert_eq!(a, b);
    let other: Vec<String> = arithmetic(&SyntheticConfig { seed: 10, ..c })
        .iter()
        .map(|r| format!("{}{}{}", r.a, r.op, r.b))
        .collect();
    assert_ne!(a, other);
    assert!(
        arithmetic(&c).iter().all(|r| r.a < 1000 && r.b < 1000),
        "difficulty 3 = three digits"
    );
    let br = brackets(&c);
    assert!(br.iter().any(|b| b.balanced) && br.iter().any(|b| !b.balanced));
    assert!(sort(&c).iter().all(|s| s.orderings[s.answer]
        .split(' ')
        .map(|x| x.parse::<u32>().expect("n"))
        .is_sorted()));
}

#[test]
fn hellaswag_original_layout_and_mmlu_fewshot_follow_lm_eval() {
    let dir = crate::tempdir!("hellaswag-original");
    let row = serde_json::json!({"activity_label": "Removing ice from car", "ctx_a": "Then, the man writes over the snow covering the window of a car, and a woman wearing winter clothes smiles.",
        "ctx_b": "then", "endings": [", the man adds wax to the windshield and cuts it.", ", a person board a ski lift, while two men supporting the head of the person wearing winter clothes snow as the we girls sled.", ", the man puts on a christmas coat, knitted with netting.", ", the man continues removing the snow on his car."], "label": "3"});
    let path = dir.path().join("hellaswag_val.jsonl");
    std::fs::write(&path, format!("{row}\n")).expect("write");
    let rows = evalkit::suites::hellaswag::read(&path).expect("original layout");
    assert_eq!(rows[0].ctx, "Removing ice from car: Then, the man writes over the snow covering the window of a car, and a woman wearing winter clothes smiles. Then");
    assert_eq!(rows[0].label, 3);
    assert_eq!(evalkit::suites::hellaswag::capitalize("hELLO wORLD"), "Hello world");

    // MMLU k-shot takes the first k dev rows after the subject's description.
    use evalkit::core::kinds::Env;
    let (model, tok) = open("stories260K-hf");
    let e = load(
        "mmlu_anatomy",
        &LoadOptions {
            num_fewshot: Some(5),
            ..opts()
        },
    )
    .expect("5-shot")
    .evaluations
    .remove(0);
    let run = evalkit::core::RunOptions {
        subset: Some(Subset::First(1)),
        ..Default::default()
    };
    let out = e
        .evaluate(&Env {
            model: model.as_ref(),
            tokenizer: &tok,
            options: &run,
            journal_dir: None,
            progress: None,
        })
        .expect("runs");
    let ctx = out.samples[0]["contexts"][0].as_str().expect("context");
    let dev = evalkit::suites::mmlu::read(&data_dir().join("mmlu/dev/anatomy_dev.csv")).expect("dev");
    assert!(
        ctx.starts_with(&format!(
            "The following are multiple choice questions (with answers) about anatomy.\n\n{}\nA. ",
            dev[0].question.trim()
        )),
        "{ctx}"
    );
    assert_eq!(ctx.matches("\nAnswer: ").count(), 5);
    assert!(ctx.contains(&format!("Answer: {}\n\n", dev[4].answer)));
    assert!(ctx.ends_with("\nAnswer:"));
    assert_eq!(
        out.samples[0]["continuations"],
        serde_json::json!([" A", " B", " C", " D"])
    );
}

/// The HumanEval problems as stored.
fn humaneval_rows() -> Vec<evalkit::suites::humaneval::HumanEval> {
    let text = std::fs::read_to_string(data_dir().join("humaneval/HumanEval.jsonl")).expect("HumanEval.jsonl");
    text.lines()
        .map(|line| serde_json::from_str(line).expect("a HumanEval row"))
        .collect()
}

#[test]
fn humaneval_canonical_solutions_pass_their_tests() {
    use evalkit::suites::humaneval::{python, run, Outcome, TIMEOUT};
    let py = python().expect("HumanEval needs python3");
    let rows = humaneval_rows();
    assert_eq!(rows.len(), 164);
    // Both cores, each taking every other problem.
    let failed: Vec<String> = std::thread::scope(|s| {
        let halves: Vec<_> = (0..2)
            .map(|half| {
                let (rows, py) = (&rows, &py);
                s.spawn(move || {
                    rows.iter()
                        .skip(half)
                        .step_by(2)
                        .filter_map(|r| match run(py, &r.program(&r.canonical_solution), TIMEOUT) {
                            Outcome::Passed => None,
                            other => Some(format!("{}: {other:?}", r.task_id)),
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        halves.into_iter().flat_map(|h| h.join().expect("thread")).collect()
    });
    assert!(failed.is_empty(), "canonical solutions failing: {failed:?}");
    // The prompt alone (a function with no body after its docstring returns None) fails.
    let first = &rows[0];
    assert!(!run(&py, &first.program(""), TIMEOUT).passed());
}

#[test]
fn humaneval_programs_run_as_lm_evals_code_eval_runs_them() {
    use evalkit::suites::humaneval::{python, run, Outcome};
    use std::time::{Duration, Instant};
    let py = python().expect("HumanEval needs python3");
    let short = Duration::from_millis(500);
    let failed = |program: &str, why: &str| match run(&py, program, short) {
        Outcome::Failed(message) => assert!(message.contains(why), "{program:?}: {message}"),
        other => panic!("{program:?} should fail with {why}: {other:?}"),
    };
    assert_eq!(run(&py, "x = 1\nassert x == 1", short), Outcome::Passed);
    failed("assert 1 == 2", "AssertionError");
    failed("def f(:\n  pass", "SyntaxError");
    // Leaving early is no pass: SystemExit is an exception, `exit` is disabled, and a process
    // ended from inside reports no verdict.
    failed("import sys\nsys.exit(0)", "SystemExit");
    failed("exit(0)", "TypeError");
    failed("import os\nos._exit(0)", "without a verdict");
    // Output is swallowed (even a lot of it), input raises, destructive calls are disabled.
    assert_eq!(
        run(&py, "for i in range(200000):\n    print(i)", short),
        Outcome::Passed
    );
    failed("input()", "OSError");
    failed("import os\nos.remove('x')", "TypeError");
    failed("import subprocess\nsubprocess.run(['true'])", "TypeError");
    // Modules imported before the guard, as in lm-eval's process (multiprocessing's import
    // calls os.getcwd, which the guard disables).
    assert_eq!(
        run(
            &py,
            "import os, multiprocessing\nassert multiprocessing.cpu_count() > 0",
            short
        ),
        Outcome::Passed
    );
    // The verdict does not wait for threads, exit handlers or processes the program left
    // behind, nor depend on its file descriptor 1.
    let t = Instant::now();
    let lingering = "import atexit, os, threading, time\n\
        threading.Thread(target=lambda: time.sleep(8)).start()\n\
        atexit.register(lambda: time.sleep(8))\n\
        os.posix_spawn('/bin/sleep', ['sleep', '8'], dict(os.environ))\n\
        os.close(1)";
    assert_eq!(run(&py, lingering, short), Outcome::Passed);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // The program runs in fresh globals, not as `__main__`.
    assert_eq!(
        run(&py, "if __name__ == '__main__':\n    raise ValueError", short),
        Outcome::Passed
    );
    // The alarm stops a loop; a loop that swallows it is killed a second later.
    let t = Instant::now();
    assert_eq!(run(&py, "while True:\n    pass", short), Outcome::TimedOut);
    let stubborn =
        "while True:\n    try:\n        while True:\n            pass\n    except BaseException:\n        pass";
    assert_eq!(run(&py, stubborn, short), Outcome::TimedOut);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}
