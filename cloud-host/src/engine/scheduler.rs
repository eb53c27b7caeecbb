//! Continuous batching on the local model.
//!
//! One thread owns every sequence in flight and steps them together: each step makes one
//! [`llm::models::feed_batch`] call holding one new token of every decoding sequence plus a
//! chunk of the prompts being prefilled, so all of them share one pass over the weights.
//! Requests wait in a bounded FIFO queue and join the batch at the next step when a slot is free
//! (first come, first served); past the queue limit, [`Scheduler::submit`] refuses with 429.
//! A sequence whose client went away (its [`Answering`] was dropped) is removed before the next
//! step, so its slot frees at once.
//!
//! A finished sequence's KV cache goes to a [`PrefixCache`]: a new prompt that starts with the
//! same tokens (the chat template's system prompt, an earlier turn of the conversation) is
//! admitted with a fork of that prefix and prefills only the rest. Logits do not change: the
//! engine computes every position the same way whatever the batch or chunk it is fed in.
//!
//! Option scoring (classification) runs `llm::generate::score_options` between steps, one
//! request at a time: its prompts are short and its options a few tokens.

use super::prefix::PrefixCache;
use super::{Answering, Event, Piece};
use crate::error::ApiError;
use llm::generate::{Decoder, FinishReason as LlmFinish, SamplingParams, score_options};
use llm::models::{Model, Session, feed_batch};
use llm::{CancelToken, TokenId, Tokenizer};
use offload::wire::FinishReason;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerConfig {
    pub max_batch: usize,
    pub max_queue: usize,
    pub prefill_chunk: usize,
    /// Tokens of finished sequences' caches kept for reuse (0: none).
    pub prefix_cache_tokens: usize,
}

/// What a request asks of the model.
#[derive(Debug, Clone)]
pub enum Work {
    Generate(SamplingParams),
    /// Score each option (token ids) as a continuation of the prompt.
    Score(Vec<Vec<TokenId>>),
}

#[derive(Debug, Clone)]
pub struct Job {
    pub prompt: Vec<TokenId>,
    pub work: Work,
    /// When the host received the request (queue time counts from here).
    pub received: Instant,
    /// A generation still running then ends with `finish_reason: "length"`.
    pub deadline: Instant,
}

pub struct Scheduler {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    model: Model,
    config: SchedulerConfig,
    state: Mutex<State>,
    wake: Condvar,
    waiting_len: AtomicUsize,
    active_len: AtomicUsize,
    /// Prompt tokens taken from the prefix cache instead of computed.
    reused_tokens: AtomicU64,
}

#[derive(Default)]
struct State {
    waiting: VecDeque<Queued>,
    /// No new requests; the thread exits once the queue and the batch are empty.
    closing: bool,
    /// End everything now (the shutdown grace period is over).
    abort: bool,
}

struct Queued {
    job: Job,
    events: mpsc::UnboundedSender<Event>,
    cancel: CancelToken,
}

impl Queued {
    fn gone(&self) -> bool {
        self.cancel.is_cancelled() || self.events.is_closed()
    }
}

