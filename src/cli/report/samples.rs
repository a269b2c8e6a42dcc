//! The report's sample tables: each record of a `samples_<task>.jsonl` turned into what a reader
//! wants to see (the input, the options with their log-likelihoods, what the model answered,
//! whether it was right), worst rows first.

use serde::Serialize;
use serde_json::Value;
use std::cmp::Ordering;

/// One row of a sample table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The dataset row.
    pub index: u64,
    /// What the model was given (the prompt, the shared context, or the scored text).
    pub input: String,
    /// One line per choice, continuation, generation or score.
    pub lines: Vec<Line>,
    /// The reference answer, as text.
    pub target: String,
    /// The row's own metrics, `name = value`.
    pub metrics: String,
    /// Whether the row's first metric is at its best (right / exact match), when it is 0/1.
    pub correct: Option<bool>,
}

/// One option or output of a row.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    /// The text (a continuation, a generation, or a description).
    pub text: String,
    /// Its log-likelihood, formatted, when it has one.
    pub loglikelihood: Option<String>,
    /// The model picked it (one of several choices).
    pub predicted: bool,
    /// It is the answer.
    pub answer: bool,
}

impl Line {
    /// An output line that is no choice (a generation, counts, predictions).
    fn plain(text: String, loglikelihood: Option<String>) -> Self {
        Line {
            text,
            loglikelihood,
            predicted: false,
            answer: false,
        }
    }
}

