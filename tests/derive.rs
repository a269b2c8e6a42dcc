//! `#[derive(Evaluation)]`: every kind, templates, computed fields, answer forms, few-shot, and
//! a derived evaluation against a hand-written implementation of the same benchmark. Generated
//! code must compile without a single warning.
#![deny(warnings)]

use crate::util::{data_dir, open};
use evalkit::core::benchmark::{task, Benchmark};
use evalkit::core::fewshot::{FewShot, FewShotSampler, FewShotSpec};
use evalkit::core::kinds::{Env, McItem, MultipleChoice, MultipleChoiceTask, RowError, TaskKind};
use evalkit::core::{Outcome, RunOptions};
use evalkit::Evaluation;
use serde::Deserialize;
use serde_json::Value;

fn run(e: &dyn evalkit::core::Evaluation, name: &str, opts: &RunOptions) -> Outcome {
    evaluate(e, name, opts).expect("evaluation runs")
}

/// `e` evaluated on checkpoint `name`.
fn evaluate(e: &dyn evalkit::core::Evaluation, name: &str, opts: &RunOptions) -> evalkit::core::Result<Outcome> {
    let (model, tok) = open(name);
    let env = Env {
        model: model.as_ref(),
        tokenizer: &tok,
        options: opts,
        journal_dir: None,
        progress: None,
    };
    e.evaluate(&env)
}

#[derive(Evaluation, Deserialize, Clone)]
#[eval(name = "arc_easy_derived", kind = multiple_choice, metrics(acc, acc_norm), batch_size = 7, num_fewshot = 2, description = "Science.\n\n")]
struct Arc {
    #[eval(context = "Question: {question}\nAnswer:")]
    question: String,
    #[eval(choices)]
    choices: Vec<String>,
    #[eval(answer = letter)]
    key: String,
}

/// The same benchmark written by hand against the kind trait.
struct ArcByHand(Arc);
impl MultipleChoice for ArcByHand {
    fn get(&self) -> Result<McItem, RowError> {
        let a = &self.0;
        let answer = (a.key.as_bytes()[0] - b'A') as usize;
        Ok(McItem::shared(
            format!("Question: {}\nAnswer:", a.question),
            &a.choices,
            answer,
        ))
    }
}

fn arc_rows(n: usize) -> Vec<Arc> {
    let text = std::fs::read_to_string(data_dir().join("arc/ARC-Easy/ARC-Easy-Test.jsonl")).expect("ARC-Easy");
    text.lines()
        .take(n)
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("row");
            let ch = v["question"]["choices"].as_array().expect("choices");
            Arc {
                question: v["question"]["stem"].as_str().expect("stem").into(),
                choices: ch.iter().map(|c| c["text"].as_str().expect("text").into()).collect(),
                key: v["answerKey"].as_str().expect("key").into(),
            }
        })
        .filter(|a| a.key.chars().all(|c| c.is_ascii_uppercase()))
        .collect()
}

#[test]
fn derived_equals_hand_written_on_a_real_checkpoint() {
    let rows = arc_rows(30);
    let derived = task(rows.clone()).build();
    assert_eq!(derived.name(), "arc_easy_derived");
    assert_eq!(derived.kind(), TaskKind::MultipleChoice);
    assert_eq!(derived.defaults().batch_size, Some(7));
    assert_eq!(<Arc as Benchmark>::METRICS, &["acc", "acc_norm"]);
    let n = rows.len();
    let mut by_hand = MultipleChoiceTask::new("arc_easy_derived", rows.into_iter().map(ArcByHand).collect());
    // The derived description precedes every context at zero-shot too (lm-eval's layout).
    let zero_shot = FewShotSpec {
        k: 0,
        sampler: FewShotSampler::First,
        description: "Science.\n\n".into(),
        delimiter: " ".into(),
    };
    by_hand.fewshot = Some(FewShot::new(vec![], zero_shot, n, None).expect("no pool needed"));
    for model in ["stories260K-hf", "tiny-gpt2-random"] {
        // The same batching for both (the derived default of 7 applies to neither).
        let opts = RunOptions {
            batch_size: Some(7),
            ..RunOptions::default()
        };
        let a = run(derived.as_ref(), model, &opts);
        let b = run(&by_hand, model, &opts);
        // Built without a pool, it runs zero-shot, and its outcome (results.json) says so
        // beside the warning, which a library user without a tracing subscriber never sees.
        let note = a.notes.get("num_fewshot").and_then(|n| n.as_str()).unwrap_or_default();
        assert!(note.contains("declares num_fewshot = 2"), "{:?}", a.notes);
        assert!(!b.notes.contains_key("num_fewshot"));
        assert_eq!(a.samples.len(), b.samples.len());
        for (x, y) in a.samples.iter().zip(&b.samples) {
            assert!(x == y, "{model}: per-sample records differ:\n{x}\n{y}");
        }
        assert_eq!(a.per_sample, b.per_sample);
    }
}

