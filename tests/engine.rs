//! The engine's definitions pinned on the oracle model (hand-computed numbers), and its
//! invariances on the real checkpoints: batch size, padding unit, prefix sharing, and
//! agreement with the backend's own per-token log-probs.

use crate::util::oracle::{self, lp, Oracle};
use crate::util::{data_dir, open};
use evalkit::core::kinds::*;
use evalkit::core::metrics::Reduce;
use evalkit::core::model::Model;
use evalkit::core::request::encode_pair;
use evalkit::core::{Error, Evaluation, Outcome, RunOptions, Tokenizer};
use serde_json::Value;

fn try_run(
    e: &dyn Evaluation,
    model: &dyn Model,
    tok: &Tokenizer,
    opts: &RunOptions,
) -> evalkit::core::Result<Outcome> {
    let env = Env {
        model,
        tokenizer: tok,
        options: opts,
        journal_dir: None,
        progress: None,
    };
    e.evaluate(&env)
}

fn run(e: &dyn Evaluation, model: &dyn Model, tok: &Tokenizer, opts: &RunOptions) -> Outcome {
    try_run(e, model, tok, opts).expect("evaluation runs")
}

/// A hand-made multiple-choice row.
#[derive(Clone)]
struct Mc {
    context: String,
    choices: Vec<String>,
    answer: usize,
}

impl MultipleChoice for Mc {
    fn get(&self) -> Result<McItem, RowError> {
        Ok(McItem::shared(self.context.clone(), &self.choices, self.answer))
    }
}

fn mc(context: &str, choices: &[&str], answer: usize) -> Mc {
    Mc {
        context: context.into(),
        choices: choices.iter().map(|s| s.to_string()).collect(),
        answer,
    }
}

#[test]
fn oracle_multiple_choice_scores_every_continuation_token() {
    crate::util::init();
    let (model, tok) = (Oracle::new(16), oracle::tokenizer());
    // a → "b a" (2 tokens) vs "c c c c" (4 tokens): acc prefers the first, every
    // length normalisation the second.
    let task = MultipleChoiceTask::new("oracle_mc", vec![mc("a", &["b a", "c c c c"], 0)]);
    let out = run(&task, &model, &tok, &RunOptions::default());
    let ll0 = lp(1, 2) + lp(2, 1);
    let ll1 = lp(1, 3) + 3.0 * lp(3, 3);
    let got: Vec<f64> = serde_json::from_value(out.samples[0]["loglikelihoods"].clone()).expect("lls");
    crate::assert_close!(got, [ll0, ll1], 1e-5);
    assert!(
        ll0 > ll1 && ll0 / 3.0 < ll1 / 7.0 && ll0 / 2.0 < ll1 / 4.0,
        "the item separates the metrics"
    );
    assert_eq!(out.per_sample["acc"], vec![1.0]);
    assert_eq!(out.per_sample["acc_norm"], vec![0.0]);
    assert_eq!(out.per_sample["acc_bytes"], vec![0.0]);
    assert_eq!(out.per_sample["acc_token_norm"], vec![0.0]);
    assert_eq!(out.samples[0]["num_tokens"], serde_json::json!([2, 4]));
    assert_eq!(out.samples[0]["prediction"], 0);
}

#[test]
fn oracle_empty_context_uses_prefix_token() {
    crate::util::init();
    let (model, tok) = (Oracle::new(16), oracle::tokenizer());
    struct L;
    impl Loglikelihood for L {
        fn get(&self) -> Result<LlItem, RowError> {
            Ok(LlItem {
                context: String::new(),
                continuation: "a b".into(),
            })
        }
    }
    let out = run(
        &LoglikelihoodTask::new("ll", vec![L]),
        &model,
        &tok,
        &RunOptions::default(),
    );
    // <s> → a → b; a is the argmax after <s>, b after a: greedy.
    let ll: f64 = serde_json::from_value(out.samples[0]["loglikelihoods"][0].clone()).expect("ll");
    assert!((ll - (lp(0, 1) + lp(1, 2))).abs() < 1e-5);
    assert_eq!(out.per_sample["acc"], vec![1.0]);
    assert!((out.metrics["perplexity"].value - (-ll).exp()).abs() < 1e-6);
}

struct Text(String);
impl Perplexity for Text {
    fn get(&self) -> Result<PplItem, RowError> {
        Ok(PplItem {
            text: self.0.clone(),
            count_text: None,
        })
    }
}

#[test]
fn oracle_rolling_windows_score_each_token_once() {
    crate::util::init();
    // 7 tokens, max length 3: windows score 3, 3, 1 tokens.
    let (model, tok) = (Oracle::new(3), oracle::tokenizer());
    let text = "a b c a b c c";
    let ids = [1usize, 2, 3, 1, 2, 3, 3];
    let expected: f64 = lp(0, ids[0]) + ids.windows(2).map(|w| lp(w[0], w[1])).sum::<f64>();
    let out = run(
        &PerplexityTask::new("ppl", vec![Text(text.into())]),
        &model,
        &tok,
        &RunOptions::default(),
    );
    let ll = out.samples[0]["loglikelihood"].as_f64().expect("ll");
    assert!((ll - expected).abs() < 1e-5, "{ll} vs {expected}");
    assert_eq!(out.samples[0]["tokens"], 7);
    assert_eq!(out.samples[0]["words"], 7);
    assert_eq!(out.samples[0]["bytes"], 13);
    assert!((out.metrics["word_perplexity"].value - (-expected / 7.0).exp()).abs() < 1e-5);
    assert!((out.metrics["bits_per_byte"].value - (-expected / 13.0 / std::f64::consts::LN_2)).abs() < 1e-5);
    assert!(out.metrics["bits_per_byte"].stderr.is_none());
}

