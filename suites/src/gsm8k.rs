//! GSM8K test (lm-eval `gsm8k`): generate from `Question: {question}\nAnswer:` until
//! `Question:`, `</s>` or `<|im_end|>` (greedy, 256 new tokens), 5-shot by default from a
//! `train.jsonl` beside the test file. Two extractions are scored with lm-eval's
//! `exact_match` (case-folded; `,`, `$`, everything through `#### ` and a trailing `.` removed
//! from both sides): `exact_match_strict` (the number after `#### `) and
//! `exact_match_flexible` (the last number-like match).

use crate::data::read_jsonl;
use crate::error::{Error, Result};
use crate::LoadOptions;
use evalkit_core::builtins::{gsm8k_flexible, gsm8k_strict};
use evalkit_core::Evaluation;
use serde::Deserialize;

/// One GSM8K problem.
#[derive(Debug, Clone, Evaluation, Deserialize)]
#[eval(name = "gsm8k", kind = generate, max_new_tokens = 256, num_fewshot = 5, stop("Question:", "</s>", "<|im_end|>"),
       prompt = "Question: {question}\nAnswer:", score = score, metrics(exact_match_strict, exact_match_flexible))]
pub struct Gsm8k {
    /// The problem.
    pub question: String,
    /// The worked answer ending in `#### N`.
    #[eval(target)]
    pub answer: String,
}

/// lm-eval's `exact_match` normalisation for GSM8K.
///
/// ```
/// assert_eq!(evalkit_suites::gsm8k::normalize("So $1,200 total.\n#### 1,200."), "1200");
/// ```
pub fn normalize(s: &str) -> String {
    let mut t = s.to_lowercase().replace([',', '$'], "");
    if let Some(i) = t.rfind("#### ") {
        t = t[i + 5..].to_string();
    }
    t.strip_suffix('.').map(str::to_string).unwrap_or(t)
}

/// Strict and flexible exact match of a generation against the reference answer.
pub fn score(target: &str, generated: &str) -> Vec<(String, f64)> {
    let t = normalize(target);
    let hit = |p: String| f64::from(u8::from(normalize(&p) == t));
    vec![
        ("exact_match_strict".into(), hit(gsm8k_strict(generated))),
        ("exact_match_flexible".into(), hit(gsm8k_flexible(generated))),
    ]
}

const SOURCE: &str = "https://github.com/openai/grade-school-math (grade_school_math/data/test.jsonl, train.jsonl)";

/// Loads `gsm8k`.
pub fn load(opts: &LoadOptions, name: &str) -> Result<Vec<Box<dyn Evaluation>>> {
    let dir = opts.data_dir.join("gsm8k");
    let test = dir.join("test.jsonl");
    let rows: Vec<Gsm8k> = read_jsonl(&test, "GSM8K test (JSONL)", SOURCE)?;
    // The reference is the number after `#### `: an answer without it could never be matched.
    let bad: Vec<usize> = (0..rows.len()).filter(|&i| !rows[i].answer.contains("#### ")).collect();
    if let Some(&i) = bad.first() {
        let others = match bad.len() - 1 {
            0 => String::new(),
            n => format!(" ({n} more rows lack it)"),
        };
        return Err(crate::data::malformed(
            &test,
            crate::data::jsonl_line(&test, i),
            "answer",
            format!("no `#### N` line: the reference answer is the number after `#### `{others}"),
        ));
    }
    let k = opts
        .num_fewshot
        .unwrap_or(<Gsm8k as evalkit_core::Benchmark>::NUM_FEWSHOT);
    let mut t = evalkit_core::task(rows).named(name);
    if k == 0 {
        t = t.zero_shot();
    } else {
        let train = dir.join("train.jsonl");
        if !train.is_file() {
            return Err(Error::Setting {
                task: name.into(),
                message: format!(
                    "{k}-shot needs the train split at {}; add it (from {SOURCE}) or pass --num-fewshot 0",
                    train.display()
                ),
            });
        }
        let pool: Vec<Gsm8k> = read_jsonl(&train, "GSM8K train (JSONL)", SOURCE)?;
        t = t.fewshot(&pool, k, opts.sampler(), "").map_err(|e| Error::Setting {
            task: name.into(),
            message: e.to_string(),
        })?;
    }
    Ok(vec![t.build()])
}
