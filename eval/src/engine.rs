//! The engine-backed trace source: every tier's model run in-process with `llm`, natively, once
//! per item, answering the same OpenAI request body a client would send that tier.
//!
//! A tier here is what a serving tier does with a request, without the transport: it renders the
//! request's messages into a prompt ([`PromptStyle`]: the model's chat template, or plain
//! completion text for base models), optionally after a fixed **few-shot prefix** (exemplars
//! from the same dataset file, fed once and forked for every item), then either scores the
//! request's `offload.options` as continuations (classification, multiple choice; confidence
//! = max softmax over the scores, by `offload`) or generates greedily (translation and other
//! generation; confidence = `1/(1+PPL)` over the generated tokens, by `offload`'s
//! [`offload::PerplexityAccumulator`]). [`crate::traces::record_from_output`] turns that into a
//! trace record with the wire bodies.
//!
//! Exemplar items are **reserved**: [`EngineSource::reserved`] names them, and the runner leaves
//! them out of every tier's trace, so no policy is ever scored on an item some tier saw with its
//! answer.

use crate::datasets::{Dataset, Gold, Item, Layout, hex};
use crate::traces::{
    CallCost, ModelInfo, ModelOutput, TraceRecord, TraceSource, client_request, record_from_output,
    wire_options,
};
use anyhow::{Context, Result, anyhow, bail};
use llm::generate::{Decoder, FinishReason, SamplingParams, score_options_after};
use llm::models::ModelOptions;
use llm::{ChatTemplate, EncodeOptions, Message, Model, Segment, Session, TokenId};
use offload::Tier;
use offload::wire::ChatCompletionRequest;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How a tier turns a request's messages into the model's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum PromptStyle {
    /// The model's own chat template (instruction-tuned models): the messages as turns, then an
    /// open assistant turn; options are scored as the start of the assistant's answer.
    Chat,
    /// Plain text (base models): the message contents joined by blank lines; the item prompts end
    /// in `Answer:` (or `en:`), and options are scored as `" " + option`.
    Completion,
}

impl PromptStyle {
    pub fn as_str(self) -> &'static str {
        match self {
            PromptStyle::Chat => "chat",
            PromptStyle::Completion => "completion",
        }
    }
}

/// One tier's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct TierConfig {
    /// A GGUF file.
    pub model: PathBuf,
    pub style: PromptStyle,
    /// Few-shot exemplars put before every prompt (0: zero-shot).
    pub shots: usize,
}

/// The default prompting per tier (device, edge, cloud): every tier renders the request with
/// its model's chat template, as the serving tiers (`cloud-host`, `edge-fn`, the browser) do,
/// so a live run through the deployment can be compared with these traces. (For Gemma-3-270M, a
/// base model, plain completion prompts were no better on SST-2 in a 40-item probe: 50–65%
/// either way, near chance.)
pub const DEFAULT_STYLES: [PromptStyle; 3] = [PromptStyle::Chat; 3];

/// The default few-shot exemplars per tier. The cloud tier runs the same Gemma-3-270M file as
/// the edge (the largest model that can be fetched here), so its default is the strongest
/// setting that model allows: few-shot prompting.
pub const DEFAULT_SHOTS: [usize; 3] = [0, 0, 4];

/// The default model files of the tiers, in the model cache (`$LADDER_MODELS`, else
/// `$XDG_CACHE_HOME/ladder/models` or `~/.cache/ladder/models`): SmolLM2-135M-Instruct Q4_1
/// for the device, Gemma-3-270M Q4_K_M for the edge, and for the cloud the largest GGUF that
/// the cache's `models.json` lists.
pub fn default_models() -> Result<[PathBuf; 3]> {
    let dir = models_dir()?;
    let device = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let edge = dir.join("gemma-3-270m-q4_k_m.gguf");
    let manifest = dir.join("models.json");
    let text = std::fs::read_to_string(&manifest).with_context(|| {
        format!(
            "{} (fetch the default models with `cargo xtask models`)",
            manifest.display()
        )
    })?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", manifest.display()))?;
    let cloud = json["models"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|m| m["files"].as_array().into_iter().flatten())
        .filter_map(|f| Some((f["path"].as_str()?, f["bytes"].as_u64()?)))
        .filter(|(p, _)| p.ends_with(".gguf"))
        .max_by_key(|(_, bytes)| *bytes)
        .map(|(p, _)| PathBuf::from(p))
        .ok_or_else(|| anyhow!("{} lists no GGUF file", manifest.display()))?;
    for path in [&device, &edge, &cloud] {
        if !path.is_file() {
            bail!(
                "model file {} is missing (fetch the default models with `cargo xtask models`)",
                path.display()
            );
        }
    }
    Ok([device, edge, cloud])
}