#[derive(Evaluation)]
#[eval(kind = loglikelihood, continuation = Self::last_word, context = Self::head)]
struct LambadaRow {
    text: String,
}
impl LambadaRow {
    fn head(&self) -> String {
        self.text.rsplit_once(' ').map_or(String::new(), |(h, _)| h.to_string())
    }
    fn last_word(&self) -> String {
        format!(" {}", self.text.rsplit_once(' ').map_or(self.text.as_str(), |(_, w)| w))
    }
}

#[derive(Evaluation)]
#[eval(kind = perplexity, name = "texts")]
struct Page {
    #[eval(text)]
    body: String,
}

#[derive(Evaluation)]
#[eval(kind = next_token, clean = trim, check = exact_match)]
struct Sentence {
    #[eval(text)]
    s: String,
}

fn shout(s: &str) -> String {
    s.to_uppercase()
}

#[derive(Evaluation)]
#[eval(kind = generate, max_new_tokens = 8, stop("\n", "."), clean = regex(r"([0-9]+)"), prompt = "Q: {q} {{braces}}\nA:", target = "{a}")]
struct Arith {
    q: String,
    a: u32,
}

#[derive(Evaluation)]
#[eval(kind = generate, max_new_tokens = 4, clean = shout, score = Self::scores, metrics(loud))]
struct Loud {
    #[eval(prompt)]
    p: String,
    #[eval(target)]
    t: String,
}
impl Loud {
    fn scores(target: &str, cleaned: &str) -> Vec<(String, f64)> {
        vec![(
            "loud".into(),
            f64::from(u8::from(cleaned.to_lowercase().contains(&target.to_lowercase()))),
        )]
    }
}

/// `Loud` with its highlighted metric misspelt: the hook returns `loud`.
#[derive(Evaluation)]
#[eval(kind = generate, max_new_tokens = 4, clean = shout, score = Loud::scores, metrics(lound))]
struct Lound {
    #[eval(prompt)]
    p: String,
    #[eval(target)]
    t: String,
}

/// `Loud` without `metrics(...)`: its hook's names are known only once rows are scored, so
/// it highlights none (not the kind's `exact_match`, which it does not report).
#[derive(Evaluation)]
#[eval(kind = generate, max_new_tokens = 4, clean = shout, score = Loud::scores)]
struct Unnamed {
    #[eval(prompt)]
    p: String,
    #[eval(target)]
    t: String,
}

#[derive(Evaluation)]
#[eval(kind = multiple_choice, choices = Self::yes_no, delimiter = " ")]
struct YesNo {
    #[eval(context = "{passage}\nQuestion: {question}?\nAnswer:")]
    passage: String,
    question: String,
    #[eval(answer)]
    answer: bool,
}
impl YesNo {
    fn yes_no(&self) -> [&'static str; 2] {
        ["no", "yes"]
    }
}

