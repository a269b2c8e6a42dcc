//! A model served by an engine with an OpenAI-compatible API (vLLM, SGLang, TGI, llama.cpp's
//! server): [`Served`] implements the request-level half of [`Model`] — [`Model::score`] and
//! [`Model::generate`] — over `POST /v1/completions`, so every kind, suite, journal and report
//! works on it unchanged. The local tokenizer lowers rows to tokens as for a checkpoint; the
//! engine gets their text.
//!
//! * **Scoring**: one request per (context, continuation) with `echo: true`, `logprobs: 1`,
//!   `max_tokens: 1`, `temperature: 0` (lm-eval's `local-completions`); the continuation's log-
//!   likelihood is the sum of the echoed prompt's token log-probs at its positions, greedy where
//!   each of them is the largest in its `top_logprobs`. The engine must tokenize the text into
//!   the same number of tokens as the local tokenizer, or the run stops with an error saying so.
//! * **Generation**: the prompt's text with `max_tokens`, the stop strings and greedy or the
//!   run's temperature/top-p (with the sample's seed); the text comes back cut at a stop string.
//! * **Transport**: up to `in_flight` requests at once; connection errors and 5xx responses are
//!   retried with exponential backoff; a 400, 413 or 422 to a completion fails its evaluation
//!   alone ([`Error::Incapable`]), any other 4xx is the run's error, each with the server's
//!   message. A run that loses its server fails after the retries; its finished chunks are in
//!   the journal and a rerun resumes from them.
//! * **Engines**: vLLM echoes the BOS it puts before a text prompt, llama.cpp's server does
//!   not; both are read. An engine that lists its `max_model_len` (vLLM, SGLang) gets requests
//!   that fit it (the max length is lowered where needed). `--tokenizer` is checked against
//!   the engine's at connection, on a probe text.

use super::Model;
use crate::batch::TokenCounts;
use crate::error::{Error, Result};
use crate::request::{ContinuationScore, GenerateParams, GenerateRequest, Generation, Sampling, ScoreRequest};
use crate::tokenizer::Tokenizer;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tch::{Device, Tensor};

/// How to reach a served model.
#[derive(Debug, Clone)]
pub struct ServedOptions {
    /// The API's base URL, e.g. `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    /// The served model's id (`None`: the first of `GET /models`).
    pub model: Option<String>,
    /// Longest sequence (prompt + continuation or generation) the engine accepts.
    pub max_len: usize,
    /// Requests in flight at once.
    pub in_flight: usize,
    /// Retries of a request after a connection error or a 5xx response.
    pub retries: usize,
    /// First backoff (doubled on each retry).
    pub backoff: Duration,
    /// Timeout of one request.
    pub timeout: Duration,
    /// Check the engine at connection: fit the max length to its `max_model_len` and
    /// `--tokenizer` to its tokenizer (off where a connection only asks the model's id).
    pub checks: bool,
}

impl ServedOptions {
    /// Defaults for `base_url`: the first served model, 8 in flight, 5 retries from 0.5 s,
    /// 600 s per request, the engine checked at connection.
    pub fn new(base_url: impl Into<String>, max_len: usize) -> Self {
        ServedOptions {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            model: None,
            max_len,
            in_flight: 8,
            retries: 5,
            backoff: Duration::from_millis(500),
            timeout: Duration::from_secs(600),
            checks: true,
        }
    }
}

/// A model behind an OpenAI-compatible completions endpoint.
pub struct Served {
    opts: ServedOptions,
    tokenizer: Tokenizer,
    model: String,
    engine: String,
    vocab_size: usize,
    bos: Option<i64>,
    agent: ureq::Agent,
}

/// Tokens a request to an engine may hold beyond the model's input: the continuation's last
/// token, the one generated, the BOS an input cut from the left gets back, and one for the
/// re-split of a word it was cut inside ([`Served`]'s `fit_to`).
pub const ENGINE_MARGIN: usize = 4;

fn served_error(url: &str, message: impl std::fmt::Display) -> Error {
    Error::Served {
        url: url.into(),
        message: message.to_string(),
    }
}

impl Served {
    /// [`ServedOptions::new`].
    pub fn options(base_url: &str, max_len: usize) -> ServedOptions {
        ServedOptions::new(base_url, max_len)
    }

