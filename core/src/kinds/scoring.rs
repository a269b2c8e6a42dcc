//! What multiple choice and loglikelihood share: lowering (context, continuation) pairs to
//! score requests — one request per distinct context, so choices after the same context share
//! it — and turning continuation scores into per-sample records.

use super::{
    data_fingerprint, mean_metrics, pad_intermediates, prepare, row_error, score_requests, Defaults, Env, McItem,
    Outcome, RowError, TaskKind,
};
use crate::error::Result;
use crate::metrics::{argmax, Metric};
use crate::request::{encode_pair, ScoreRequest};
use serde_json::json;
use std::collections::BTreeMap;

/// Runs multiple-choice-shaped rows (`kind` is MultipleChoice or Loglikelihood).
pub(crate) fn execute_mc<T, G, X>(
    name: &str,
    rows: &[T],
    defaults: &Defaults,
    env: &Env<'_>,
    kind: TaskKind,
    get: G,
    extra: X,
) -> Result<Outcome>
where
    G: Fn(usize, &T) -> std::result::Result<McItem, RowError>,
    X: Fn(&T, &McItem, &[f64]) -> Vec<(&'static str, f64)>,
{
    let prep = prepare(name, rows.len(), defaults, env)?;
    let tok = env.tokenizer;
    let mut items = vec![];
    let mut reqs: Vec<ScoreRequest> = vec![];
    // For each selected row: (request, continuation) of each choice.
    let mut slots: Vec<Vec<(usize, usize)>> = vec![];
    let mut fingerprint = data_fingerprint(name, kind);
    for &i in &prep.rows {
        let item = get(i, &rows[i]).map_err(|e| row_error(name, i, e))?;
        fingerprint = fingerprint.row(i);
        for ((ctx, cont), norm) in item.contexts.iter().zip(&item.continuations).zip(&item.norm_texts) {
            fingerprint = fingerprint.str(ctx).str(cont).str(norm);
        }
        fingerprint = fingerprint.row(item.answer);
        let n = item.continuations.len();
        if n == 0 {
            return Err(row_error(name, i, RowError::new("the choice list is empty")));
        }
        if item.contexts.len() != n || item.norm_texts.len() != n {
            return Err(row_error(
                name,
                i,
                RowError::new(format!("{} contexts for {n} continuations", item.contexts.len())),
            ));
        }
        if item.answer >= n {
            return Err(row_error(
                name,
                i,
                RowError::new(format!("answer index {} out of range for {n} choices", item.answer)),
            ));
        }
        let mut row_slots = vec![];
        let mut by_context: Vec<(String, usize)> = vec![];
        for (ctx, cont) in item.contexts.iter().zip(&item.continuations) {
            let (c_ids, k_ids) = encode_pair(tok, ctx, cont)?;
            if k_ids.is_empty() {
                return Err(row_error(
                    name,
                    i,
                    RowError::new(format!("continuation {cont:?} encodes to no tokens")),
                ));
            }
            let r = match by_context.iter().find(|(c, _)| c == ctx) {
                Some(&(_, r)) => r,
                None => {
                    reqs.push(ScoreRequest {
                        context: c_ids,
                        continuations: vec![],
                    });
                    by_context.push((ctx.clone(), reqs.len() - 1));
                    reqs.len() - 1
                }
            };
            reqs[r].continuations.push(k_ids);
            row_slots.push((r, reqs[r].continuations.len() - 1));
        }
        slots.push(row_slots);
        items.push(item);
    }
    let (scores, stats) = score_requests(env, name, &reqs, prep.batch, env.options.share_prefix)?;

    let mut per_sample: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut samples = vec![];
    let mut inter = vec![];
    let mut truncated = 0;
    let mut ll_sum = 0.0;
    for ((&index, item), row_slots) in prep.rows.iter().zip(&items).zip(&slots) {
        let conts: Vec<&[i64]> = row_slots
            .iter()
            .map(|&(r, c)| reqs[r].continuations[c].as_slice())
            .collect();
        let sc: Vec<_> = row_slots.iter().map(|&(r, c)| &scores[r][c]).collect();
        let lls: Vec<f64> = sc.iter().map(|s| s.loglikelihood()).collect();
        let greedy: Vec<bool> = sc.iter().zip(&conts).map(|(s, c)| s.is_greedy(c)).collect();
        let ntok: Vec<usize> = conts.iter().map(|c| c.len()).collect();
        if sc.iter().any(|s| s.truncated) {
            truncated += 1;
        }
        let norm =
            |d: &dyn Fn(usize) -> f64| argmax(&lls.iter().enumerate().map(|(j, l)| l / d(j)).collect::<Vec<_>>());
        let pred = argmax(&lls);
        let hit = |p: usize| f64::from(u8::from(p == item.answer));
        let mut m: Vec<(&'static str, f64)> = match kind {
            TaskKind::Loglikelihood => {
                ll_sum += lls[0];
                vec![("acc", f64::from(u8::from(greedy[0]))), ("loglikelihood", lls[0])]
            }
            _ => vec![
                ("acc", hit(pred)),
                (
                    "acc_norm",
                    hit(norm(&|j| item.norm_texts[j].chars().count().max(1) as f64)),
                ),
                ("acc_bytes", hit(norm(&|j| item.norm_texts[j].len().max(1) as f64))),
                ("acc_token_norm", hit(norm(&|j| ntok[j] as f64))),
            ],
        };
        for (k, v) in extra(&rows[index], item, &lls) {
            match m.iter_mut().find(|(n, _)| *n == k) {
                Some(slot) => slot.1 = v,
                None => m.push((k, v)),
            }
        }
        for &(k, v) in &m {
            per_sample.entry(k.to_string()).or_default().push(v);
        }
        samples.push(json!({
            "index": index,
            "contexts": item.contexts,
            "continuations": item.continuations,
            "loglikelihoods": lls,
            "is_greedy": greedy,
            "num_tokens": ntok,
            "answer": item.answer,
            "prediction": pred,
            "metrics": m.iter().map(|&(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        }));
        if env.options.return_intermediates {
            let (r, c) = row_slots[pred];
            let ctx = &reqs[r].context;
            let cont = &reqs[r].continuations[c];
            let tokens: Vec<i64> = ctx.iter().chain(cont).copied().collect();
            let mask = (0..tokens.len()).map(|p| p >= ctx.len()).collect();
            inter.push((tokens, mask));
        }
    }
    let mut metrics = mean_metrics(&per_sample);
    if kind == TaskKind::Loglikelihood {
        metrics.remove("loglikelihood");
        let n = items.len() as f64;
        metrics.insert(
            "perplexity".into(),
            Metric {
                value: (-ll_sum / n).exp(),
                stderr: None,
            },
        );
    }
    Ok(Outcome {
        name: name.into(),
        kind,
        n: items.len(),
        truncated,
        metrics,
        per_sample,
        samples,
        intermediates: env.options.return_intermediates.then(|| pad_intermediates(inter)),
        notes: BTreeMap::new(),
        stats,
        fingerprint: fingerprint.finish(),
        wall_seconds: 0.0,
    })
}
