//! Next-token accuracy (the seed's EncodingEvaluation): the model's argmax at each position of
//! the text is compared with the true next token. What counts is the row's choice: by default
//! the final token, decoded, cleaned by [`NextToken::clean`] and compared by
//! [`NextToken::check`]; [`NextToken::score`] can look at every position. Padding positions
//! are never predictions. Texts longer than the model keep their end (counted as truncated).

use super::execute::score_requests;
use super::prompt::Prompt;
use super::task::{Finished, Kind, RowFailure, Task};
use super::{Env, RowError, TaskKind};
use crate::error::Result;
use crate::fingerprint::Fnv;
use crate::request::{ContinuationScore, ScoreRequest};
use crate::schedule::{BatchSettings, ExecStats};
use serde_json::json;

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

/// A next-token evaluation over rows of `T`.
pub type NextTokenTask<T> = Task<T, NextTokenKind>;

/// The next-token kind (see [`Kind`]).
#[derive(Debug)]
pub struct NextTokenKind {
    max_len: usize,
}

impl<T: NextToken> Kind<T> for NextTokenKind {
    const KIND: TaskKind = TaskKind::NextToken;
    type Request = ScoreRequest;
    type Response = Vec<ContinuationScore>;
    /// The text, whether it was left-truncated, and its request.
    type Lowered = (String, bool, usize);

    fn begin(_: &str, env: &Env<'_>) -> Result<Self> {
        Ok(NextTokenKind {
            max_len: env.model.max_len(),
        })
    }

    fn lower(
        &mut self,
        _: usize,
        row: &T,
        _prompt: &Prompt<'_>,
        env: &Env<'_>,
        fp: &mut Fnv,
        requests: &mut Vec<ScoreRequest>,
    ) -> std::result::Result<Self::Lowered, RowFailure> {
        let text = row.get()?;
        *fp = fp.str(&text);
        let mut ids = env.tokenizer.encode(&text)?;
        if ids.len() < 2 {
            return Err(RowError::new(format!("text {text:?} has fewer than two tokens: nothing to predict")).into());
        }
        let truncated = ids.len() > self.max_len + 1;
        if truncated {
            ids.drain(..ids.len() - self.max_len - 1);
        }
        requests.push(ScoreRequest {
            context: ids[..1].to_vec(),
            continuations: vec![ids[1..].to_vec()],
        });
        Ok((text, truncated, requests.len() - 1))
    }

    fn execute(
        &self,
        env: &Env<'_>,
        name: &str,
        requests: &[ScoreRequest],
        batch: BatchSettings,
    ) -> Result<(Vec<Self::Response>, ExecStats)> {
        score_requests(env, name, requests, batch, false)
    }

    fn finish(
        &mut self,
        index: usize,
        row: &T,
        (text, truncated, k): Self::Lowered,
        requests: &[ScoreRequest],
        responses: &[Self::Response],
        env: &Env<'_>,
    ) -> std::result::Result<Finished, RowFailure> {
        let (req, sc) = (&requests[k], &responses[k][0]);
        let tok = env.tokenizer;
        let dec = |ids: &[i64]| ids.iter().map(|&t| tok.decode(&[t], false)).collect::<Result<Vec<_>>>();
        let targets = req.continuations[0].clone();
        let predictions = sc.argmax.clone();
        let sample = NextTokenSample {
            targets_text: dec(&targets)?,
            predictions_text: dec(&predictions)?,
            targets,
            predictions,
        };
        let s = row.score(&sample);
        let correct: Vec<bool> = sample
            .targets
            .iter()
            .zip(&sample.predictions)
            .map(|(a, b)| a == b)
            .collect();
        let record = json!({
            "index": index,
            "text": text,
            "predictions": sample.predictions_text,
            "correct": correct,
            "metrics": {"acc": s},
        });
        let intermediates = if env.options.return_intermediates {
            let tokens: Vec<i64> = req.context.iter().chain(&req.continuations[0]).copied().collect();
            let mask = (0..tokens.len()).map(|p| p > 0).collect();
            vec![(tokens, mask)]
        } else {
            vec![]
        };
        Ok(Finished {
            values: vec![("acc".into(), s)],
            record,
            intermediates,
            truncated,
        })
    }
}