impl Scheduler {
    pub fn start(model: Model, config: SchedulerConfig) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            model,
            config,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            waiting_len: AtomicUsize::new(0),
            active_len: AtomicUsize::new(0),
            reused_tokens: AtomicU64::new(0),
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("scheduler".into())
            .spawn(move || Batch::new(worker).run())?;
        Ok(Scheduler {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub fn model(&self) -> &Model {
        &self.shared.model
    }

    /// Queues a request; refuses with 429 when the queue is full, 503 when shutting down.
    pub fn submit(&self, job: Job) -> Result<Answering, ApiError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let cancel = CancelToken::default();
        {
            let mut state = self.shared.lock();
            if state.closing || state.abort {
                return Err(ApiError::ShuttingDown);
            }
            let queued = state.waiting.len();
            if queued >= self.shared.config.max_queue {
                // A rough wait: one batch-worth of the queue per second is optimistic, so say
                // at least one second.
                let retry_after = 1 + (queued / self.shared.config.max_batch.max(1)) as u64;
                return Err(ApiError::QueueFull {
                    queued,
                    retry_after,
                });
            }
            state.waiting.push_back(Queued {
                job,
                events: tx,
                cancel: cancel.clone(),
            });
            self.shared
                .waiting_len
                .store(state.waiting.len(), Ordering::Relaxed);
        }
        self.shared.wake.notify_one();
        Ok(Answering::new(rx, cancel))
    }

    /// Requests waiting for a batch slot.
    pub fn waiting(&self) -> usize {
        self.shared.waiting_len.load(Ordering::Relaxed)
    }

    /// Sequences in the batch.
    pub fn active(&self) -> usize {
        self.shared.active_len.load(Ordering::Relaxed)
    }

    /// Prompt tokens so far that came from the prefix cache instead of a prefill.
    pub fn reused_tokens(&self) -> u64 {
        self.shared.reused_tokens.load(Ordering::Relaxed)
    }

    /// Stops taking requests; those queued or running still finish.
    pub fn close(&self) {
        self.shared.lock().closing = true;
        self.shared.wake.notify_all();
    }

    /// Ends every request now: each gets a "shutting down" error.
    pub fn abort(&self) {
        {
            let mut state = self.shared.lock();
            state.closing = true;
            state.abort = true;
        }
        self.shared.wake.notify_all();
    }

    /// Waits for the scheduler thread to end (after [`Self::close`] or [`Self::abort`]).
    pub fn join(&self) {
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            tracing::error!("the scheduler thread panicked");
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.abort();
        self.join();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a queue and two flags: still consistent after a panic elsewhere.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One sequence in the batch.
struct Active {
    queued: Queued,
    session: Session,
    /// Prompt tokens fed so far.
    fed: usize,
    /// Set once the prompt is in; what to feed next step.
    next: Option<TokenId>,
    decoder: Option<Decoder>,
    admitted: Instant,
    done: bool,
}

impl Active {
    fn send(&self, event: Event) {
        // A closed channel means the client left; the sequence is dropped before the next step.
        let _ = self.queued.events.send(event);
    }

    fn prefilling(&self) -> bool {
        self.fed < self.queued.job.prompt.len()
    }

    fn finish(&mut self, reason: LlmFinish, tail: String) {
        if !tail.is_empty() {
            self.send(Event::Piece(Piece {
                text: tail,
                logprobs: Vec::new(),
            }));
        }
        let completion_tokens = self.decoder.as_ref().map_or(0, Decoder::generated);
        let reason = match reason {
            LlmFinish::Stop => FinishReason::Stop,
            LlmFinish::Length => FinishReason::Length,
            LlmFinish::Cancelled => {
                // The client is gone; nobody reads this.
                self.done = true;
                return;
            }
        };
        self.send(Event::Finished {
            reason,
            completion_tokens,
            link: None,
        });
        self.done = true;
    }
}

/// The scheduler thread's state.
struct Batch {
    shared: Arc<Shared>,
    active: Vec<Active>,
    prefixes: PrefixCache<Session>,
}

impl Batch {
    fn new(shared: Arc<Shared>) -> Self {
        Batch {
            prefixes: PrefixCache::new(shared.config.prefix_cache_tokens),
            shared,
            active: Vec::new(),
        }
    }

    /// Takes finished sequences out of the batch, keeping their caches for reuse.
    fn retire_done(&mut self) {
        let (done, active): (Vec<_>, Vec<_>) = std::mem::take(&mut self.active)
            .into_iter()
            .partition(|a| a.done);
        self.active = active;
        for a in done {
            self.prefixes.insert(a.session.tokens().to_vec(), a.session);
        }
    }

    fn run(mut self) {
        loop {
            let scoring = match self.admit() {
                Some(scoring) => scoring,
                None => break,
            };
            for queued in scoring {
                self.score(queued);
            }
            self.drop_finished();
            if !self.active.is_empty() {
                self.step();
                self.drop_finished();
            }
        }
        tracing::debug!("scheduler stopped");
    }

    /// Waits for work, fills free batch slots from the queue (FIFO) and returns the scoring
    /// requests taken. `None` when the scheduler should stop.
    fn admit(&mut self) -> Option<Vec<Queued>> {
        let shared = Arc::clone(&self.shared);
        let mut state = shared.lock();
        loop {
            if state.abort {
                for mut a in self.active.drain(..) {
                    a.send(Event::Failed(ApiError::ShuttingDown));
                    a.done = true;
                }
                for q in state.waiting.drain(..) {
                    let _ = q.events.send(Event::Failed(ApiError::ShuttingDown));
                }
                shared.waiting_len.store(0, Ordering::Relaxed);
                shared.active_len.store(0, Ordering::Relaxed);
                return None;
            }
            // Clients that left while queued.
            state.waiting.retain(|q| !q.gone());
            if !self.active.is_empty() || !state.waiting.is_empty() {
                break;
            }
            shared.waiting_len.store(0, Ordering::Relaxed);
            if state.closing {
                return None;
            }
            state = shared
                .wake
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        let mut scoring = Vec::new();
        while self.active.len() < shared.config.max_batch {
            let Some(queued) = state.waiting.pop_front() else {
                break;
            };
            let queue_time = queued.job.received.elapsed();
            let _ = queued.events.send(Event::Admitted { queued: queue_time });
            match &queued.job.work {
                Work::Score(_) => scoring.push(queued),
                Work::Generate(params) => {
                    let decoder = Decoder::new(params.clone());
                    // A fork whose sliding-window layers (Gemma 3) no longer hold the prefix
                    // comes back uncached; then a fresh session prefills in chunks as usual.
                    let reused = self
                        .prefixes
                        .longest(&queued.job.prompt)
                        .map(|(cached, len)| (cached.fork(len), len))
                        .filter(|(fork, len)| fork.cached() == *len);
                    let (session, fed) = match reused {
                        Some((fork, len)) => {
                            shared
                                .reused_tokens
                                .fetch_add(len as u64, Ordering::Relaxed);
                            (fork, len)
                        }
                        None => (shared.model.session(), 0),
                    };
                    self.active.push(Active {
                        session,
                        fed,
                        next: None,
                        decoder: Some(decoder),
                        admitted: Instant::now(),
                        done: false,
                        queued,
                    });
                }
            }
        }
        shared
            .waiting_len
            .store(state.waiting.len(), Ordering::Relaxed);
        shared
            .active_len
            .store(self.active.len(), Ordering::Relaxed);
        Some(scoring)
    }

    fn score(&self, queued: Queued) {
        if queued.gone() {
            return;
        }
        let Work::Score(options) = &queued.job.work else {
            return;
        };
        let started = Instant::now();
        match score_options(&self.shared.model, &queued.job.prompt, options) {
            Ok(scores) => {
                let _ = queued.events.send(Event::Prefilled {
                    prompt_tokens: queued.job.prompt.len(),
                    took: started.elapsed(),
                });
                let _ = queued.events.send(Event::Scores(scores));
                let _ = queued.events.send(Event::Finished {
                    reason: FinishReason::Stop,
                    completion_tokens: 0,
                    link: None,
                });
            }
            Err(e) => {
                let _ = queued.events.send(Event::Failed(e.into()));
            }
        }
    }

    /// Removes finished sequences and those whose client left or whose time is up.
    fn drop_finished(&mut self) {
        let now = Instant::now();
        for a in &mut self.active {
            if a.done {
                continue;
            }
            if a.queued.gone() {
                a.done = true;
            } else if now >= a.queued.job.deadline {
                let tail = a
                    .decoder
                    .as_mut()
                    .map(|d| d.end(LlmFinish::Length))
                    .unwrap_or_default();
                a.finish(LlmFinish::Length, tail);
            }
        }
        self.retire_done();
        self.shared
            .active_len
            .store(self.active.len(), Ordering::Relaxed);
    }

    /// One batched forward pass, then one token picked for every sequence past its prompt.
    fn step(&mut self) {
        let model = self.shared.model.clone();
        let context = model.context_length();
        // Sequences whose context is full end before the pass (feed_batch would refuse the
        // whole batch).
        for a in &mut self.active {
            if !a.prefilling() && a.session.tokens().len() + 1 > context {
                let tail = a
                    .decoder
                    .as_mut()
                    .map(|d| d.end(LlmFinish::Length))
                    .unwrap_or_default();
                a.finish(LlmFinish::Length, tail);
            }
        }
        self.retire_done();

        // Decoding sequences feed one token each; prompts share the prefill budget, oldest
        // first (the batch is in admission order).
        let mut budget = self.shared.config.prefill_chunk;
        let mut inputs: Vec<(usize, Vec<TokenId>)> = Vec::with_capacity(self.active.len());
        for (i, a) in self.active.iter().enumerate() {
            if a.prefilling() {
                if budget == 0 {
                    continue;
                }
                let prompt = &a.queued.job.prompt;
                let take = (prompt.len() - a.fed).min(budget);
                budget -= take;
                inputs.push((i, prompt[a.fed..a.fed + take].to_vec()));
            } else if let Some(next) = a.next {
                inputs.push((i, vec![next]));
            }
        }
        if inputs.is_empty() {
            return;
        }
        let result = {
            let mut sessions: Vec<&mut Session> = Vec::with_capacity(inputs.len());
            let mut picked = inputs.iter().map(|(i, _)| *i).peekable();
            for (i, a) in self.active.iter_mut().enumerate() {
                if picked.peek() == Some(&i) {
                    picked.next();
                    sessions.push(&mut a.session);
                }
            }
            let tokens: Vec<&[TokenId]> = inputs.iter().map(|(_, t)| t.as_slice()).collect();
            feed_batch(&mut sessions, &tokens)
        };
        let logits = match result {
            Ok(logits) => logits,
            Err(e) => {
                tracing::error!(error = %e, "a batched step failed");
                let message = e.to_string();
                for (i, _) in &inputs {
                    let a = &mut self.active[*i];
                    a.send(Event::Failed(ApiError::Internal(message.clone())));
                    a.done = true;
                }
                return;
            }
        };
        let tokenizer = model.tokenizer();
        for ((i, fed), logits) in inputs.into_iter().zip(logits) {
            let a = &mut self.active[i];
            if a.prefilling() {
                a.fed += fed.len();
                if a.prefilling() {
                    continue;
                }
                a.send(Event::Prefilled {
                    prompt_tokens: a.fed,
                    took: a.admitted.elapsed(),
                });
            }
            let Some(decoder) = a.decoder.as_mut() else {
                continue;
            };
            match decoder.next_token(logits, tokenizer) {
                Ok(Some(token)) => {
                    let finished = decoder.finish_reason();
                    a.next = Some(token.id);
                    a.send(Event::Piece(piece(&token, tokenizer)));
                    if let Some(reason) = finished {
                        a.finish(reason, String::new());
                    }
                }
                Ok(None) => {
                    let reason = decoder.finish_reason().unwrap_or(LlmFinish::Stop);
                    let tail = decoder.end(reason);
                    a.finish(reason, tail);
                }
                Err(e) => {
                    a.send(Event::Failed(e.into()));
                    a.done = true;
                }
            }
        }
    }
}

/// The wire form of a generated token: its text and log-prob, with its alternatives.
fn piece(token: &llm::Token, tokenizer: &Tokenizer) -> Piece {
    Piece {
        text: token.text.clone(),
        logprobs: vec![llm::wire::token_logprob(token, tokenizer)],
    }
}
