//! Next-token accuracy (the seed's EncodingEvaluation): the model's argmax at each position of
//! the text is compared with the true next token. What counts is the row's choice: by default
//! the final token, decoded, cleaned by [`NextToken::clean`] and compared by
//! [`NextToken::check`]; [`NextToken::score`] can look at every position. Padding positions
//! are never predictions. Texts longer than the model keep their end (counted as truncated).

use super::{
    data_fingerprint, pad_intermediates, prepare, row_error, score_requests, Env, Outcome, RowError, TaskKind,
};
use crate::error::Result;
use crate::request::ScoreRequest;
use serde_json::json;
use std::collections::BTreeMap;

/// What the model predicted along one text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextTokenSample {
    /// The true next tokens (the text's tokens from the second on).
    pub targets: Vec<i64>,
    /// The model's argmax before each target.
    pub predictions: Vec<i64>,
    /// Each target decoded alone.
    pub targets_text: Vec<String>,
    /// Each prediction decoded alone.
    pub predictions_text: Vec<String>,
}

/// A dataset row scored by next-token prediction.
pub trait NextToken {
    /// The text of this row.
    fn get(&self) -> std::result::Result<String, RowError>;

    /// Normalises a decoded prediction before [`NextToken::check`] (default: unchanged).
    fn clean(&self, prediction: &str) -> String {
        prediction.to_string()
    }

    /// Whether a cleaned prediction matches the decoded target (default: equal strings).
    fn check(&self, target: &str, cleaned: &str) -> bool {
        target == cleaned
    }

    /// The row's score (default: 1 when the final token is predicted, per `clean`/`check`).
    fn score(&self, sample: &NextTokenSample) -> f64 {
        match (sample.targets_text.last(), sample.predictions_text.last()) {
            (Some(t), Some(p)) => f64::from(u8::from(self.check(t, &self.clean(p)))),
            _ => 0.0,
        }
    }
}

task_type!(
    /// A next-token evaluation over rows of `T`.
    NextTokenTask, NextToken, TaskKind::NextToken
);

impl<T: NextToken> NextTokenTask<T> {
    fn run(&self, env: &Env<'_>) -> Result<Outcome> {
        let name = &self.name;
        let prep = prepare(name, self.rows.len(), &self.defaults, env)?;
        let max_len = env.model.max_len();
        let mut reqs = vec![];
        let mut texts = vec![];
        let mut truncated = 0;
        let mut fingerprint = data_fingerprint(name, TaskKind::NextToken);
        for &i in &prep.rows {
            let text = self.rows[i].get().map_err(|e| row_error(name, i, e))?;
            fingerprint = fingerprint.row(i).str(&text);
            let mut ids = env.tokenizer.encode(&text)?;
            if ids.len() < 2 {
                return Err(row_error(
                    name,
                    i,
                    RowError::new(format!("text {text:?} has fewer than two tokens: nothing to predict")),
                ));
            }
            if ids.len() > max_len + 1 {
                ids.drain(..ids.len() - max_len - 1);
                truncated += 1;
            }
            reqs.push(ScoreRequest {
                context: ids[..1].to_vec(),
                continuations: vec![ids[1..].to_vec()],
            });
            texts.push(text);
        }
        let (scores, stats) = score_requests(env, name, &reqs, prep.batch, false)?;
        let tok = env.tokenizer;
        let mut acc = vec![];
        let mut samples = vec![];
        let mut inter = vec![];
        for (((&index, req), sc), text) in prep.rows.iter().zip(&reqs).zip(&scores).zip(&texts) {
            let targets = req.continuations[0].clone();
            let predictions = sc[0].argmax.clone();
            let dec = |ids: &[i64]| ids.iter().map(|&t| tok.decode(&[t], false)).collect::<Result<Vec<_>>>();
            let sample = NextTokenSample {
                targets_text: dec(&targets)?,
                predictions_text: dec(&predictions)?,
                targets,
                predictions,
            };
            let s = self.rows[index].score(&sample);
            acc.push(s);
            let correct: Vec<bool> = sample
                .targets
                .iter()
                .zip(&sample.predictions)
                .map(|(a, b)| a == b)
                .collect();
            samples.push(json!({
                "index": index,
                "text": text,
                "predictions": sample.predictions_text,
                "correct": correct,
                "metrics": {"acc": s},
            }));
            if env.options.return_intermediates {
                let row: Vec<i64> = req.context.iter().chain(&req.continuations[0]).copied().collect();
                let mask = (0..row.len()).map(|p| p > 0).collect();
                inter.push((row, mask));
            }
        }
        let per_sample = BTreeMap::from([("acc".to_string(), acc)]);
        Ok(Outcome {
            name: name.clone(),
            kind: TaskKind::NextToken,
            n: prep.rows.len(),
            truncated,
            metrics: super::mean_metrics(&per_sample),
            per_sample,
            samples,
            intermediates: env.options.return_intermediates.then(|| pad_intermediates(inter)),
            notes: BTreeMap::new(),
            stats,
            fingerprint: fingerprint.finish(),
            wall_seconds: 0.0,
        })
    }
}