/// A next-token row: its text.
struct N(&'static str);
impl NextToken for N {
    fn get(&self) -> Result<String, RowError> {
        Ok(self.0.into())
    }
}

#[test]
fn oracle_next_token_and_generation() {
    crate::util::init();
    let (model, tok) = (Oracle::new(8), oracle::tokenizer());
    // Argmax after a is b (right), after c is c (wrong for "c a").
    let out = run(
        &NextTokenTask::new("nt", vec![N("a b"), N("c a")]),
        &model,
        &tok,
        &RunOptions::default(),
    );
    assert_eq!(out.per_sample["acc"], vec![1.0, 0.0]);
    assert_eq!(out.samples[1]["predictions"], serde_json::json!(["c"]));

    struct G;
    impl Generate for G {
        fn max_new_tokens() -> usize {
            100
        }
        fn get(&self) -> Result<GenItem, RowError> {
            Ok(GenItem {
                prompt: "a".into(),
                target: "b c c c".into(),
            })
        }
    }
    // Greedy from a: b (0.6), then after b all tie → lowest id <s> = EOS: stops at once.
    let out = run(&GenerateTask::new("gen", vec![G]), &model, &tok, &RunOptions::default());
    assert_eq!(out.samples[0]["generations"], serde_json::json!(["b"]));
    assert_eq!(out.samples[0]["finish"], serde_json::json!(["eos"]));
    // 100 new tokens do not fit max length 8: lowered to 4 and recorded.
    assert_eq!(out.notes["max_new_tokens"]["used"], 4);
}

#[test]
fn nucleus_keeps_the_token_that_crosses_p() {
    use evalkit::core::batch::nucleus;
    let logits: Vec<f32> = [0.5f32, 0.3, 0.15, 0.05].iter().map(|p| p.ln()).collect();
    let ids = |p: f64| nucleus(&logits, 1.0, p).iter().map(|&(i, _)| i).collect::<Vec<_>>();
    assert_eq!(ids(0.5), vec![0]);
    assert_eq!(ids(0.51), vec![0, 1]);
    assert_eq!(ids(0.8), vec![0, 1]);
    assert_eq!(ids(0.81), vec![0, 1, 2]);
    assert_eq!(ids(1.0).len(), 4);
    // Temperature sharpens: at T = 0.5 the top token alone holds 0.25/0.3625 ≈ 0.69.
    assert_eq!(nucleus(&logits, 0.5, 0.6).len(), 1);
}

#[test]
fn bad_datasets_get_clear_errors() {
    crate::util::init();
    let (model, tok) = (Oracle::new(16), oracle::tokenizer());
    let opts = RunOptions::default();
    let empty: MultipleChoiceTask<Mc> = MultipleChoiceTask::new("empty", vec![]);
    let e = try_run(&empty, &model, &tok, &opts).expect_err("empty dataset");
    assert!(e.to_string().contains("`empty`: the dataset is empty"), "{e}");
    let no_choices = MultipleChoiceTask::new("nochoice", vec![mc("a", &["b"], 0), mc("a", &[], 0)]);
    let e = try_run(&no_choices, &model, &tok, &opts).expect_err("no choices");
    assert!(
        matches!(e, Error::Row { row: 1, .. }) && e.to_string().contains("choice list is empty"),
        "{e}"
    );
    let bad_answer = MultipleChoiceTask::new("badanswer", vec![mc("a", &["b", "c"], 2)]);
    let e = try_run(&bad_answer, &model, &tok, &opts).expect_err("answer out of range");
    assert!(
        e.to_string()
            .contains("row 0: answer index 2 out of range for 2 choices"),
        "{e}"
    );
}

#[test]
fn subsets_are_first_n_or_seeded_per_evaluation() {
    assert_eq!(select_rows("x", 10, Subset::First(3), 1), vec![0, 1, 2]);
    let a = select_rows("arc_easy", 1000, Subset::Sample(5), 7);
    assert_eq!(
        a,
        select_rows("arc_easy", 1000, Subset::Sample(5), 7),
        "same seed, same rows"
    );
    assert_ne!(
        a,
        select_rows("piqa", 1000, Subset::Sample(5), 7),
        "each evaluation has its own RNG"
    );
    assert!(a.windows(2).all(|w| w[0] < w[1]), "kept in dataset order");
}

// ---------------------------------------------------------------- real checkpoints

fn arc_rows(n: usize) -> Vec<Mc> {
    let text = std::fs::read_to_string(data_dir().join("arc/ARC-Easy/ARC-Easy-Test.jsonl")).expect("ARC-Easy");
    text.lines()
        .take(n)
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("row");
            let choices: Vec<&str> = v["question"]["choices"]
                .as_array()
                .expect("choices")
                .iter()
                .map(|c| c["text"].as_str().expect("text"))
                .collect();
            let labels: Vec<&str> = v["question"]["choices"]
                .as_array()
                .expect("choices")
                .iter()
                .map(|c| c["label"].as_str().expect("label"))
                .collect();
            let answer = labels
                .iter()
                .position(|l| *l == v["answerKey"].as_str().expect("key"))
                .expect("answer");
            mc(
                &format!("Question: {}\nAnswer:", v["question"]["stem"].as_str().expect("stem")),
                &choices,
                answer,
            )
        })
        .collect()
}