/// Whether a smaller value of `metric` is better (perplexities, bits per byte).
pub fn lower_is_better(metric: &str) -> bool {
    metric.ends_with("perplexity") || metric == "bits_per_byte"
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn answers(v: &Value) -> Vec<u64> {
    match v {
        Value::Array(a) => a.iter().filter_map(Value::as_u64).collect(),
        other => other.as_u64().into_iter().collect(),
    }
}

/// How bad a row is, for sorting: its first metric (turned so that smaller is worse), then
/// how far the answer fell behind the model's pick (multiple choice) or how unlikely the
/// continuation was (log-likelihood).
fn badness(s: &Value) -> (f64, f64) {
    let first = s["metrics"].as_object().and_then(|m| m.iter().next());
    let primary = first.map_or(0.0, |(k, v)| {
        let v = v.as_f64().unwrap_or(f64::NAN);
        if lower_is_better(k) {
            -v
        } else {
            v
        }
    });
    let lls: Vec<f64> = s["loglikelihoods"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    let gap = match (lls.len(), answers(&s["answer"]).first()) {
        (0, _) => 0.0,
        (1, _) => lls[0],
        (_, Some(&a)) => {
            let best = lls.iter().cloned().fold(f64::MIN, f64::max);
            lls.get(a as usize).map_or(0.0, |la| la - best)
        }
        _ => 0.0,
    };
    (if primary.is_nan() { f64::MIN } else { primary }, gap)
}

/// Orders records worst first (ties in dataset order).
pub fn worst_first(samples: &mut [Value]) {
    samples.sort_by(|a, b| {
        let (ka, kb) = (badness(a), badness(b));
        ka.0.partial_cmp(&kb.0)
            .unwrap_or(Ordering::Equal)
            .then(ka.1.partial_cmp(&kb.1).unwrap_or(Ordering::Equal))
            .then(a["index"].as_u64().cmp(&b["index"].as_u64()))
    });
}

/// The display row of one sample record, whatever its kind.
pub fn row(s: &Value) -> Row {
    let metrics_obj = s["metrics"].as_object();
    let metrics = metrics_obj
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k} = {}", v.as_f64().map_or_else(|| text(v), |f| format!("{f:.4}"))))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let correct = metrics_obj
        .and_then(|m| m.iter().next())
        .and_then(|(_, v)| v.as_f64())
        .filter(|v| *v == 0.0 || *v == 1.0)
        .map(|v| v == 1.0);
    let index = s["index"].as_u64().unwrap_or(0);
    if let Some(conts) = s["continuations"].as_array() {
        let contexts: Vec<String> = match &s["contexts"] {
            Value::Array(c) => c.iter().map(text).collect(),
            other => vec![text(other)],
        };
        let shared = contexts.windows(2).all(|w| w[0] == w[1]);
        let answer = answers(&s["answer"]);
        let predicted = s["prediction"].as_u64();
        let lines = conts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let ll = s["loglikelihoods"][i].as_f64();
                let greedy = s["is_greedy"][i].as_bool();
                let text = if shared || contexts.len() <= i {
                    text(c)
                } else {
                    format!("{}{}", contexts[i], text(c))
                };
                Line {
                    text,
                    loglikelihood: ll.map(|l| match greedy {
                        Some(true) => format!("{l:.4} (greedy)"),
                        _ => format!("{l:.4}"),
                    }),
                    predicted: conts.len() > 1 && predicted == Some(i as u64),
                    answer: conts.len() > 1 && answer.contains(&(i as u64)),
                }
            })
            .collect();
        let target = match answer.as_slice() {
            [a] if conts.len() > 1 => conts.get(*a as usize).map(text).unwrap_or_default(),
            _ if conts.len() == 1 => text(&conts[0]),
            many => format!("choices {many:?}"),
        };
        return Row {
            index,
            input: if shared {
                contexts.first().cloned().unwrap_or_default()
            } else {
                String::new()
            },
            lines,
            target,
            metrics,
            correct,
        };
    }
    if let Some(gens) = s["generations"].as_array() {
        let extracted = s["extracted"].as_array();
        let lines = gens
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let finish = text(&s["finish"][i]);
                let got = extracted.and_then(|e| e.get(i)).map(text).unwrap_or_default();
                Line::plain(format!("{}\n→ extracted: {got:?} (stopped: {finish})", text(g)), None)
            })
            .collect();
        return Row {
            index,
            input: text(&s["prompt"]),
            lines,
            target: text(&s["target"]),
            metrics,
            correct,
        };
    }
    // Whole-text kinds: perplexity (log-likelihood and counts) and next-token (predictions).
    let mut lines = vec![];
    if let Some(ll) = s["loglikelihood"].as_f64() {
        lines.push(Line::plain(
            format!(
                "{} tokens, {} words, {} bytes",
                text(&s["tokens"]),
                text(&s["words"]),
                text(&s["bytes"])
            ),
            Some(format!("{ll:.4}")),
        ));
    }
    if let Some(p) = s["predictions"].as_array() {
        lines.push(Line::plain(
            format!("predicted: {}", p.iter().map(text).collect::<Vec<_>>().join(" · ")),
            None,
        ));
    }
    Row {
        index,
        input: text(&s["text"]),
        lines,
        target: text(&s["correct"]),
        metrics,
        correct,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wrong_and_confidently_wrong_rows_come_first() {
        let mut rows = vec![
            json!({"index": 0, "loglikelihoods": [-1.0, -2.0], "answer": 0, "prediction": 0, "metrics": {"acc": 1.0}}),
            json!({"index": 1, "loglikelihoods": [-1.0, -1.5], "answer": 1, "prediction": 0, "metrics": {"acc": 0.0}}),
            json!({"index": 2, "contexts": ["Q:", "Q:"], "continuations": [" x", " y"], "loglikelihoods": [-1.0, -9.0], "answer": 1, "prediction": 0, "metrics": {"acc": 0.0}}),
        ];
        worst_first(&mut rows);
        let order: Vec<u64> = rows.iter().map(|r| r["index"].as_u64().unwrap()).collect();
        assert_eq!(order, [2, 1, 0]);
        let r = row(&rows[0]);
        assert_eq!(r.correct, Some(false));
        assert!(r.lines[1].answer && r.lines[0].predicted && !r.lines[0].answer);
        assert_eq!((r.input.as_str(), r.target.as_str()), ("Q:", " y"));
    }

    #[test]
    fn high_perplexity_pages_come_first() {
        let mut rows = vec![
            json!({"index": 0, "text": "a", "loglikelihood": -1.0, "metrics": {"token_perplexity": 3.0}}),
            json!({"index": 1, "text": "b", "loglikelihood": -9.0, "metrics": {"token_perplexity": 30.0}}),
        ];
        worst_first(&mut rows);
        assert_eq!(rows[0]["index"], 1);
        assert_eq!(row(&rows[0]).correct, None);
    }
}
