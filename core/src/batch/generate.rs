//! Generation: prompts are left-padded, prefilled into a KV cache, and decoded one token per
//! step (or recomputed each step for models without a cache), each row stopping at EOS or at
//! a stop string ([`super::stops`]).

use super::stops::StopScan;
use super::{choose_token, int_tensor, TokenCounts};
use crate::error::{Error, Result, TorchContext};
use crate::model::Model;
use crate::request::{GenerateParams, GenerateRequest, Generation, Sampling};
use crate::tokenizer::Tokenizer;
use rand::SeedableRng;
use tch::{Device, Kind, Tensor};

/// Generates a continuation for each prompt (prompts must already fit `max_len − max_new_tokens`).
/// `counts` gets the tokens run through the body (prompts without their padding, then every
/// row's token at each decoding step) and the positions the head was applied to.
pub fn generate_batch<M: Model + ?Sized>(
    model: &M,
    tok: &Tokenizer,
    reqs: &[&GenerateRequest],
    params: &GenerateParams,
    counts: &mut TokenCounts,
) -> Result<Vec<Generation>> {
    let _guard = tch::no_grad_guard();
    let dev = model.device();
    let b = reqs.len();
    let p = reqs.iter().map(|r| r.prompt.len()).max().unwrap_or(0);
    if p == 0 {
        return Err(Error::Unsupported(
            "generation needs a non-empty prompt (the prefix token at least)".into(),
        ));
    }
    let mut seqs: Vec<Vec<i64>> = vec![];
    let mut masks: Vec<Vec<i64>> = vec![];
    for r in reqs {
        let pad = p - r.prompt.len();
        seqs.push(std::iter::repeat_n(0, pad).chain(r.prompt.iter().copied()).collect());
        masks.push(
            std::iter::repeat_n(0, pad)
                .chain(std::iter::repeat_n(1, r.prompt.len()))
                .collect(),
        );
    }
    let mut rngs: Vec<rand_chacha::ChaCha8Rng> = reqs
        .iter()
        .map(|r| rand_chacha::ChaCha8Rng::seed_from_u64(r.seed))
        .collect();
    let mut gens: Vec<Generation> = (0..b)
        .map(|_| Generation {
            tokens: vec![],
            text: String::new(),
            finish: "length".into(),
        })
        .collect();
    let mut done = vec![false; b];
    let eos = tok.eos_ids();
    let stops = StopScan::new(&params.stop);
    let mut cache = model.new_cache();
    counts.forwarded += reqs.iter().map(|r| r.prompt.len()).sum::<usize>();
    counts.scored += b;
    let mut last_logits = {
        let h =
            super::checked::hidden_states(model, &int_tensor(&seqs, dev), &int_tensor(&masks, dev), cache.as_mut())?;
        super::checked::head(model, &h.narrow(1, p as i64 - 1, 1).squeeze_dim(1))?
    };
    for step in 0..params.max_new_tokens {
        let next = next_tokens(&last_logits, params.sampling, &mut rngs, &done, step)?;
        for i in 0..b {
            if done[i] {
                continue;
            }
            let t = next[i];
            if eos.contains(&t) {
                done[i] = true;
                gens[i].finish = "eos".into();
                continue;
            }
            gens[i].tokens.push(t);
            if let Some(text) = stops.check(tok, &gens[i].tokens)? {
                gens[i].text = text;
                gens[i].finish = "stop".into();
                done[i] = true;
            }
        }
        if done.iter().all(|&d| d) || step + 1 == params.max_new_tokens {
            break;
        }
        for i in 0..b {
            seqs[i].push(next[i]);
            masks[i].push(1);
        }
        counts.scored += b;
        counts.forwarded += if cache.is_some() {
            b
        } else {
            masks.iter().map(|m| m.iter().filter(|&&x| x == 1).count()).sum()
        };
        last_logits = match cache.as_mut() {
            Some(c) => {
                let ids = Tensor::from_slice(&next).view([b as i64, 1]).to_device(dev);
                let h = super::checked::hidden_states(model, &ids, &int_tensor(&masks, dev), Some(c))?;
                super::checked::head(model, &h.squeeze_dim(1))?
            }
            None => {
                let h = super::checked::hidden_states(model, &int_tensor(&seqs, dev), &int_tensor(&masks, dev), None)?;
                super::checked::head(model, &h.narrow(1, seqs[0].len() as i64 - 1, 1).squeeze_dim(1))?
            }
        };
    }
    for g in gens.iter_mut() {
        if g.finish != "stop" {
            g.text = tok.decode(&g.tokens, true)?;
            // A stop string the scan's tail missed (it never decides the text, only when to stop).
            if let Some(at) = stops.first_stop(&g.text) {
                g.text.truncate(at);
                g.finish = "stop".into();
            }
        }
    }
    Ok(gens)
}

/// Each row's next token from the head's logits (`rows × vocab`); rows `done` get 0 and are
/// not checked. Greedy choice runs where the logits are, as transformers' greedy search runs
/// it (`argmax`, the lowest id on ties), and only the ids and each row's NaN flag come back,
/// not `rows × vocab` logits per step; sampling reads the rows back and draws from each row's
/// RNG ([`choose_token`]). A row with NaN logits is an error naming the step.
fn next_tokens(
    logits: &Tensor,
    sampling: Sampling,
    rngs: &mut [rand_chacha::ChaCha8Rng],
    done: &[bool],
    step: usize,
) -> Result<Vec<i64>> {
    let b = done.len();
    let nan_at = |i: usize| Error::NonFinite {
        evaluation: String::new(),
        what: format!("NaN logits while generating, step {step}"),
        rows: vec![i],
    };
    if sampling.is_greedy() {
        let logits = logits.f_to_kind(Kind::Float).op("reading logits")?;
        let ids = logits.f_argmax(1, false).op("choosing greedy tokens")?;
        let nan = logits
            .f_isnan()
            .and_then(|n| n.f_any_dim(1, false))
            .and_then(|n| n.f_to_kind(Kind::Int64))
            .op("checking logits for NaN")?;
        let both = Tensor::f_cat(&[ids, nan], 0).op("choosing greedy tokens")?;
        let both = Vec::<i64>::try_from(both.to_device(Device::Cpu)).op("reading greedy tokens")?;
        let (ids, nan) = both.split_at(b);
        if let Some(i) = (0..b).find(|&i| !done[i] && nan[i] != 0) {
            return Err(nan_at(i));
        }
        return Ok((0..b).map(|i| if done[i] { 0 } else { ids[i] }).collect());
    }
    // (A model's head may return a strided view, e.g. a TorchScript module's last positions.)
    let logits = logits.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
    let v = logits.size()[1] as usize;
    let flat = Vec::<f32>::try_from(logits.f_view([-1]).op("flattening logits")?).op("reading logits")?;
    let mut next = vec![0i64; b];
    for i in (0..b).filter(|&i| !done[i]) {
        let row = &flat[i * v..(i + 1) * v];
        if row.iter().any(|x| x.is_nan()) {
            return Err(nan_at(i));
        }
        next[i] = choose_token(row, sampling, &mut rngs[i]);
    }
    Ok(next)
}