struct Lambada(String);
impl Loglikelihood for Lambada {
    fn get(&self) -> Result<LlItem, RowError> {
        let (ctx, last) = self
            .0
            .rsplit_once(' ')
            .ok_or_else(|| RowError::new("text has no space"))?;
        Ok(LlItem {
            context: ctx.into(),
            continuation: format!(" {last}"),
        })
    }
}
impl NextToken for Lambada {
    fn get(&self) -> Result<String, RowError> {
        Ok(self.0.clone())
    }
}

fn lambada_rows(n: usize) -> Vec<Lambada> {
    let text = std::fs::read_to_string(data_dir().join("lambada/lambada_test.jsonl")).expect("lambada");
    text.lines()
        .take(n)
        .map(|l| {
            Lambada(
                serde_json::from_str::<Value>(l).expect("row")["text"]
                    .as_str()
                    .expect("text")
                    .into(),
            )
        })
        .collect()
}

#[derive(Clone)]
struct Question(String, String);
impl Generate for Question {
    fn max_new_tokens() -> usize {
        12
    }
    fn stop() -> Vec<String> {
        vec!["Question:".into(), "\n\n".into()]
    }
    fn get(&self) -> Result<GenItem, RowError> {
        Ok(GenItem {
            prompt: format!("Question: {}\nAnswer:", self.0),
            target: self.1.clone(),
        })
    }
}

fn gsm_rows(n: usize) -> Vec<Question> {
    let text = std::fs::read_to_string(data_dir().join("gsm8k/test.jsonl")).expect("gsm8k");
    text.lines()
        .take(n)
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("row");
            Question(
                v["question"].as_str().expect("q").into(),
                v["answer"].as_str().expect("a").into(),
            )
        })
        .collect()
}

fn opts(batch: usize) -> RunOptions {
    RunOptions {
        batch_size: Some(batch),
        chunk_size: Some(2),
        ..RunOptions::default()
    }
}

fn lls(o: &Outcome) -> Vec<f64> {
    o.samples
        .iter()
        .flat_map(|s| serde_json::from_value::<Vec<f64>>(s["loglikelihoods"].clone()).expect("lls"))
        .collect()
}

#[test]
fn multiple_choice_shared_context_equals_separate_scoring_and_backend() {
    for name in ["stories260K-hf", "tiny-gpt2-random"] {
        let (model, tok) = open(name);
        let rows = arc_rows(24);
        let task = MultipleChoiceTask::new("arc_easy", rows.clone());
        let shared = run(
            &task,
            model.as_ref(),
            &tok,
            &RunOptions {
                share_prefix: true,
                ..opts(5)
            },
        );
        let separate = run(
            &task,
            model.as_ref(),
            &tok,
            &RunOptions {
                share_prefix: false,
                ..opts(5)
            },
        );
        crate::assert_close!(lls(&shared), lls(&separate), 1e-4);
        assert!(
            shared.stats.work.tokens.forwarded < separate.stats.work.tokens.forwarded,
            "sharing computes fewer tokens"
        );
        // Each log-likelihood equals the backend's per-token log-probs summed directly.
        let mut direct = vec![];
        for r in &rows {
            for c in &r.choices {
                let (ctx, cont) = encode_pair(&tok, &r.context, &format!(" {c}")).expect("encode");
                let full: Vec<i64> = ctx.iter().chain(&cont).copied().collect();
                let t = tch::Tensor::from_slice(&full[..full.len() - 1]).view([1, -1]);
                let logp = model
                    .forward(&t, &t.ones_like())
                    .expect("forward")
                    .log_softmax(-1, tch::Kind::Float);
                let s: f64 = (0..cont.len())
                    .map(|k| logp.double_value(&[0, (ctx.len() - 1 + k) as i64, cont[k]]))
                    .sum();
                direct.push(s);
            }
        }
        crate::assert_close!(lls(&shared), direct, 1e-4);
        // The same through the KV-cache path (a model that does not pack rows): equal scores,
        // equal token counts.
        let cached = run(
            &task,
            &CacheOnly(model.as_ref()),
            &tok,
            &RunOptions {
                share_prefix: true,
                ..opts(5)
            },
        );
        crate::assert_close!(lls(&cached), lls(&shared), 1e-4);
        let (c, s) = (cached.stats.work.tokens, shared.stats.work.tokens);
        assert_eq!((c.forwarded, c.scored), (s.forwarded, s.scored));
        // Packed passes carry only the read positions through the last layer; the cache
        // path carries them all.
        assert_eq!(c.pruned, 0);
        assert_eq!(s.pruned, s.forwarded - s.scored, "{s:?}");
    }
}