/// The model cache folder.
pub fn models_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("LADDER_MODELS") {
        return Ok(PathBuf::from(dir));
    }
    let base = match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(
            std::env::var_os("HOME")
                .ok_or_else(|| anyhow!("neither LADDER_MODELS nor HOME is set"))?,
        )
        .join(".cache"),
    };
    Ok(base.join("ladder").join("models"))
}

/// The version of the engine's prompting (part of every trace key with the tier's style,
/// shots and exemplar ids): change the way prompts are built and this must change.
pub const ENGINE_TEMPLATE_ID: &str = "ladder-engine-v2";

/// Few-shot exemplars are picked among the first this many items of each answer class (the
/// shortest of them), so that the prefix stays short and the pick does not depend on the file's
/// length.
const EXEMPLAR_POOL: usize = 64;

/// The items of `dataset` used as few-shot exemplars for `shots` shots: round-robin over the gold
/// answer's class (the label or option index, so that the exemplars do not all share one
/// answer), within each class the shortest of its first [`EXEMPLAR_POOL`] items in file order;
/// returned in the order they appear in the prompt.
pub fn exemplars(dataset: &Dataset, shots: usize) -> Vec<usize> {
    if shots == 0 {
        return Vec::new();
    }
    let class = |item: &Item| match &item.gold {
        Gold::Choice(c) => *c,
        _ => 0,
    };
    let classes = dataset.items.iter().map(class).max().map_or(0, |m| m + 1);
    let mut pools: Vec<Vec<&Item>> = vec![Vec::new(); classes];
    for item in &dataset.items {
        let pool = &mut pools[class(item)];
        if pool.len() < EXEMPLAR_POOL {
            pool.push(item);
        }
    }
    for pool in &mut pools {
        // Shortest first; file order among equals. Reversed, so `pop` takes the next one.
        pool.sort_by_key(|i| (i.prompt().len(), i.index));
        pool.reverse();
    }
    let mut picked = Vec::new();
    while picked.len() < shots && pools.iter().any(|p| !p.is_empty()) {
        for pool in &mut pools {
            if picked.len() == shots {
                break;
            }
            if let Some(item) = pool.pop() {
                picked.push(item.index);
            }
        }
    }
    picked
}

/// The text of an exemplar's gold answer, as the model should continue its prompt.
fn gold_answer(item: &Item) -> Option<String> {
    match &item.gold {
        Gold::Choice(c) => wire_options(item)?.get(*c).cloned(),
        Gold::Reference(r) => Some(r.clone()),
        Gold::Number(n) => Some(n.clone()),
        Gold::None => None,
    }
}

/// The most tokens a tier may generate for `item` (it is also the request's `max_tokens`).
pub fn max_tokens(item: &Item) -> u32 {
    match item.layout {
        Layout::Classification | Layout::MultipleChoice => 1,
        // About twice the tokens a translation needs (≈ 4 characters per token).
        Layout::Translation => u32::try_from(item.text.chars().count() / 2)
            .unwrap_or(u32::MAX)
            .clamp(32, 256),
        Layout::Gsm8k | Layout::Chat => 256,
    }
}

