//! Decoding: sampling, stop conditions, per-token log-probs with top-N alternatives, streaming,
//! cancellation, and option scoring for classification. Everything a tier needs to compute its
//! confidence comes out of here.

use crate::error::{Error, Result};
use crate::kernels::Isa;
use crate::models::{Model, Session};
use crate::tokenizer::{TokenId, Tokenizer};
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// How to pick each next token.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub seed: u64,
    pub max_tokens: usize,
    /// Generation ends before the first occurrence of any of these; the stop text is not output.
    pub stop: Vec<String>,
    /// How many alternatives to report with each token's log-prob.
    pub top_logprobs: usize,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: None,
            top_p: None,
            seed: 0,
            max_tokens: 256,
            stop: Vec::new(),
            top_logprobs: 0,
        }
    }
}

/// One generated token with its natural-log probability under the model (temperature 1, before
/// any sampling filter: the distribution confidence is defined on).
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub id: TokenId,
    /// The text this token completes; may be empty when the token ends inside a UTF-8 char, and
    /// is cut short when a stop string begins in it.
    pub text: String,
    /// The token's raw bytes.
    pub bytes: Vec<u8>,
    pub logprob: f32,
    /// The most likely alternatives, most likely first.
    pub top: Vec<(TokenId, f32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens` or the context length.
    Length,
    /// The [`CancelToken`] was used.
    Cancelled,
}

/// A cancellation flag shared with whoever may stop a generation (a disconnecting client).
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// `log_softmax(logits)` in place, computed stably (see [`Isa::log_sum_exp`]).
pub fn log_softmax(logits: &mut [f32]) {
    let log_z = Isa::detect().log_sum_exp(logits);
    for x in logits.iter_mut() {
        *x -= log_z;
    }
}

/// The `n` largest entries, largest first (ties: lower id first).
pub fn top_n(logprobs: &[f32], n: usize) -> Vec<(TokenId, f32)> {
    top_n_of(logprobs.iter().copied(), n)
}

/// [`top_n`] of the values `values` yields in id order, in one pass that keeps only the `n`
/// best in a heap (the decoder asks for a few alternatives of a vocabulary-sized row; a large
/// `n` from a library caller stays `O(len · log n)`).
fn top_n_of(values: impl Iterator<Item = f32>, n: usize) -> Vec<(TokenId, f32)> {
    use std::cmp::{Ordering, Reverse};
    use std::collections::BinaryHeap;
    /// Greater is better: a larger value, then a lower id.
    struct Ranked(TokenId, f32);
    impl Ord for Ranked {
        fn cmp(&self, other: &Self) -> Ordering {
            self.1.total_cmp(&other.1).then(other.0.cmp(&self.0))
        }
    }
    impl PartialOrd for Ranked {
        fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
            Some(self.cmp(other))
        }
    }
    impl PartialEq for Ranked {
        fn eq(&self, other: &Self) -> bool {
            self.cmp(other).is_eq()
        }
    }
    impl Eq for Ranked {}

    if n == 0 {
        return Vec::new();
    }
    // The worst kept entry on top.
    let mut worst_first: BinaryHeap<Reverse<Ranked>> = BinaryHeap::new();
    for (id, v) in (0..).zip(values) {
        let entry = Ranked(id, v);
        if worst_first.len() < n {
            worst_first.push(Reverse(entry));
        } else if let Some(mut worst) = worst_first.peek_mut()
            && entry > worst.0
        {
            *worst = Reverse(entry);
        }
    }
    // Ascending `Reverse` order is best first.
    worst_first
        .into_sorted_vec()
        .into_iter()
        .map(|Reverse(Ranked(id, v))| (id, v))
        .collect()
}

/// The index of the largest logit, the first of equal ones (what candle's `argmax` picks, so
/// greedy decoding skips building a tensor of the whole row).
fn argmax(logits: &[f32]) -> Option<TokenId> {
    let (mut best, mut at) = (*logits.first()?, 0);
    for (i, &v) in logits.iter().enumerate().skip(1) {
        if best < v {
            (best, at) = (v, i);
        }
    }
    TokenId::try_from(at).ok()
}

/// The per-sequence decoding state without the forward pass: sampler, stop strings, token
/// budget and cancellation. [`Generation`] pairs it with a [`Session`]; a server that batches
/// many sequences through one forward pass keeps one `Decoder` per sequence instead.
pub struct Decoder {
    params: SamplingParams,
    sampler: LogitsProcessor,
    generated: usize,
    text: TextStream,
    finish: Option<FinishReason>,
    cancel: CancelToken,
}

impl Decoder {
    pub fn new(params: SamplingParams) -> Self {
        let sampling = if params.temperature <= 0.0 {
            Sampling::ArgMax
        } else {
            match (params.top_k, params.top_p) {
                (None, None) => Sampling::All {
                    temperature: params.temperature,
                },
                (Some(k), None) => Sampling::TopK {
                    k,
                    temperature: params.temperature,
                },
                (None, Some(p)) => Sampling::TopP {
                    p,
                    temperature: params.temperature,
                },
                (Some(k), Some(p)) => Sampling::TopKThenTopP {
                    k,
                    p,
                    temperature: params.temperature,
                },
            }
        };
        Decoder {
            text: TextStream::new(params.stop.clone()),
            sampler: LogitsProcessor::from_sampling(params.seed, sampling),
            params,
            generated: 0,
            finish: None,
            cancel: CancelToken::default(),
        }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }

    /// Why decoding ended, once it has. While this is `None` after [`Decoder::next_token`]
    /// returned a token, the caller feeds that token to the model and calls again.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }

    /// Tokens picked so far.
    pub fn generated(&self) -> usize {
        self.generated
    }

    /// Picks the next token from the model's `logits` (or returns `None` when decoding has
    /// already ended, was cancelled, or the token budget is spent).
    pub fn next_token(&mut self, logits: Vec<f32>, tokenizer: &Tokenizer) -> Result<Option<Token>> {
        if self.finish.is_some() {
            return Ok(None);
        }
        if self.cancel.is_cancelled() {
            self.finish = Some(FinishReason::Cancelled);
            return Ok(None);
        }
        if self.generated >= self.params.max_tokens {
            self.finish = Some(FinishReason::Length);
            return Ok(None);
        }
        let greedy = self.params.temperature <= 0.0;
        let picked = if greedy { argmax(&logits) } else { None };
        let id = match picked {
            Some(id) => id,
            None => self
                .sampler
                .sample(&Tensor::new(logits.as_slice(), &Device::Cpu)?)?,
        };
        // The log-probs are the logits less their log-sum-exp: only the picked token's and the
        // few alternatives' are formed.
        let log_z = Isa::detect().log_sum_exp(&logits);
        let logprob = logits
            .get(id as usize)
            .map_or(f32::NEG_INFINITY, |&x| x - log_z);
        let top = top_n_of(logits.iter().map(|&x| x - log_z), self.params.top_logprobs);
        self.generated += 1;

        let bytes = tokenizer
            .token_bytes(id, false)
            .map(|b| b.into_owned())
            .unwrap_or_default();
        let text = if tokenizer.is_eog(id) {
            self.finish = Some(FinishReason::Stop);
            self.text.finish()
        } else {
            let (mut text, stopped) = self.text.push(&bytes);
            if stopped {
                self.finish = Some(FinishReason::Stop);
            } else if self.generated >= self.params.max_tokens {
                self.finish = Some(FinishReason::Length);
                text += &self.text.finish();
            }
            text
        };
        Ok(Some(Token {
            id,
            text,
            bytes,
            logprob,
            top,
        }))
    }

    /// Ends decoding early (the context is full, or the caller gives up) and returns the text
    /// still held back waiting for a possible stop string.
    pub fn end(&mut self, reason: FinishReason) -> String {
        if self.finish.is_none() {
            self.finish = Some(reason);
        }
        self.text.finish()
    }
}

/// A generation in progress: an iterator of tokens. Dropping it stops it.
pub struct Generation<'m> {
    model: &'m Model,
    session: Session,
    decoder: Decoder,
    next_logits: Option<Vec<f32>>,
}

impl<'m> Generation<'m> {
    pub fn start(model: &'m Model, prompt: &[TokenId], params: SamplingParams) -> Result<Self> {
        let mut session = model.session();
        let logits = session.feed(prompt)?;
        Ok(Generation {
            model,
            session,
            decoder: Decoder::new(params),
            next_logits: Some(logits),
        })
    }

    pub fn cancel_token(&self) -> CancelToken {
        self.decoder.cancel_token()
    }

    /// Why generation ended, once it has.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.decoder.finish_reason()
    }

    /// Prompt plus generated tokens so far.
    pub fn tokens(&self) -> &[TokenId] {
        self.session.tokens()
    }

    fn step(&mut self) -> Result<Option<Token>> {
        let Some(logits) = self.next_logits.take() else {
            return Ok(None);
        };
        let Some(mut token) = self.decoder.next_token(logits, self.model.tokenizer())? else {
            return Ok(None);
        };
        if self.decoder.finish_reason().is_none() {
            match self.session.feed(&[token.id]) {
                Ok(next) => self.next_logits = Some(next),
                Err(Error::ContextFull { .. }) => {
                    token.text += &self.decoder.end(FinishReason::Length);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Some(token))
    }
}

/// Turns a stream of token bytes into text, holding back an unfinished UTF-8 character and any
/// tail that may be the start of a stop string, and cutting the text at the first stop string.
#[derive(Debug, Clone)]
pub struct TextStream {
    stop: Vec<String>,
    /// Decoded text not yet released (it may be the start of a stop string).
    held: String,
    /// The bytes of an unfinished UTF-8 character.
    tail: Vec<u8>,
}

impl TextStream {
    pub fn new(stop: Vec<String>) -> Self {
        let stop = stop.into_iter().filter(|s| !s.is_empty()).collect();
        TextStream {
            stop,
            held: String::new(),
            tail: Vec::new(),
        }
    }

    /// Adds one token's bytes; returns the text that is now final, and whether a stop string
    /// was completed (the text then ends just before it, and nothing more should be pushed).
    pub fn push(&mut self, bytes: &[u8]) -> (String, bool) {
        self.tail.extend_from_slice(bytes);
        let mut rest = std::mem::take(&mut self.tail);
        let mut start = 0;
        loop {
            match std::str::from_utf8(&rest[start..]) {
                Ok(s) => {
                    self.held.push_str(s);
                    start = rest.len();
                    break;
                }
                Err(e) => {
                    let valid = start + e.valid_up_to();
                    // The prefix up to `valid` was just checked.
                    self.held
                        .push_str(std::str::from_utf8(&rest[start..valid]).unwrap_or_default());
                    match e.error_len() {
                        // Bytes no character can start with: replace them and go on.
                        Some(len) => {
                            self.held.push(char::REPLACEMENT_CHARACTER);
                            start = valid + len;
                        }
                        // An unfinished character: wait for the next token.
                        None => {
                            start = valid;
                            break;
                        }
                    }
                }
            }
        }
        rest.drain(..start);
        self.tail = rest;

        if let Some(at) = self
            .stop
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            let out = self.held[..at].to_string();
            self.held.clear();
            self.tail.clear();
            return (out, true);
        }
        // Hold back the longest tail of the text that a stop string starts with.
        let text = &self.held;
        let hold = self
            .stop
            .iter()
            .filter_map(|s| {
                (1..=s.len().min(text.len())).rev().find(|&n| {
                    text.is_char_boundary(text.len() - n) && s.starts_with(&text[text.len() - n..])
                })
            })
            .max()
            .unwrap_or(0);
        let out: String = self.held.drain(..self.held.len() - hold).collect();
        (out, false)
    }

    /// Everything still held back (at the end of generation).
    pub fn finish(&mut self) -> String {
        let mut out = std::mem::take(&mut self.held);
        out.push_str(&String::from_utf8_lossy(&std::mem::take(&mut self.tail)));
        out
    }
}

impl Iterator for Generation<'_> {
    type Item = Result<Token>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.step() {
            Ok(Some(token)) => Some(Ok(token)),
            Ok(None) => None,
            Err(e) => {
                self.decoder.end(FinishReason::Stop);
                Some(Err(e))
            }
        }
    }
}

/// Scores each option as the sum of its tokens' log-probs after `prompt` (the prompt is fed
/// once; every option continues a fork of that cache). The scores feed `offload::max_softmax`.
pub fn score_options(
    model: &Model,
    prompt: &[TokenId],
    options: &[Vec<TokenId>],
) -> Result<Vec<f64>> {
    let mut base = model.session();
    let logits = base.feed(prompt)?;
    score_options_after(&base, logits, options)
}

/// [`score_options`] for a prompt already fed to `base`, whose next-token `logits` are given
/// (a prompt whose shared prefix, few-shot examples say, was fed once and forked). Every option
/// continues its own fork of `base`; the forks advance together, one token each per step, in
/// one batched forward pass ([`crate::models::feed_batch`]). An empty option scores
/// `-inf`.
pub fn score_options_after(
    base: &Session,
    mut logits: Vec<f32>,
    options: &[Vec<TokenId>],
) -> Result<Vec<f64>> {
    log_softmax(&mut logits);
    let first = |id: TokenId| {
        f64::from(
            logits
                .get(id as usize)
                .copied()
                .unwrap_or(f32::NEG_INFINITY),
        )
    };
    let mut scores: Vec<f64> = options
        .iter()
        .map(|o| o.first().map_or(f64::NEG_INFINITY, |&h| first(h)))
        .collect();
    // Options longer than one token: fork, then feed token i-1 to learn the log-prob of token i.
    let mut forks: Vec<(usize, Session)> = options
        .iter()
        .enumerate()
        .filter(|(_, o)| o.len() > 1)
        .map(|(i, _)| (i, base.clone()))
        .collect();
    let mut step = 1;
    loop {
        forks.retain(|(i, _)| options[*i].len() > step);
        if forks.is_empty() {
            break;
        }
        let inputs: Vec<[TokenId; 1]> =
            forks.iter().map(|(i, _)| [options[*i][step - 1]]).collect();
        let tokens: Vec<&[TokenId]> = inputs.iter().map(|t| t.as_slice()).collect();
        let mut sessions: Vec<&mut Session> = forks.iter_mut().map(|(_, s)| s).collect();
        let outs = crate::models::feed_batch(&mut sessions, &tokens)?;
        for ((i, _), mut lp) in forks.iter().zip(outs) {
            log_softmax(&mut lp);
            let id = options[*i][step];
            scores[*i] += f64::from(lp.get(id as usize).copied().unwrap_or(f32::NEG_INFINITY));
        }
        step += 1;
    }
    Ok(scores)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stop: &[&str], pieces: &[&[u8]]) -> (String, bool) {
        let mut t = TextStream::new(stop.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for p in pieces {
            let (text, stopped) = t.push(p);
            out += &text;
            if stopped {
                return (out, true);
            }
        }
        out += &t.finish();
        (out, false)
    }

    #[test]
    fn text_stream_joins_split_utf8() {
        let e = "é".as_bytes();
        assert_eq!(
            run(&[], &[b"caf", &e[..1], &e[1..]]),
            ("café".into(), false)
        );
    }

    #[test]
    fn text_stream_replaces_invalid_bytes_but_keeps_waiting_for_unfinished_ones() {
        let e = "é".as_bytes();
        assert_eq!(
            run(&[], &[&[b'a', 0xFF, e[0]], &e[1..]]),
            ("a\u{FFFD}é".into(), false)
        );
        assert_eq!(run(&[], &[&[b'a', e[0]]]), ("a\u{FFFD}".into(), false));
    }

    #[test]
    fn text_stream_stops_before_a_stop_string_split_across_tokens() {
        assert_eq!(
            run(&["\n\n"], &[b"one", b"\n", b"\ntwo"]),
            ("one".into(), true)
        );
        assert_eq!(run(&["END"], &[b"aE", b"N", b"x"]), ("aENx".into(), false));
        assert_eq!(run(&["END", "x"], &[b"abc", b"xEND"]), ("abc".into(), true));
    }

    #[test]
    fn top_n_orders_by_logprob_then_id() {
        let lp = [-3.0, -1.0, -2.0, -1.0];
        assert_eq!(top_n(&lp, 3), vec![(1, -1.0), (3, -1.0), (2, -2.0)]);
        assert_eq!(top_n(&lp, 0), vec![]);
        assert_eq!(top_n(&lp, 9).len(), 4);
    }

    #[test]
    fn top_n_equals_sorting_everything() {
        // Few distinct values, so that ties are everywhere.
        let lp: Vec<f32> = (0..5000u32).map(|i| -(((i * 7919) % 37) as f32)).collect();
        let mut all: Vec<(TokenId, f32)> = (0..).zip(lp.iter().copied()).collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        for n in [1, 2, 5, 20, 200] {
            assert_eq!(top_n(&lp, n), all[..n], "n = {n}");
        }
    }

    #[test]
    fn argmax_picks_what_candle_picks() {
        let rows: [&[f32]; 4] = [
            &[0.5, 2.0, -1.0, 2.0],
            &[3.0],
            &[f32::NEG_INFINITY, -5.0, f32::NEG_INFINITY],
            &[-1.0, -0.5, -0.5, -3.0, -0.25],
        ];
        for row in rows {
            let t = Tensor::new(row, &Device::Cpu).expect("tensor");
            let want = t
                .argmax(candle_core::D::Minus1)
                .and_then(|i| i.to_scalar::<u32>())
                .expect("candle argmax");
            assert_eq!(argmax(row), Some(want), "{row:?}");
        }
        assert_eq!(argmax(&[]), None);
    }

    #[test]
    fn greedy_tokens_carry_the_log_softmax_of_their_logits() {
        let tokenizer = Tokenizer::from_gguf_metadata(&crate::tokenizer::tests::bpe_meta("smollm"))
            .expect("synthetic vocabulary");
        let logits: Vec<f32> = (0..tokenizer.vocab_size())
            .map(|i| ((i * 31) % 17) as f32 * 0.5)
            .collect();
        let mut lp = logits.clone();
        log_softmax(&mut lp);
        let mut decoder = Decoder::new(SamplingParams {
            top_logprobs: 3,
            ..SamplingParams::default()
        });
        let token = decoder
            .next_token(logits, &tokenizer)
            .expect("decoding")
            .expect("a token");
        assert_eq!(token.id, argmax(&lp).expect("not empty"));
        assert_eq!(token.logprob, lp[token.id as usize]);
        assert_eq!(token.top, top_n(&lp, 3));
    }

    #[test]
    fn log_softmax_normalises() {
        let mut x = [1.0f32, 2.0, 3.0];
        log_softmax(&mut x);
        let total: f32 = x.iter().map(|v| v.exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
    }
}