/// A model as it is but without packed rows: sharing goes through its KV cache.
struct CacheOnly<'a>(&'a dyn Model);

impl Model for CacheOnly<'_> {
    fn max_len(&self) -> usize {
        self.0.max_len()
    }
    fn vocab_size(&self) -> usize {
        self.0.vocab_size()
    }
    fn device(&self) -> tch::Device {
        self.0.device()
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn hidden_states(
        &self,
        ids: &tch::Tensor,
        mask: &tch::Tensor,
        cache: Option<&mut evalkit::core::KvCache>,
    ) -> evalkit::core::Result<tch::Tensor> {
        self.0.hidden_states(ids, mask, cache)
    }
    fn head(&self, hidden: &tch::Tensor) -> evalkit::core::Result<tch::Tensor> {
        self.0.head(hidden)
    }
    fn new_cache(&self) -> Option<evalkit::core::KvCache> {
        self.0.new_cache()
    }
}

/// A model that runs out of memory (as CUDA says it) on any batch of more than `limit`
/// requests, and counts the batches it was asked for.
struct OomAbove<'a> {
    model: &'a dyn Model,
    limit: usize,
    asked: std::cell::RefCell<Vec<usize>>,
}

impl Model for OomAbove<'_> {
    fn max_len(&self) -> usize {
        self.model.max_len()
    }
    fn vocab_size(&self) -> usize {
        self.model.vocab_size()
    }
    fn device(&self) -> tch::Device {
        self.model.device()
    }
    fn describe(&self) -> String {
        self.model.describe()
    }
    fn hidden_states(
        &self,
        ids: &tch::Tensor,
        mask: &tch::Tensor,
        cache: Option<&mut evalkit::core::KvCache>,
    ) -> evalkit::core::Result<tch::Tensor> {
        self.model.hidden_states(ids, mask, cache)
    }
    fn head(&self, hidden: &tch::Tensor) -> evalkit::core::Result<tch::Tensor> {
        self.model.head(hidden)
    }
    fn new_cache(&self) -> Option<evalkit::core::KvCache> {
        self.model.new_cache()
    }
    fn score(
        &self,
        reqs: &[&evalkit::core::request::ScoreRequest],
        share: bool,
        counts: &mut evalkit::core::batch::TokenCounts,
    ) -> evalkit::core::Result<Vec<Vec<evalkit::core::request::ContinuationScore>>> {
        self.asked.borrow_mut().push(reqs.len());
        if reqs.len() > self.limit {
            counts.forwarded += 1_000_000; // work a failed batch must not count
            let oom = tch::TchError::Torch("CUDA out of memory. Tried to allocate 20.00 GiB".into());
            return Err(Error::torch("linear", oom));
        }
        self.model.score(reqs, share, counts)
    }
}

#[test]
fn auto_batch_size_halves_on_out_of_memory_and_keeps_the_size_that_fit() {
    let (model, tok) = open("stories260K-hf");
    let task = MultipleChoiceTask::new("arc_easy", arc_rows(40));
    let fixed = run(&task, model.as_ref(), &tok, &opts(16));
    let oom = OomAbove {
        model: model.as_ref(),
        limit: 5,
        asked: Default::default(),
    };
    let auto = RunOptions {
        batch_size: Some(16),
        auto_batch_size: true,
        ..opts(16)
    };
    let o = run(&task, &oom, &tok, &auto);
    crate::assert_close!(lls(&o), lls(&fixed), 1e-4);
    assert_eq!(o.stats.batch_cap, Some(4), "16 → 8 → 4");
    assert_eq!(
        o.stats.work.tokens, fixed.stats.work.tokens,
        "failed batches count no work"
    );
    // 16 and 8 fail once each; from then on no batch larger than 4 is asked for.
    let asked = oom.asked.borrow().clone();
    assert_eq!(&asked[..3], &[16, 8, 4], "{asked:?}");
    assert!(asked[3..].iter().all(|&n| n <= 4), "{asked:?}");
    assert_eq!(asked.iter().filter(|&&n| n <= 4).sum::<usize>(), 40);
    // Without auto the error stands; at one request per batch it stands too.
    let err = try_run(&task, &oom, &tok, &opts(16)).expect_err("out of memory");
    assert!(err.is_out_of_memory(), "{err}");
    let none = OomAbove {
        model: model.as_ref(),
        limit: 0,
        asked: Default::default(),
    };
    let err = try_run(&task, &none, &tok, &auto).expect_err("out of memory at batch size 1");
    assert!(
        err.is_out_of_memory() && err.to_string().contains("out of memory"),
        "{err}"
    );
}