/// The SHA-256 of a model file: from `models.json` in the model cache when the file is listed
/// there with its size, else computed.
pub fn model_sha256(path: &Path) -> Result<(String, Option<String>)> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("model file {}", path.display()))?
        .len();
    if let Some(dir) = path.parent()
        && let Ok(text) = std::fs::read_to_string(dir.join("models.json"))
        && let Ok(manifest) = serde_json::from_str::<serde_json::Value>(&text)
    {
        for model in manifest["models"].as_array().into_iter().flatten() {
            for file in model["files"].as_array().into_iter().flatten() {
                let same = file["path"].as_str().is_some_and(|p| Path::new(p) == path)
                    && file["bytes"].as_u64() == Some(len);
                if same && let Some(sha) = file["sha256"].as_str() {
                    return Ok((sha.to_string(), model["id"].as_str().map(str::to_string)));
                }
            }
        }
    }
    let mut file =
        std::fs::File::open(path).with_context(|| format!("model file {}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut file, &mut h).with_context(|| format!("reading {}", path.display()))?;
    Ok((hex(&h.finalize()), None))
}

/// The few-shot exemplars of one tier on one dataset.
#[derive(Clone)]
struct Shots {
    dataset_sha256: String,
    dataset: String,
    ids: Vec<usize>,
    /// The exemplars as turns (their prompts as the user's, their gold answers as the
    /// assistant's).
    messages: Vec<Message>,
}

/// The prompt prefix of one tier on one dataset, fed once.
struct Prefix {
    /// The prefix's token count.
    tokens: usize,
    /// The session after the prefix (empty when there is no prefix and no BOS).
    session: Session,
}

/// One tier's loaded model and prompting.
struct TierEngine {
    config: TierConfig,
    model: Model,
    chat: Option<ChatTemplate>,
    name: String,
    sha256: String,
    /// The exemplars of the dataset being traced ([`TraceSource::start_dataset`]).
    shots: Option<Shots>,
    /// Fed prefixes, by dataset file hash (fed when the first item of a dataset is traced).
    prefixes: std::collections::HashMap<String, Prefix>,
}

/// The engine-backed [`TraceSource`]: the three tiers' models (a file named by two tiers is
/// loaded once).
pub struct EngineSource {
    tiers: Vec<TierEngine>,
}

impl EngineSource {
    /// Loads the three tiers' models (device, edge, cloud), with `threads` kernel threads
    /// (default: `$LADDER_THREADS`, else every core).
    pub fn load(configs: [TierConfig; 3], threads: Option<usize>) -> Result<Self> {
        let mut tiers: Vec<TierEngine> = Vec::new();
        for (tier, config) in Tier::ALL.into_iter().zip(configs) {
            let shared = tiers.iter().find(|t| t.config.model == config.model);
            let (model, chat, name, sha256) = match shared {
                Some(t) => (
                    t.model.clone(),
                    t.chat.clone(),
                    t.name.clone(),
                    t.sha256.clone(),
                ),
                None => {
                    let path = &config.model;
                    let model = Model::load_with(
                        path,
                        &ModelOptions {
                            threads,
                            ..Default::default()
                        },
                    )
                    .with_context(|| format!("{tier} model {}", path.display()))?;
                    let chat = llm::Gguf::open(path)
                        .ok()
                        .and_then(|g| ChatTemplate::for_model(&g).ok());
                    let (sha256, id) = model_sha256(path)?;
                    let name = id.unwrap_or_else(|| model.name().to_string());
                    (model, chat, name, sha256)
                }
            };
            if config.style == PromptStyle::Chat && chat.is_none() {
                bail!(
                    "{tier}: {} has no chat template this engine renders; use the completion \
                     prompt style",
                    config.model.display()
                );
            }
            tiers.push(TierEngine {
                config,
                model,
                chat,
                name,
                sha256,
                shots: None,
                prefixes: Default::default(),
            });
        }
        Ok(EngineSource { tiers })
    }

    fn engine(&mut self, tier: Tier) -> Result<&mut TierEngine> {
        self.tiers
            .get_mut(tier.index())
            .ok_or_else(|| anyhow!("no engine for tier {tier}"))
    }

    /// The tiers' configurations (device, edge, cloud).
    pub fn configs(&self) -> Vec<&TierConfig> {
        self.tiers.iter().map(|t| &t.config).collect()
    }
}

impl TierEngine {
    /// The message texts of an item's request (one user message).
    fn messages(request: &ChatCompletionRequest) -> Vec<Message> {
        request
            .messages
            .iter()
            .map(|m| {
                let role = match m.role {
                    offload::wire::Role::System => llm::Role::System,
                    offload::wire::Role::Assistant => llm::Role::Assistant,
                    _ => llm::Role::User,
                };
                Message::new(role, m.text().into_owned())
            })
            .collect()
    }

    /// The exemplars as conversation turns: their prompt as the user, their gold answer as the
    /// assistant.
    fn exemplar_messages(dataset: &Dataset, ids: &[usize]) -> Vec<Message> {
        let mut out = Vec::new();
        for &i in ids {
            if let Some(item) = dataset.items.get(i)
                && let Some(answer) = gold_answer(item)
            {
                out.push(Message::user(item.prompt()));
                out.push(Message::assistant(answer));
            }
        }
        out
    }

    /// Completion text of a conversation: the contents in order, each assistant answer after a
    /// space (it continues `Answer:`), exchanges separated by a blank line.
    fn completion_text(messages: &[Message]) -> String {
        let mut text = String::new();
        for m in messages {
            match m.role {
                llm::Role::Assistant => {
                    text.push(' ');
                    text.push_str(&m.content);
                    text.push_str("\n\n");
                }
                _ => text.push_str(&m.content),
            }
        }
        text
    }

    /// Picks the exemplars for `dataset` (cheap; the prefix is fed when the first item needs it).
    fn start(&mut self, dataset: &Dataset) {
        if self
            .shots
            .as_ref()
            .is_some_and(|s| s.dataset_sha256 == dataset.sha256)
        {
            return;
        }
        let ids = exemplars(dataset, self.config.shots);
        let messages = Self::exemplar_messages(dataset, &ids);
        self.shots = Some(Shots {
            dataset_sha256: dataset.sha256.clone(),
            dataset: dataset.name.clone(),
            ids,
            messages,
        });
    }

    /// Feeds the few-shot prefix of the current dataset, once.
    fn feed_prefix(&mut self) -> Result<()> {
        let shots = self
            .shots
            .as_ref()
            .ok_or_else(|| anyhow!("internal: no dataset was started"))?;
        if !self.prefixes.contains_key(&shots.dataset_sha256) {
            let tok = self.model.tokenizer();
            let tokens = match (self.config.style, &self.chat) {
                (PromptStyle::Chat, Some(chat)) => {
                    // The exemplar turns are a prefix of the whole conversation's segments.
                    let segments = chat.segments(&shots.messages, false);
                    tok.encode_segments(&segments, true)
                }
                _ => {
                    let text = Self::completion_text(&shots.messages);
                    tok.encode_segments(
                        &[Segment {
                            text: &text,
                            trusted: false,
                        }],
                        true,
                    )
                }
            };
            let mut session = self.model.session();
            if !tokens.is_empty() {
                session
                    .feed(&tokens)
                    .with_context(|| format!("feeding the few-shot prefix of {}", shots.dataset))?;
            }
            self.prefixes.insert(
                shots.dataset_sha256.clone(),
                Prefix {
                    tokens: tokens.len(),
                    session,
                },
            );
        }
        Ok(())
    }

    /// The prompt's tokens after the prefix.
    fn item_tokens(
        &self,
        request: &ChatCompletionRequest,
        prefix: &Prefix,
        shots: &Shots,
    ) -> Vec<TokenId> {
        let tok = self.model.tokenizer();
        let messages = Self::messages(request);
        let add_special = prefix.tokens == 0;
        match (self.config.style, &self.chat) {
            (PromptStyle::Chat, Some(chat)) => {
                // The conversation is the exemplar turns and then the request's; the segments
                // of the exemplar turns alone are a prefix of its segments.
                let skip = chat.segments(&shots.messages, false).len();
                let all: Vec<Message> = shots.messages.iter().cloned().chain(messages).collect();
                let segments = chat.segments(&all, true);
                tok.encode_segments(&segments[skip.min(segments.len())..], add_special)
            }
            _ => {
                let text = Self::completion_text(&messages);
                tok.encode_segments(
                    &[Segment {
                        text: &text,
                        trusted: false,
                    }],
                    add_special,
                )
            }
        }
    }

    /// An option as the model continues the prompt with it.
    fn continuation(&self, option: &str) -> String {
        match self.config.style {
            PromptStyle::Chat => option.to_string(),
            PromptStyle::Completion => format!(" {option}"),
        }
    }

    /// Answers `request` (built for an item) after the prefix: option scores or a generation,
    /// with its measured cost.
    fn answer(&mut self, request: &ChatCompletionRequest) -> Result<(ModelOutput, CallCost)> {
        self.feed_prefix()?;
        let engine = &*self;
        let shots = engine
            .shots
            .as_ref()
            .ok_or_else(|| anyhow!("internal: no dataset was started"))?;
        let prefix = engine
            .prefixes
            .get(&shots.dataset_sha256)
            .ok_or_else(|| anyhow!("internal: the prefix was not fed"))?;
        engine.answer_after(request, prefix, shots)
    }

    fn answer_after(
        &self,
        request: &ChatCompletionRequest,
        prefix: &Prefix,
        shots: &Shots,
    ) -> Result<(ModelOutput, CallCost)> {
        let start = Instant::now();
        let tokens = self.item_tokens(request, prefix, shots);
        if tokens.is_empty() {
            bail!("the prompt is empty");
        }
        let mut session = prefix.session.clone();
        let logits = session.feed(&tokens).context("prefill")?;
        let prompt_tokens = (prefix.tokens + tokens.len()) as u64;
        let options = request.offload.as_ref().and_then(|o| o.options.clone());
        let (output, completion_tokens) = match options {
            Some(options) => {
                let tok = self.model.tokenizer();
                let encoded: Vec<Vec<TokenId>> = options
                    .iter()
                    .map(|o| tok.encode(&self.continuation(o), EncodeOptions::TEXT))
                    .collect();
                let scores = score_options_after(&session, logits, &encoded)?;
                // An option is chosen, not generated: no completion tokens, as the serving
                // tiers report it.
                (ModelOutput::OptionScores(scores), 0)
            }
            None => {
                let (text, logprobs, n) = self.generate(request, session, logits)?;
                (ModelOutput::Generation { text, logprobs }, n)
            }
        };
        let cost = CallCost {
            prompt_tokens,
            completion_tokens,
            compute_ms: start.elapsed().as_secs_f64() * 1000.0,
        };
        Ok((output, cost))
    }

    /// Greedy decoding until a stop string, the end of the turn or `max_tokens`; returns the text,
    /// the log-probs of the tokens that make up the answer, and the tokens generated.
    fn generate(
        &self,
        request: &ChatCompletionRequest,
        mut session: Session,
        logits: Vec<f32>,
    ) -> Result<(String, Vec<f64>, u64)> {
        let tok = self.model.tokenizer();
        let mut stop = request.stop_sequences().to_vec();
        if let (PromptStyle::Chat, Some(chat)) = (self.config.style, &self.chat) {
            stop.push(chat.end_of_turn().to_string());
        }
        let max = request.max_output_tokens().unwrap_or(256) as usize;
        let mut decoder = Decoder::new(SamplingParams {
            max_tokens: max,
            stop,
            ..Default::default()
        });
        let mut next = Some(logits);
        let mut text = String::new();
        let mut tokens: Vec<f64> = Vec::new();
        while let Some(logits) = next.take() {
            let Some(token) = decoder.next_token(logits, tok)? else {
                break;
            };
            text.push_str(&token.text);
            tokens.push(f64::from(token.logprob));
            if decoder.finish_reason().is_none() {
                match session.feed(&[token.id]) {
                    Ok(l) => next = Some(l),
                    Err(llm::Error::ContextFull { .. }) => {
                        text.push_str(&decoder.end(FinishReason::Length));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        // Every generated token counts towards the confidence, the one that ended the answer
        // (end of turn, or a stop string starting in it) included, as the serving tiers count
        // it (`cloud-host`, `edge-fn`, the browser): the live mode checks that they agree.
        let generated = tokens.len() as u64;
        let text = text.trim().to_string();
        Ok((text, tokens, generated))
    }
}

impl EngineSource {
    /// The items none of the tiers may be evaluated on in `dataset`: every tier's few-shot
    /// exemplars.
    pub fn reserved(&self, dataset: &Dataset) -> Vec<usize> {
        let mut out: Vec<usize> = self
            .tiers
            .iter()
            .flat_map(|t| exemplars(dataset, t.config.shots))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

impl TraceSource for EngineSource {
    fn model(&self, tier: Tier) -> ModelInfo {
        let Some(t) = self.tiers.get(tier.index()) else {
            return ModelInfo {
                name: String::new(),
                sha256: String::new(),
                template_id: String::new(),
                synthetic: false,
            };
        };
        let exemplars = t.shots.as_ref().map_or(Vec::new(), |s| s.ids.clone());
        ModelInfo {
            name: t.name.clone(),
            sha256: t.sha256.clone(),
            template_id: format!(
                "{ENGINE_TEMPLATE_ID}+{}+{}+{}-shot{:?}",
                crate::datasets::PROMPT_TEMPLATE_ID,
                t.config.style.as_str(),
                t.config.shots,
                exemplars
            ),
            synthetic: false,
        }
    }

    fn start_dataset(&mut self, tier: Tier, dataset: &Dataset) -> Result<()> {
        self.engine(tier)?.start(dataset);
        Ok(())
    }

    fn trace(&mut self, tier: Tier, item: &Item) -> Result<TraceRecord> {
        let engine = self.engine(tier)?;
        let max = max_tokens(item);
        let request = client_request(item, &engine.name, max);
        let (output, cost) = engine.answer(&request)?;
        record_from_output(tier, &engine.name, item, output, cost, max)
    }
}