#[derive(Evaluation)]
#[eval(kind = multiple_choice)]
struct Indexed<T: Clone + std::fmt::Display> {
    #[eval(context)]
    c: T,
    #[eval(choices)]
    options: [&'static str; 3],
    #[eval(answer = text)]
    right: String,
}

#[test]
fn every_kind_derives_and_runs() {
    let opts = RunOptions::default();
    let ll = task(vec![LambadaRow {
        text: "Once upon a time there was a girl".into(),
    }])
    .build();
    let o = run(ll.as_ref(), "stories260K-hf", &opts);
    assert_eq!(o.samples[0]["contexts"][0], "Once upon a time there was a");
    assert_eq!(o.samples[0]["continuations"][0], " girl");
    assert!(o.metrics.contains_key("perplexity"));
    // Few-shot examples are lm-eval's `doc_to_text + target_delimiter + doc_to_target`: a
    // continuation that starts with a space follows the delimiter's space (two spaces, as
    // lm-eval 0.4.13 writes them, with its warning).
    let pool = vec![LambadaRow {
        text: "The dog ran home".into(),
    }];
    let shot = task(vec![LambadaRow {
        text: "Once upon a time there was a girl".into(),
    }])
    .fewshot(&pool, 1, FewShotSampler::First, "")
    .expect("examples")
    .build();
    let o = run(shot.as_ref(), "stories260K-hf", &opts);
    assert_eq!(
        o.samples[0]["contexts"][0],
        "The dog ran  home\n\nOnce upon a time there was a"
    );

    let p = task(vec![Page {
        body: "Lily and Tom went to the park.".into(),
    }])
    .build();
    assert_eq!(p.name(), "texts");
    assert!(run(p.as_ref(), "stories260K-hf", &opts).metrics["word_perplexity"].value > 1.0);

    let n = task(vec![Sentence {
        s: "Once upon a time".into(),
    }])
    .build();
    assert_eq!(n.name(), "sentence");
    assert_eq!(
        run(n.as_ref(), "stories260K-hf", &opts).per_sample["acc"],
        vec![1.0],
        "' time' follows 'Once upon a'"
    );

    let g = task(vec![Arith { q: "1+1?".into(), a: 2 }]).build();
    let o = run(g.as_ref(), "stories260K-hf", &opts);
    assert_eq!(o.samples[0]["prompt"], "Q: 1+1? {braces}\nA:");
    assert_eq!(o.samples[0]["target"], "2");
    assert!(o.per_sample.contains_key("exact_match"));

    let l = task(vec![Loud {
        p: "Once upon a".into(),
        t: "time".into(),
    }])
    .build();
    let o = run(l.as_ref(), "stories260K-hf", &opts);
    assert_eq!(o.per_sample["loud"], vec![1.0], "{:?}", o.samples[0]);
    assert!(o.samples[0]["extracted"][0]
        .as_str()
        .expect("extracted")
        .contains("TIME"));
    // A highlighted metric the hook does not return is a typo: an error naming what it reports.
    let typo = task(vec![Lound {
        p: "Once upon a".into(),
        t: "time".into(),
    }])
    .build();
    let e = evaluate(typo.as_ref(), "stories260K-hf", &opts).expect_err("lound is not reported");
    assert!(e.is_evaluation_specific(), "the run's other evaluations go on");
    let e = e.to_string();
    assert!(
        e.contains("metrics(lound) names `lound`, which it does not report (it reports: loud)"),
        "{e}"
    );
    assert!(<Unnamed as Benchmark>::METRICS.is_empty());
    let unnamed = task(vec![Unnamed {
        p: "Once upon a".into(),
        t: "time".into(),
    }])
    .build();
    let o = evaluate(unnamed.as_ref(), "stories260K-hf", &opts).expect("no highlighted metric to miss");
    assert_eq!(o.per_sample["loud"], vec![1.0]);

    let y = task(vec![YesNo {
        passage: "The sky is blue.".into(),
        question: "is the sky blue".into(),
        answer: true,
    }])
    .build();
    let o = run(y.as_ref(), "stories260K-hf", &opts);
    assert_eq!(o.samples[0]["continuations"], serde_json::json!([" no", " yes"]));
    assert_eq!(o.samples[0]["answer"], 1);

    let i = task(vec![Indexed {
        c: 7u8,
        options: ["a", "b", "c"],
        right: "c".into(),
    }])
    .build();
    assert_eq!(run(i.as_ref(), "stories260K-hf", &opts).samples[0]["answer"], 2);
}

#[test]
fn bad_answers_are_row_errors() {
    let rows = vec![Indexed {
        c: "x".to_string(),
        options: ["a", "b", "c"],
        right: "zzz".into(),
    }];
    let e = task(rows).build();
    let (model, tok) = open("stories260K-hf");
    let env = Env {
        model: model.as_ref(),
        tokenizer: &tok,
        options: &RunOptions::default(),
        journal_dir: None,
        progress: None,
    };
    let err = e.evaluate(&env).expect_err("answer matches no choice");
    assert!(
        err.to_string().contains("row 0: answer \"zzz\" matches no choice"),
        "{err}"
    );
}

#[derive(Evaluation, Deserialize)]
#[eval(name = "repeated_choices", kind = multiple_choice)]
struct Repeated {
    #[eval(context)]
    question: String,
    #[eval(choices)]
    options: Vec<String>,
    #[eval(answer)]
    label: usize,
}

/// A choice given twice is scored once, as lm-eval's logits cache scores an equal request
/// once: equal log-likelihoods, and the tie goes to the first (DESIGN section 3). Computed
/// twice in one packed batch of these 40 rows (whitespace and Unicode in contexts and choices,
/// five rows with a repeated choice), row 1's two " x" differed in the last bit and the
/// second one won.
#[test]
fn a_repeated_choice_scores_equal_and_ties_go_to_the_first() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/repeated-choices.jsonl");
    let rows: Vec<Repeated> = std::fs::read_to_string(&path)
        .expect("fixture")
        .lines()
        .map(|l| serde_json::from_str(l).expect("row"))
        .collect();
    let options: Vec<Vec<String>> = rows.iter().map(|r| r.options.clone()).collect();
    let o = run(task(rows).build().as_ref(), "stories260K-hf", &RunOptions::default());
    let mut repeats = 0;
    for (i, opts) in options.iter().enumerate() {
        let lls = o.samples[i]["loglikelihoods"].as_array().expect("loglikelihoods");
        for (a, b) in (0..opts.len()).flat_map(|a| (a + 1..opts.len()).map(move |b| (a, b))) {
            if opts[a] == opts[b] {
                assert_eq!(lls[a], lls[b], "row {i}: choices {a} and {b} are both {:?}", opts[a]);
                repeats += 1;
            }
        }
    }
    assert_eq!(repeats, 5);
    let row1 = o.samples[1]["loglikelihoods"].as_array().expect("row 1");
    assert!(
        row1.iter().all(|v| v.as_f64() <= row1[0].as_f64()),
        "{row1:?}: \" x\" is the most likely"
    );
    assert_eq!(o.per_sample["acc"][1], 1.0, "the first of the tied choices is picked");
}