#[test]
fn scores_do_not_depend_on_batch_size_or_padding() {
    let (model, tok) = open("stories260K-hf");
    let mcq = MultipleChoiceTask::new("arc_easy", arc_rows(20));
    let ll = LoglikelihoodTask::new("lambada", lambada_rows(20));
    let nt = NextTokenTask::new("lambada_nt", lambada_rows(20));
    let text = std::fs::read_to_string(data_dir().join("wikitext2/wiki.test.raw")).expect("wikitext");
    let pages: Vec<Text> = text
        .split("\n \n")
        .filter(|p| p.len() > 200)
        .take(6)
        .map(|p| Text(p.chars().take(3000).collect()))
        .collect();
    let ppl = PerplexityTask::new("wiki", pages);
    let gen = GenerateTask::new("gsm", gsm_rows(6));
    let mut base: Option<Vec<Vec<f64>>> = None;
    for (batch, unit) in [(1, 1), (3, 1), (16, 1), (3, 4)] {
        let o = RunOptions {
            batch_unit: unit,
            ..opts(batch)
        };
        let m = run(&mcq, model.as_ref(), &tok, &o);
        let l = run(&ll, model.as_ref(), &tok, &o);
        let n = run(&nt, model.as_ref(), &tok, &o);
        let p = run(&ppl, model.as_ref(), &tok, &o);
        let g = run(&gen, model.as_ref(), &tok, &o);
        let per_token: Vec<f64> = p
            .samples
            .iter()
            .map(|s| s["loglikelihood"].as_f64().unwrap() / s["tokens"].as_f64().unwrap())
            .collect();
        let gens: Vec<f64> = g
            .samples
            .iter()
            .map(|s| s["generations"][0].as_str().unwrap().len() as f64)
            .collect();
        let got = vec![
            lls(&m),
            m.per_sample["acc_norm"].clone(),
            lls(&l),
            n.per_sample["acc"].clone(),
            per_token,
            gens,
        ];
        match &base {
            None => base = Some(got),
            Some(b) => {
                for (x, y) in got.iter().zip(b) {
                    crate::assert_close!(x, y, 1e-4);
                }
            }
        }
        assert_eq!(
            m.score("acc", Reduce::None),
            Some(evalkit::core::metrics::Score::PerSample(m.per_sample["acc"].clone()))
        );
    }
}

#[test]
fn sampling_is_repeatable_and_batch_invariant() {
    let (model, tok) = open("stories260K-hf");
    let gen = GenerateTask::new("gsm", gsm_rows(4));
    let sampling = Some(evalkit::core::request::Sampling::Nucleus {
        temperature: 1.0,
        top_p: 0.9,
    });
    let o = |b| RunOptions {
        sampling,
        samples_per_prompt: 3,
        return_intermediates: true,
        ..opts(b)
    };
    let a = run(&gen, model.as_ref(), &tok, &o(1));
    let b = run(&gen, model.as_ref(), &tok, &o(5));
    let texts = |x: &Outcome| x.samples.iter().map(|s| s["generations"].clone()).collect::<Vec<_>>();
    assert_eq!(texts(&a), texts(&b));
    // Three samples per prompt, consecutive; they differ from each other.
    let first = a.samples[0]["generations"].as_array().expect("gens");
    assert_eq!(first.len(), 3);
    assert!(
        first[0] != first[1] || first[1] != first[2],
        "samples of one prompt should vary"
    );
    let inter = a.intermediates.expect("intermediates");
    assert_eq!(inter.len(), 12);
    assert_eq!(inter[0].tokens[..20], inter[1].tokens[..20], "p0, p0, p0, p1, ...");
    assert!(inter
        .iter()
        .all(|i| i.tokens.len() == inter[0].tokens.len() && i.action_mask.len() == i.padding_mask.len()));
}

#[test]
fn long_prompts_keep_their_end_and_are_counted() {
    let (model, tok) = open("tiny-gpt2-random");
    let long = "word ".repeat(400);
    let rows = vec![
        mc(&format!("{long}Question: what?\nAnswer:"), &["yes", "no"], 0),
        mc("Short?", &["yes", "no"], 1),
    ];
    let out = run(&MultipleChoiceTask::new("long", rows), model.as_ref(), &tok, &opts(2));
    assert_eq!(out.truncated, 1);
    assert_eq!(out.n, 2);
}

/// A model as it is that counts its padded passes (`hidden_states`).
struct CountsPadded<'a> {
    model: &'a dyn Model,
    padded: std::cell::Cell<usize>,
}

impl Model for CountsPadded<'_> {
    fn max_len(&self) -> usize {
        self.model.max_len()
    }
    fn vocab_size(&self) -> usize {
        self.model.vocab_size()
    }
    fn device(&self) -> tch::Device {
        self.model.device()
    }
    fn describe(&self) -> String {
        self.model.describe()
    }
    fn hidden_states(
        &self,
        ids: &tch::Tensor,
        mask: &tch::Tensor,
        cache: Option<&mut evalkit::core::KvCache>,
    ) -> evalkit::core::Result<tch::Tensor> {
        self.padded.set(self.padded.get() + 1);
        self.model.hidden_states(ids, mask, cache)
    }
    fn head(&self, hidden: &tch::Tensor) -> evalkit::core::Result<tch::Tensor> {
        self.model.head(hidden)
    }
    fn new_cache(&self) -> Option<evalkit::core::KvCache> {
        self.model.new_cache()
    }
    fn packs(&self) -> bool {
        self.model.packs()
    }
    fn hidden_states_packed(&self, batch: &evalkit::core::model::PackedBatch) -> evalkit::core::Result<tch::Tensor> {
        self.model.hidden_states_packed(batch)
    }
}