    /// Connects to `opts.base_url`: reads the served models (`GET /models`), picks
    /// `opts.model` (an error lists the ids when it is not served) and the engine's name and
    /// version where it reports them. `tokenizer` must be the served model's.
    ///
    /// ```no_run
    /// use evalkit_core::model::served::{Served, ServedOptions};
    /// use evalkit_core::{Model, Tokenizer};
    /// let tokenizer = Tokenizer::from_dir("models/Llama-3.1-70B-Instruct".as_ref())?;
    /// let model = Served::connect(ServedOptions::new("http://127.0.0.1:8000/v1", 8192), tokenizer)?;
    /// println!("{}", model.describe()); // openai-compatible:http://127.0.0.1:8000/v1 (model …, engine …)
    /// # Ok::<(), evalkit_core::Error>(())
    /// ```
    pub fn connect(opts: ServedOptions, tokenizer: Tokenizer) -> Result<Self> {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout(opts.timeout)
            .build();
        let mut s = Served {
            model: String::new(),
            engine: String::new(),
            vocab_size: tokenizer.vocab_size(),
            // The BOS the local tokenizer adds; the engine adds its own, so the text leaves it out.
            bos: tokenizer
                .prefix_token()
                .ok()
                .filter(|&p| Some(p) == tokenizer.encode("a").ok().and_then(|e| e.first().copied())),
            agent,
            opts,
            tokenizer,
        };
        let (models, server) = s.get("/models")?;
        let listed = models["data"].as_array().cloned().unwrap_or_default();
        let ids: Vec<String> = models["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["id"].as_str().map(String::from))
            .collect();
        s.model = match &s.opts.model {
            Some(m) if ids.contains(m) => m.clone(),
            Some(m) => {
                return Err(served_error(
                    &s.opts.base_url,
                    format!("model {m:?} is not served; it serves {ids:?}"),
                ))
            }
            None => ids
                .first()
                .cloned()
                .ok_or_else(|| served_error(&s.opts.base_url, "GET /models lists no model"))?,
        };
        // vLLM and SGLang list each model's longest request (prompt and completion).
        let engine_len = listed
            .iter()
            .find(|m| m["id"].as_str() == Some(s.model.as_str()))
            .and_then(|m| m["max_model_len"].as_u64())
            .filter(|&l| l > 0);
        if s.opts.checks {
            if let Some(limit) = engine_len.map(|l| l as usize) {
                s.fit_to(limit)?;
            }
            s.check_tokenizer()?;
        }
        // vLLM answers GET /version; others name themselves in the Server header at most.
        let root = s.opts.base_url.trim_end_matches("/v1").to_string();
        let version = s
            .agent
            .get(&format!("{root}/version"))
            .call()
            .ok()
            .and_then(|r| r.into_json::<Value>().ok())
            .and_then(|v| v["version"].as_str().map(String::from));
        s.engine = match (server, version) {
            (Some(sv), Some(v)) => format!("{sv} {v}"),
            (None, Some(v)) => v,
            (Some(sv), None) => sv,
            (None, None) => "unknown".into(),
        };
        Ok(s)
    }

    /// Fits the max length to an engine whose requests hold at most `limit` tokens. A scoring
    /// request holds the model's input, its last continuation token and the one generated;
    /// an input cut from the left has lost its BOS, which the engine puts back; and the text
    /// of a cut input may be split into a token more where it starts inside a word: so the
    /// input holds at most `limit` less [`ENGINE_MARGIN`].
    fn fit_to(&mut self, limit: usize) -> Result<()> {
        let fits = limit.saturating_sub(ENGINE_MARGIN);
        if fits < 1 {
            return Err(served_error(
                &self.opts.base_url,
                format!("the engine serves requests of at most {limit} tokens (max_model_len): too few to score in"),
            ));
        }
        if self.opts.max_len > fits {
            tracing::warn!(
                "{}: the engine serves requests of at most {limit} tokens (max_model_len), and a request holds the input and up to {ENGINE_MARGIN} more: the max length is {fits}, not {} (longer inputs are cut, and counted as truncated)",
                self.opts.base_url,
                self.opts.max_len
            );
            self.opts.max_len = fits;
        }
        Ok(())
    }

    /// Checks `--tokenizer` against the engine's before anything runs: the engine echoes a
    /// probe text's tokens, as many as the local tokenizer makes of it (scoring checks every
    /// request so, but a run of generations alone would not). An engine that does not echo
    /// prompt tokens cannot be checked (a run of generations goes on; scoring says why it
    /// cannot run).
    fn check_tokenizer(&self) -> Result<()> {
        const PROBE: &str = "Probe: the quick brown fox jumps over the lazy dog; 1234 + 5678 = 6912.";
        let ids = self.tokenizer.encode(PROBE)?;
        let (prompt, skip) = self.text(&ids)?;
        let body = json!({
            "model": self.model, "prompt": prompt, "temperature": 0, "max_tokens": 1,
            "logprobs": 1, "echo": true,
        });
        // Asked once: an engine that cannot answer it may still generate.
        let lp = match self.post_retried(&body, 0) {
            // Only where the echo was honoured (the text starts with the prompt).
            Ok(v) if v["choices"][0]["text"].as_str().is_some_and(|t| t.starts_with(&prompt)) => {
                Some(v["choices"][0]["logprobs"].clone())
            }
            Ok(_) => None,
            Err(e) => {
                tracing::debug!("the tokenizer check got no answer: {e}");
                None
            }
        };
        let Some(lp) = lp.filter(|lp| lp["tokens"].is_array()) else {
            tracing::debug!(
                "{}: the engine echoes no prompt tokens: the tokenizer is not checked",
                self.opts.base_url
            );
            return Ok(());
        };
        let lead = self.echoed_bos(&lp["tokens"], skip);
        let local = ids.len() - skip;
        // The prompt's tokens, and the one generated unless that was EOS (llama.cpp).
        let echoed = lp["tokens"].as_array().map_or(0, Vec::len) - lead;
        if echoed != local && echoed != local + 1 {
            return Err(served_error(
                &self.opts.base_url,
                format!(
                    "the engine echoed {echoed} tokens for the probe text {PROBE:?} (its tokens and the one generated), where the local tokenizer makes {local} of it: --tokenizer is not the served model's"
                ),
            ));
        }
        Ok(())
    }

    /// The served model's id.
    pub fn model_id(&self) -> &str {
        &self.model
    }

    /// The engine as it names itself (Server header, version endpoint), or `unknown`.
    pub fn engine(&self) -> &str {
        &self.engine
    }

    /// A GET at connection time (nothing has run: a failure says so).
    fn get(&self, path: &str) -> Result<(Value, Option<String>)> {
        let url = format!("{}{path}", self.opts.base_url);
        self.with_retries(&url, false, self.opts.retries, || {
            self.agent.get(&url).call().map_err(Box::new)
        })
    }

    /// A completion, retried as `--retries` says.
    fn post(&self, body: &Value) -> Result<Value> {
        self.post_retried(body, self.opts.retries)
    }

    fn post_retried(&self, body: &Value, retries: usize) -> Result<Value> {
        let url = format!("{}/completions", self.opts.base_url);
        self.with_retries(&url, true, retries, || {
            self.agent.post(&url).send_json(body.clone()).map_err(Box::new)
        })
        .map(|(v, _)| v)
    }

    /// Runs `call`, retrying connection errors and 5xx responses. A 400, 413 or 422 to a
    /// `completion` request is that request's ([`Error::Incapable`]: its evaluation fails, the
    /// run's others go on); any other 4xx is the run's.
    fn with_retries(
        &self,
        url: &str,
        completion: bool,
        retries: usize,
        call: impl Fn() -> std::result::Result<ureq::Response, Box<ureq::Error>>,
    ) -> Result<(Value, Option<String>)> {
        let mut wait = self.opts.backoff;
        let mut attempt = 0;
        loop {
            let failure = match call().map_err(|e| *e) {
                Ok(r) => {
                    let server = r.header("server").map(String::from);
                    let v = r
                        .into_json::<Value>()
                        .map_err(|e| served_error(url, format!("the response is not JSON: {e}")))?;
                    return Ok((v, server));
                }
                Err(ureq::Error::Status(code, r)) if code < 500 => {
                    let body = r.into_string().unwrap_or_default();
                    let body = body.trim();
                    if completion && matches!(code, 400 | 413 | 422) {
                        let lower = body.to_ascii_lowercase();
                        let hint = if ["context length", "too long", "maximum", "exceed"]
                            .iter()
                            .any(|w| lower.contains(w))
                        {
                            format!(
                                " (the engine's limit is below the max length {} and the {ENGINE_MARGIN} tokens more a request may take: give --max-len at most its limit less {ENGINE_MARGIN})",
                                self.opts.max_len
                            )
                        } else {
                            String::new()
                        };
                        return Err(Error::Incapable {
                            evaluation: String::new(),
                            message: format!("{url}: HTTP {code}: {body}{hint}"),
                        });
                    }
                    return Err(served_error(url, format!("HTTP {code}: {body}")));
                }
                Err(ureq::Error::Status(code, r)) => {
                    format!("HTTP {code}: {}", r.into_string().unwrap_or_default().trim())
                }
                // Its kind, message and cause (`Connection refused`): its Display names the
                // URL again.
                Err(ureq::Error::Transport(t)) => {
                    let cause = std::error::Error::source(&t).map(ToString::to_string);
                    [Some(t.kind().to_string()), t.message().map(String::from), cause]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(": ")
                }
            };
            if attempt >= retries {
                let then = if completion {
                    "finished chunks are kept: rerun to resume"
                } else {
                    "is the engine running there?"
                };
                return Err(served_error(
                    url,
                    format!("{failure} (after {attempt} retries; {then})"),
                ));
            }
            tracing::warn!("{url}: {failure}; retrying in {wait:?}");
            std::thread::sleep(wait);
            wait *= 2;
            attempt += 1;
        }
    }

    /// Runs `f` on every item with up to `in_flight` at once; results in item order.
    fn pooled<T: Sync, R: Send>(&self, items: &[T], f: impl Fn(&T) -> Result<R> + Sync) -> Result<Vec<R>> {
        let next = AtomicUsize::new(0);
        let mut out: Vec<Option<Result<R>>> = (0..items.len()).map(|_| None).collect();
        let slots = std::sync::Mutex::new(&mut out);
        std::thread::scope(|s| {
            for _ in 0..self.opts.in_flight.clamp(1, items.len().max(1)) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = f(item);
                    let failed = r.is_err();
                    slots.lock().expect("no panics while holding")[i] = Some(r);
                    if failed {
                        next.store(items.len(), Ordering::Relaxed);
                    }
                });
            }
        });
        // The first failure is the error; without one every item ran.
        if let Some(i) = out.iter().position(|r| matches!(r, Some(Err(_)))) {
            return Err(out.swap_remove(i).and_then(Result::err).expect("an error"));
        }
        Ok(out
            .into_iter()
            .map(|r| r.and_then(Result::ok).expect("every item ran"))
            .collect())
    }

    /// The tokens the engine echoed before a prompt's text: 1 where the prompt's BOS was left
    /// out of the text (`skip`, from [`Served::text`]) and the engine echoes the one it put
    /// back (vLLM, as its text `<s>` or `token_id:1`); 0 where it does not (llama.cpp's server).
    fn echoed_bos(&self, tokens: &Value, skip: usize) -> usize {
        let first = tokens.get(0);
        usize::from(skip == 1 && self.bos.is_some_and(|bos| first.is_some_and(|t| self.is_token(t, bos))))
    }

    /// Whether an echoed token is an EOS.
    fn is_eos(&self, token: &Value) -> bool {
        self.tokenizer.eos_ids().iter().any(|&eos| self.is_token(token, eos))
    }

    /// Whether an echoed token (its text, or vLLM's `token_id:N`) is token `id`.
    fn is_token(&self, token: &Value, id: i64) -> bool {
        let Some(token) = token.as_str() else {
            return false;
        };
        let inner = self.tokenizer.inner();
        token == format!("token_id:{id}")
            || u32::try_from(id).is_ok_and(|id| {
                inner.id_to_token(id).as_deref() == Some(token)
                    || inner.decode(&[id], false).ok().as_deref() == Some(token)
            })
    }

    /// The text the engine gets for `ids`: without the leading BOS the engine adds itself.
    fn text(&self, ids: &[i64]) -> Result<(String, usize)> {
        let skip = usize::from(self.bos.is_some() && ids.first() == self.bos.as_ref());
        Ok((self.tokenizer.decode(&ids[skip..], false)?, skip))
    }

    fn score_one(&self, context: &[i64], continuation: &[i64]) -> Result<ContinuationScore> {
        let url = &self.opts.base_url;
        // The model's input is the context and all but the last continuation token (as on
        // libtorch, at most max_len); the engine gets the last one too, to score it.
        let over = (context.len() + continuation.len()).saturating_sub(self.opts.max_len + 1);
        if over >= context.len() {
            return Err(served_error(
                url,
                format!(
                    "a continuation of {} tokens leaves no context in max length {}",
                    continuation.len(),
                    self.opts.max_len
                ),
            ));
        }
        let ids: Vec<i64> = context[over..].iter().chain(continuation).copied().collect();
        let truncated = over > 0;
        let (prompt, skip) = self.text(&ids)?;
        if skip == 0 && self.bos.is_some() && !truncated {
            // A rolling-perplexity window after a text's first starts inside the text, without
            // the BOS every other context starts with; the engine would put its BOS before it
            // (and re-split its first word), and so score another input than the model's.
            return Err(Error::Incapable {
                evaluation: String::new(),
                message: format!("{url}: a prompt that starts without the model's BOS (a rolling-perplexity window inside a text) gets the engine's BOS before it, so the engine would score another input than the model's: such windows need an engine that scores token ids"),
            });
        }
        let body = json!({
            "model": self.model, "prompt": prompt, "temperature": 0, "max_tokens": 1,
            "logprobs": 1, "echo": true, "seed": 1234,
        });
        let v = self.post(&body)?;
        let lp = &v["choices"][0]["logprobs"];
        let logprobs = lp["token_logprobs"]
            .as_array()
            .ok_or_else(|| served_error(url, "the response has no logprobs.token_logprobs: the engine does not return prompt log-probs (llama.cpp: --logits_all true)"))?;
        let top = lp["top_logprobs"].as_array().cloned().unwrap_or_default();
        // vLLM echoes the BOS it put before the text (with no log-prob); llama.cpp's server
        // leaves it out. The positions below are the text's.
        let lead = self.echoed_bos(&lp["tokens"], skip);
        let logprobs = &logprobs[lead.min(logprobs.len())..];
        let top = &top[lead.min(top.len())..];
        // The engine echoes the prompt's tokens and the one generated token, unless that was
        // EOS (llama.cpp's server leaves it out). Without truncation the count tells; a
        // truncated prompt may be re-split, and then the echoed text tells (the prompt alone
        // when nothing was generated).
        let local = ids.len() - skip;
        let generated = if !truncated && (logprobs.len() == local || logprobs.len() == local + 1) {
            logprobs.len() - local
        } else {
            // vLLM's text leaves out a generated EOS that its tokens hold.
            let text = v["choices"][0]["text"].as_str().unwrap_or_default();
            let eos_last = lp["tokens"]
                .as_array()
                .and_then(|t| t.last())
                .is_some_and(|t| self.is_eos(t));
            usize::from(text.len() > prompt.len() || eos_last)
        };
        let echoed = logprobs.len().saturating_sub(generated);
        // A left-truncated context starts inside a word, which the engine may split otherwise;
        // the continuation, at the end, is then found from the end.
        if echoed != ids.len() - skip && (!truncated || echoed < continuation.len() + 1) {
            return Err(served_error(
                url,
                format!(
                    "the engine tokenized the text into {echoed} tokens, the local tokenizer into {}: --tokenizer is not the served model's",
                    ids.len() - skip
                ),
            ));
        }
        // Where the continuation starts among the echoed tokens (the first has no log-prob
        // unless the engine echoed its BOS before it).
        let first = echoed - continuation.len();
        if first == 0 && logprobs.first().is_none_or(Value::is_null) {
            return Err(Error::Incapable {
                evaluation: String::new(),
                message: format!("{url}: the engine gives no log-prob for the first token after its BOS, and the continuation starts there (a rolling-perplexity window: use an engine that returns prompt_logprobs)"),
            });
        }
        let mut token_logprobs = Vec::with_capacity(continuation.len());
        let mut argmax = Vec::with_capacity(continuation.len());
        for (j, &t) in continuation.iter().enumerate() {
            let l = logprobs[first + j]
                .as_f64()
                .ok_or_else(|| served_error(url, format!("token {} has no log-prob", first + j)))?;
            let best = top
                .get(first + j)
                .and_then(Value::as_object)
                .map_or(l, |m| m.values().filter_map(Value::as_f64).fold(l, f64::max));
            token_logprobs.push(l as f32);
            argmax.push(if l >= best { t } else { -1 });
        }
        Ok(ContinuationScore {
            token_logprobs,
            argmax,
            truncated,
        })
    }

    fn generate_one(&self, r: &GenerateRequest, params: &GenerateParams) -> Result<Generation> {
        let (prompt, _) = self.text(&r.prompt)?;
        let mut body = json!({
            "model": self.model, "prompt": prompt, "max_tokens": params.max_new_tokens,
            "stop": params.stop, "seed": r.seed % (1 << 31),
        });
        match params.sampling {
            Sampling::Greedy => body["temperature"] = json!(0),
            Sampling::Nucleus { temperature, top_p } => {
                body["temperature"] = json!(temperature);
                body["top_p"] = json!(top_p);
            }
        }
        let v = self.post(&body)?;
        let choice = &v["choices"][0];
        let text = choice["text"]
            .as_str()
            .ok_or_else(|| served_error(&self.opts.base_url, "the response has no choices[0].text"))?
            .to_string();
        let finish = match choice["finish_reason"].as_str() {
            Some("length") => "length",
            _ => "stop",
        };
        Ok(Generation {
            tokens: self.tokenizer.encode_plain(&text)?,
            text,
            finish: finish.into(),
        })
    }
}