/// An empty choice divides its log-likelihood by zero characters, as lm-eval's numpy does:
/// −inf, so `acc_norm` and `acc_bytes` never pick it while another choice is finite (a
/// length of at least one made it the likeliest here).
#[test]
fn an_empty_choice_is_never_the_normalised_pick() {
    let rows = vec![Repeated {
        question: "Question: is the dog happy?\nAnswer:".into(),
        options: vec!["yes".into(), "no".into(), String::new()],
        label: 0,
    }];
    let o = run(task(rows).build().as_ref(), "stories260K-hf", &RunOptions::default());
    let lls: Vec<f64> = o.samples[0]["loglikelihoods"]
        .as_array()
        .expect("loglikelihoods")
        .iter()
        .map(|v| v.as_f64().expect("number"))
        .collect();
    assert!(
        lls[2] > lls[0] / 3.0 && lls[2] > lls[1] / 2.0,
        "{lls:?}: the empty choice would win at length 1"
    );
    let pick = if lls[0] / 3.0 >= lls[1] / 2.0 { 0.0 } else { 1.0 };
    assert_eq!(o.per_sample["acc_norm"][0], 1.0 - pick, "{lls:?}");
    assert_eq!(o.per_sample["acc_bytes"][0], 1.0 - pick, "{lls:?}");
}

#[test]
fn fewshot_prefix_follows_lm_eval_layout() {
    let pool = arc_rows(3);
    let rows = arc_rows(8)[3..].to_vec();
    let e = task(rows.clone())
        .fewshot(&pool, 2, FewShotSampler::First, "Science.\n\n")
        .expect("examples")
        .build();
    let o = run(e.as_ref(), "stories260K-hf", &RunOptions::default());
    // The derived defaults (num_fewshot = 2, description) give the same layout.
    let d = task(rows.clone()).fewshot_default(&pool, 5).expect("examples").build();
    let od = run(d.as_ref(), "stories260K-hf", &RunOptions::default());
    let ctx = od.samples[0]["contexts"][0].as_str().expect("context");
    assert!(
        ctx.starts_with("Science.\n\nQuestion: ") && ctx.matches("\nAnswer: ").count() == 2,
        "{ctx}"
    );
    assert_eq!(<Arc as Benchmark>::NUM_FEWSHOT, 2);
    let ex = |a: &Arc| {
        format!(
            "Question: {}\nAnswer: {}\n\n",
            a.question,
            a.choices[(a.key.as_bytes()[0] - b'A') as usize]
        )
    };
    let want = format!(
        "Science.\n\n{}{}Question: {}\nAnswer:",
        ex(&pool[0]),
        ex(&pool[1]),
        rows[0].question
    );
    assert_eq!(o.samples[0]["contexts"][0], want);
    // Zero-shot keeps the description (lm-eval's fewshot_context at k = 0).
    let z = run(
        task(rows.clone()).build().as_ref(),
        "stories260K-hf",
        &RunOptions::default(),
    );
    let want0 = format!("Science.\n\nQuestion: {}\nAnswer:", rows[0].question);
    assert_eq!(z.samples[0]["contexts"][0], want0);
    // Random draws are Python's `random.Random(3).sample(pool, 1)`, once per row in row order,
    // fixed when the evaluation is built: a subset does not change them.
    let s = task(rows.clone())
        .fewshot(&pool, 1, FewShotSampler::Random(3), "")
        .expect("examples")
        .build();
    let mut rnd = evalkit::core::pyrandom::PyRandom::new(3);
    let a = run(s.as_ref(), "stories260K-hf", &RunOptions::default());
    for (i, sample) in a.samples.iter().enumerate() {
        let j = rnd.sample(pool.len(), 1).expect("sample")[0];
        let want = format!("{}Question: {}\nAnswer:", ex(&pool[j]), rows[i].question);
        assert_eq!(sample["contexts"][0], want, "row {i}");
    }
    let sub = RunOptions {
        subset: Some(evalkit::core::kinds::Subset::Sample(2)),
        ..RunOptions::default()
    };
    for sample in run(s.as_ref(), "stories260K-hf", &sub).samples {
        let i = sample["index"].as_u64().expect("index") as usize;
        assert_eq!(sample["contexts"], a.samples[i]["contexts"], "row {i}");
    }
}