#[test]
fn truncated_rows_score_as_their_unshared_windows() {
    for name in ["stories260K-hf", "tiny-gpt2-random"] {
        let (model, tok) = open(name);
        let long = "once upon a time there was a word ".repeat(model.max_len() / 4);
        // Continuations of different lengths cut different context tails.
        let rows = vec![
            mc(
                &format!("{long}Question: what?\nAnswer:"),
                &["yes", "no, not at all", "maybe so"],
                0,
            ),
            mc("Short?", &["yes", "no"], 1),
            mc(&format!("Question: {long}?\nAnswer:"), &["a", "b c d e f"], 1),
        ];
        let task = MultipleChoiceTask::new("long", rows);
        let counted = CountsPadded {
            model: model.as_ref(),
            padded: 0.into(),
        };
        let with = |share| RunOptions {
            share_prefix: share,
            ..opts(2)
        };
        let windows = run(&task, &counted, &tok, &with(true));
        assert_eq!(counted.padded.get(), 0, "{name}: truncated rows run packed");
        let unshared = run(&task, &counted, &tok, &with(false));
        assert!(counted.padded.get() > 0, "{name}: without sharing, padded rows");
        assert_eq!(windows.truncated, 2, "{name}");
        assert_eq!(unshared.truncated, 2, "{name}");
        crate::assert_close!(lls(&windows), lls(&unshared), 1e-4);
        let flags = |o: &Outcome| o.samples.iter().map(|s| s["truncated"].clone()).collect::<Vec<_>>();
        assert_eq!(flags(&windows), flags(&unshared));
        // Each window is max_len tokens, as the padded row it replaces; the short row's
        // context runs once.
        let (w, u) = (windows.stats.work.tokens, unshared.stats.work.tokens);
        assert!(
            w.forwarded < u.forwarded && w.forwarded >= 5 * model.max_len(),
            "{name}: {w:?} {u:?}"
        );
    }
}

#[test]
fn encode_pairs_follows_lm_evals_rule() {
    for name in ["stories260K-hf", "tiny-gpt2-random"] {
        let (_, tok) = open(name);
        let q = "Question: which is heavier?\nAnswer:";
        let pairs = [
            (q, " iron"),
            ("", "Once upon a time"),
            (q, " feathers, by far"),
            ("  ", "x"),
            ("trailing space ", "word"),
            (q, ""),
        ];
        // The rule written out: enc(context + continuation)[len(enc(context)):], the context's
        // trailing whitespace moved to the continuation; an empty context is the prefix token.
        let prefix = tok.prefix_token().expect("a prefix token");
        let rule: Vec<(Vec<i64>, Vec<i64>)> = pairs
            .iter()
            .map(|&(c, k)| {
                if c.is_empty() {
                    let plain = tok.encode_plain(k).expect("encodes");
                    return match plain.first() {
                        Some(&p) if p == prefix => (vec![p], plain[1..].to_vec()),
                        _ => (vec![prefix], plain),
                    };
                }
                let ctx = tok.encode(c.trim_end()).expect("encodes");
                let whole = tok.encode(&format!("{c}{k}")).expect("encodes");
                let cont = whole[ctx.len().min(whole.len())..].to_vec();
                (if ctx.is_empty() { vec![prefix] } else { ctx }, cont)
            })
            .collect();
        assert_eq!(
            evalkit::core::request::encode_pairs(&tok, &pairs).expect("encodes"),
            rule,
            "{name}"
        );
        for (&(c, k), want) in pairs.iter().zip(&rule) {
            assert_eq!(&encode_pair(&tok, c, k).expect("encodes"), want, "{name}: {c:?} {k:?}");
        }
        let texts: Vec<String> = pairs.iter().map(|&(c, k)| format!("{c}{k}")).collect();
        let each: Vec<Vec<i64>> = texts.iter().map(|t| tok.encode(t).expect("encodes")).collect();
        assert_eq!(tok.encode_all(&texts).expect("encodes"), each, "{name}");
    }
}

#[test]
fn every_kind_returns_intermediates_of_one_shape() {
    crate::util::init();
    let (model, tok) = (Oracle::new(16), oracle::tokenizer());
    struct G;
    impl Generate for G {
        fn max_new_tokens() -> usize {
            3
        }
        fn get(&self) -> Result<GenItem, RowError> {
            Ok(GenItem {
                prompt: "c".into(),
                target: "c".into(),
            })
        }
    }
    let opts = RunOptions {
        return_intermediates: true,
        ..RunOptions::default()
    };
    let evals: Vec<Box<dyn Evaluation>> = vec![
        Box::new(MultipleChoiceTask::new(
            "mc",
            vec![mc("a", &["b a", "c"], 0), mc("b", &["c"], 0)],
        )),
        Box::new(PerplexityTask::new("ppl", vec![Text("a b c".into()), Text("c".into())])),
        Box::new(NextTokenTask::new("nt", vec![N("a b"), N("c a b")])),
        Box::new(GenerateTask::new("gen", vec![G, G])),
    ];
    for e in &evals {
        let out = run(e.as_ref(), &model, &tok, &opts);
        let inter = out.intermediates.expect("asked for");
        assert_eq!(inter.len(), 2, "{}: one per sample", e.name());
        let w = inter[0].tokens.len();
        for i in &inter {
            assert!(
                i.tokens.len() == w && i.action_mask.len() == w && i.padding_mask.len() == w,
                "{}: one width",
                e.name()
            );
            assert!(
                i.action_mask.iter().zip(&i.padding_mask).all(|(a, p)| !a || *p),
                "{}: actions are real tokens",
                e.name()
            );
            assert!(i.action_mask.iter().any(|&a| a), "{}: some action", e.name());
        }
    }
    // Multiple choice: the predicted choice's tokens are the actions (a → b a: ids 1, 2, 1).
    let out = run(evals[0].as_ref(), &model, &tok, &opts);
    let first = &out.intermediates.expect("asked for")[0];
    assert_eq!(first.tokens, vec![1, 2, 1]);
    assert_eq!(first.action_mask, vec![false, true, true]);
}