impl Model for Served {
    fn max_len(&self) -> usize {
        self.opts.max_len
    }
    fn vocab_size(&self) -> usize {
        self.vocab_size
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn describe(&self) -> String {
        format!(
            "openai-compatible:{} (model {}, engine {})",
            self.opts.base_url, self.model, self.engine
        )
    }
    fn hidden_states(&self, _: &Tensor, _: &Tensor, _: Option<&mut super::KvCache>) -> Result<Tensor> {
        Err(Error::Unsupported(
            "a served model runs requests, not tensors (hidden_states)".into(),
        ))
    }
    fn head(&self, _: &Tensor) -> Result<Tensor> {
        Err(Error::Unsupported(
            "a served model runs requests, not tensors (head)".into(),
        ))
    }
    fn new_cache(&self) -> Option<super::KvCache> {
        None
    }
    fn score(
        &self,
        reqs: &[&ScoreRequest],
        _share: bool,
        counts: &mut TokenCounts,
    ) -> Result<Vec<Vec<ContinuationScore>>> {
        let pairs: Vec<(usize, &[i64], &[i64])> = reqs
            .iter()
            .enumerate()
            .flat_map(|(i, r)| {
                r.continuations
                    .iter()
                    .map(move |c| (i, r.context.as_slice(), c.as_slice()))
            })
            .collect();
        let scores = self.pooled(&pairs, |&(_, ctx, cont)| self.score_one(ctx, cont))?;
        let mut out: Vec<Vec<ContinuationScore>> = vec![vec![]; reqs.len()];
        for (&(i, ctx, cont), s) in pairs.iter().zip(scores) {
            counts.forwarded += ctx.len() + cont.len();
            counts.scored += cont.len();
            out[i].push(s);
        }
        Ok(out)
    }
    fn generate(
        &self,
        _tok: &Tokenizer,
        reqs: &[&GenerateRequest],
        params: &GenerateParams,
        counts: &mut TokenCounts,
    ) -> Result<Vec<Generation>> {
        let gens = self.pooled(reqs, |r| self.generate_one(r, params))?;
        for (r, g) in reqs.iter().zip(&gens) {
            counts.forwarded += r.prompt.len() + g.tokens.len();
            counts.scored += g.tokens.len();
        }
        Ok(gens)
    }
}