/// Field types are checked by what they can do, not by their names: an alias, a boxed slice.
type Label = u8;

#[derive(Evaluation, Clone)]
#[eval(kind = multiple_choice, context = "{q}", extra_metrics = Self::mass, metrics(acc, mass))]
struct Aliased {
    q: String,
    #[eval(choices)]
    options: Box<[String]>,
    #[eval(answer)]
    label: Label,
}

impl Aliased {
    fn mass(&self, _: &evalkit::core::kinds::McItem, lls: &[f64]) -> Vec<(&'static str, f64)> {
        let p: Vec<f64> = lls.iter().map(|l| l.exp()).collect();
        vec![("mass", p[usize::from(self.label)] / p.iter().sum::<f64>())]
    }
}

/// Partial scoring: one context per option, one continuation after each.
#[derive(Evaluation)]
#[eval(kind = multiple_choice, contexts = Self::contexts, continuation = "{rest}", answer = Self::right)]
struct Partial {
    options: [String; 2],
    rest: String,
    right: usize,
}

impl Partial {
    fn contexts(&self) -> Result<Vec<String>, evalkit::core::kinds::RowError> {
        Ok(self.options.to_vec())
    }
    fn right(&self) -> usize {
        self.right
    }
}

#[derive(Evaluation)]
#[eval(kind = generate, max_new_tokens = 3, prompt = "{q}", score = self.graded, metrics("len@3"))]
struct Graded {
    q: String,
    #[eval(target)]
    a: String,
}

impl Graded {
    fn graded(&self, target: &str, cleaned: &str) -> Vec<(String, f64)> {
        vec![(
            "len@3".into(),
            f64::from(u8::from(cleaned.len() >= 3 && !target.is_empty())),
        )]
    }
}

#[test]
fn derive_covers_aliases_partial_scoring_extra_metrics_and_method_hooks() {
    use evalkit::core::kinds::MultipleChoice;
    let rows = vec![Aliased {
        q: "Once upon a time".into(),
        options: vec!["there was".to_string(), "xylophone".to_string()].into_boxed_slice(),
        label: 0,
    }];
    let o = run(task(rows).build().as_ref(), "stories260K-hf", &RunOptions::default());
    let lls: Vec<f64> = serde_json::from_value(o.samples[0]["loglikelihoods"].clone()).expect("lls");
    let p: Vec<f64> = lls.iter().map(|l| l.exp()).collect();
    assert!((o.per_sample["mass"][0] - p[0] / (p[0] + p[1])).abs() < 1e-12);
    assert!(o.per_sample.contains_key("acc_norm"), "the kind's own metrics stay");

    let row = Partial {
        options: ["The cat".into(), "The dog".into()],
        rest: "barked.".into(),
        right: 1,
    };
    let item = row.get().expect("item");
    assert_eq!(item.contexts, vec!["The cat", "The dog"]);
    assert_eq!(item.continuations, vec![" barked.", " barked."]);
    assert_eq!((item.answer, <Partial as Benchmark>::METRICS.len()), (1, 4));
    assert_eq!(
        row.example().expect("example"),
        ("The dog".to_string(), "barked.".to_string())
    );

    let g = run(
        task(vec![Graded {
            q: "Once".into(),
            a: "x".into(),
        }])
        .build()
        .as_ref(),
        "stories260K-hf",
        &RunOptions::default(),
    );
    let generated = g.samples[0]["generations"][0].as_str().expect("text");
    assert_eq!(g.per_sample["len@3"], vec![f64::from(u8::from(generated.len() >= 3))]);
}