#[test]
fn live_weights_evaluate_in_process_and_results_carry_the_step() {
    crate::util::init();
    let (model, tok) = (Oracle::new(16), oracle::tokenizer());
    let tmp = crate::tempdir!("live");
    let mut ev = evalkit::core::Evaluator::new(&model, &tok);
    ev.add(Box::new(MultipleChoiceTask::new("mc", vec![mc("a", &["b", "c"], 0)])));
    ev.at_step(1200);
    let doc = ev.run(tmp.path()).expect("runs");
    assert_eq!(doc["config"]["step"], 1200);
    assert_eq!(doc["results"]["mc"]["acc"], 1.0);
    assert!(evalkit::core::Evaluator::done(tmp.path()));
    assert_eq!(ev.evaluate().expect("evaluates")["mc"]["acc"], 1.0);
}

#[test]
fn records_count_the_tokens_run_and_fingerprint_the_rows() {
    let (model, tok) = open("stories260K-hf");
    let rows = arc_rows(6);
    let task = MultipleChoiceTask::new("arc_easy", rows.clone());
    let unshared = RunOptions {
        share_prefix: false,
        ..opts(4)
    };
    let o = run(&task, model.as_ref(), &tok, &unshared);
    // Without sharing, each (context, continuation) row runs its tokens but the last (at most
    // max_len), and every continuation token goes through the head once.
    let (mut forwarded, mut scored, mut shared_forwarded) = (0, 0, 0);
    // With sharing, the last context position scores every choice's first token once.
    let mut shared_scored = 0;
    for r in &rows {
        let ctx_len = encode_pair(&tok, &r.context, " x").expect("encodes").0.len();
        shared_forwarded += ctx_len;
        shared_scored += 1;
        for c in &r.choices {
            let (ctx, cont) = encode_pair(&tok, &r.context, &format!(" {c}")).expect("encodes");
            forwarded += (ctx.len() + cont.len() - 1).min(model.max_len());
            scored += cont.len();
            shared_forwarded += cont.len() - 1;
            shared_scored += cont.len() - 1;
        }
    }
    assert_eq!(o.stats.work.tokens.forwarded, forwarded);
    assert_eq!(o.stats.work.tokens.scored, scored);
    assert!(o.stats.work.seconds > 0.0);
    // With sharing: each context once, then each continuation but its last token; the head
    // once per position.
    let s = run(&task, model.as_ref(), &tok, &opts(4));
    assert_eq!(s.stats.work.tokens.forwarded, shared_forwarded);
    assert_eq!(s.stats.work.tokens.scored, shared_scored);
    assert!(shared_scored < scored);

    // The fingerprint is a property of the questions: equal on a rerun, with other batching
    // and on another model; different when a row changes or another subset is asked.
    assert_eq!(o.fingerprint, s.fingerprint);
    let (gpt2, gpt2_tok) = open("tiny-gpt2-random");
    assert_eq!(
        run(&task, gpt2.as_ref(), &gpt2_tok, &opts(1)).fingerprint,
        o.fingerprint
    );
    let mut changed = rows.clone();
    changed[3].choices[1].push('!');
    let c = run(
        &MultipleChoiceTask::new("arc_easy", changed),
        model.as_ref(),
        &tok,
        &opts(4),
    );
    assert_ne!(c.fingerprint, o.fingerprint, "a changed choice changes it");
    let mut answer = rows.clone();
    answer[0].answer = (answer[0].answer + 1) % answer[0].choices.len();
    let a = run(
        &MultipleChoiceTask::new("arc_easy", answer),
        model.as_ref(),
        &tok,
        &opts(4),
    );
    assert_ne!(a.fingerprint, o.fingerprint, "a changed answer changes it");
    let first5 = RunOptions {
        subset: Some(Subset::First(5)),
        ..opts(4)
    };
    assert_ne!(run(&task, model.as_ref(), &tok, &first5).fingerprint, o.fingerprint);
}

#[test]
fn generation_records_count_prefill_and_decoding() {
    let (model, tok) = open("stories260K-hf");
    let rows = gsm_rows(4);
    let task = GenerateTask::new("gsm", rows.clone());
    let o = run(
        &task,
        model.as_ref(),
        &tok,
        &RunOptions {
            return_intermediates: true,
            ..opts(1)
        },
    );
    // Batch 1: the prompt is prefilled, the head runs once per step (T steps), and every step
    // but the last feeds its token back: forwarded = prompt + T − 1, scored = T, where T is the
    // tokens kept, plus one for an EOS that ended the row.
    let inter = o.intermediates.as_ref().expect("intermediates");
    let (mut forwarded, mut scored) = (0, 0);
    for (sample, it) in o.samples.iter().zip(inter) {
        let prompt = tok.encode(sample["prompt"].as_str().expect("prompt")).expect("encodes");
        let generated = it.action_mask.iter().filter(|&&a| a).count();
        let steps = generated + usize::from(sample["finish"][0] == "eos");
        forwarded += prompt.len() + steps - 1;
        scored += steps;
    }
    assert_eq!(o.stats.work.tokens.forwarded, forwarded);
    assert_eq!(o.stats.work.tokens.scored, scored);
    assert!(scored > rows.len(), "something was generated");
    let again = run(&task, model.as_ref(), &tok, &opts(3));
    assert_eq!(
        again.fingerprint, o.fingerprint,
        "batching does not change the fingerprint"
    );
}

/// The stop strings of HumanEval and GSM8K, and two with multi-byte characters.
const STOPS: [&str; 10] = [
    "\nclass",
    "\ndef",
    "\n#",
    "\nif",
    "\nprint",
    "Question:",
    "</s>",
    "<|im_end|>",
    "é€",
    "\u{1F600}\n",
];

/// Token sequences to generate from: mostly text without stop strings, with pieces of texts
/// that hold them, cut at random places, and special tokens, single bytes and random ids put
/// in between.
fn generations(tok: &Tokenizer, rng: &mut impl rand::Rng) -> Vec<Vec<i64>> {
    let filler = "The quick brown fox jumps over the lazy dog, 12 times; x = y + 1 (ok) – a \"test\".\n    \
                  return value  # not at line start\n  indented code, defined classes, printed\tifs\n";
    let texts = [
        "    return x + 1\n\n\ndef g(y):\n    if y:\n        print(y)\n# done\nclass A:\n    pass\n",
        " 72 apples.\n#### 72\n\nQuestion: How many? Answer: 3</s> and <|im_end|> then\n",
        "café€ 1 – naïve résumé 😀\n日本語のテキスト\n😀😀\né€é€ \u{1F600}x",
    ];
    let filler = tok.encode_plain(filler).expect("encodes");
    let pieces: Vec<Vec<i64>> = texts.iter().map(|t| tok.encode_plain(t).expect("encodes")).collect();
    let vocab = tok.vocab_size() as i64;
    let specials: Vec<i64> = tok.eos_ids().iter().copied().chain(tok.prefix_token().ok()).collect();
    (0..40)
        .map(|_| {
            let mut ids = vec![];
            while ids.len() < 200 {
                let p = match rng.random_range(0..20) {
                    0 => {
                        ids.push(rng.random_range(0..vocab));
                        continue;
                    }
                    1 if !specials.is_empty() => {
                        ids.push(specials[rng.random_range(0..specials.len())]);
                        continue;
                    }
                    2 => &pieces[rng.random_range(0..pieces.len())],
                    _ => &filler,
                };
                let a = rng.random_range(0..p.len());
                let b = rng.random_range(a..=p.len().min(a + 30));
                ids.extend_from_slice(&p[a..b]);
            }
            ids
        })
        .collect()
}

#[test]
fn stop_scan_stops_where_decoding_everything_stops() {
    use evalkit::core::batch::stops::StopScan;
    use rand::SeedableRng;
    let neox = crate::util::model_dir("gpt-neox-20b-tokenizer").join("20B_tokenizer.json");
    let neox = Tokenizer::from_parts(tokenizers::Tokenizer::from_file(neox).expect("loads"), Some(0), vec![0]);
    let tokenizers = [
        (
            "stories260K-hf",
            Tokenizer::from_dir(&crate::util::model_dir("stories260K-hf")).expect("loads"),
        ),
        (
            "tiny-gpt2-random",
            Tokenizer::from_dir(&crate::util::model_dir("tiny-gpt2-random")).expect("loads"),
        ),
        ("gpt-neox-20b-tokenizer", neox),
    ];
    let stops: Vec<String> = STOPS.map(String::from).to_vec();
    let scan = StopScan::new(&stops);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    for (name, tok) in &tokenizers {
        let mut steps = vec![];
        for (g, ids) in generations(tok, &mut rng).iter().enumerate() {
            // The first step whose whole text holds a stop string, and that text cut before it.
            let whole = (1..=ids.len()).find_map(|n| {
                let text = tok.decode(&ids[..n], true).expect("decodes");
                scan.first_stop(&text).map(|at| (n, text[..at].to_string()))
            });
            let scanned =
                (1..=ids.len()).find_map(|n| scan.check(tok, &ids[..n]).expect("decodes").map(|text| (n, text)));
            assert_eq!(scanned, whole, "{name}, generation {g}");
            steps.push(whole.map(|(n, _)| n));
        }
        // Some stop early, some late (past many tails' lengths), some never.
        let late = steps.iter().flatten().filter(|&&n| n > 100).count();
        let never = steps.iter().filter(|n| n.is_none()).count();
        assert!(
            late >= 3 && never >= 3,
            "{name}: steps where generations stop {steps:?}"
        );
    }
}
