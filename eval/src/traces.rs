//! Traces: what each tier's model did on each item, recorded once and replayed under every
//! policy.
//!
//! # Format
//!
//! A trace file holds the records of **one tier's model on one dataset with one prompt
//! template**. It lives at `target/eval/traces/<key>.jsonl`, where `<key>` is the first 16 hex
//! digits of SHA-256 over `ladder-trace-v2`, the tier, the model file's SHA-256, the prompt
//! template id and the dataset file's SHA-256 (each on its own line): change any of them and a
//! new file is started, so a cache can never be stale. Beside it, `<key>.meta.json` holds those
//! parts in clear ([`TraceMeta`]), including `"synthetic": true` for generated traces, which
//! must never be presented as measurements.
//!
//! Each line is one [`TraceRecord`]: the item, the prediction, its correctness or score, the
//! confidence, the token counts, the compute time, and the two **policy-independent** wire
//! bodies of that tier: the OpenAI request body a client sends it (with `offload.task` and
//! `offload.options`, no hops, no policy) and the OpenAI response body it returns when it answers
//! (without the `offload` object). The bytes actually sent on each link depend on the policy,
//! because every hop appends its record (confidence, threshold, decision) to the request and the
//! response; [`crate::replay`] composes those bodies with `offload::wire`'s types and counts
//! them, exactly as the tiers do.
//!
//! # Resuming
//!
//! [`TraceStore::fill`] appends one line per item and flushes it, so an interrupted run loses
//! at most the line being written; on restart it truncates a torn last line, skips the items
//! already present and continues. Progress is reported through a callback.

use crate::datasets::{Dataset, Gold, Item, Layout, hex};
use anyhow::{Context, Result, anyhow, bail};
use offload::wire::{
    ChatChoice, ChatCompletionRequest, ChatCompletionResponse, ChatMessage, FinishReason,
    OffloadRequest, Usage,
};
use offload::{Confidence, PerplexityAccumulator, Tier};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Part of every trace's cache key: raised when what a trace holds changes, so old files are
/// not mixed with new ones (v2: log-probs normalised with `llm`'s own log-sum-exp).
pub const TRACE_FORMAT: &str = "ladder-trace-v2";

/// One tier's model on one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceRecord {
    /// The item's index in its dataset file ([`Item::index`]).
    pub item: usize,
    /// The item's id, to catch a trace replayed against the wrong file.
    pub id: String,
    pub tier: Tier,
    /// The model id as the tier reports it in hop records.
    pub model: String,
    /// The answer: the chosen option's text, or the generated text.
    pub prediction: String,
    /// The chosen option's index (classification, multiple choice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice: Option<usize>,
    /// Whether the answer is right (tasks with a right answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correct: Option<bool>,
    /// A per-item score where there is no right/wrong (sentence BLEU for translation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// The tier's confidence in its answer (max softmax or `1/(1+PPL)`).
    pub confidence: Confidence,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Time the model took (prefill and decode or option scoring), milliseconds.
    pub compute_ms: f64,
    /// The request body a client sends this tier (no `offload.hops`, no `offload.policy`).
    pub request_body: Value,
    /// The response body this tier returns when it answers (no `offload` object).
    pub response_body: Value,
}

/// The model behind one tier, as a trace source describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The model id (for hop records and tables).
    pub name: String,
    /// Hex SHA-256 of the model file (or of the upstream's name and settings).
    pub sha256: String,
    /// The prompt template's id ([`crate::datasets::PROMPT_TEMPLATE_ID`] or the engine's own).
    pub template_id: String,
    /// True for generated traces: never measurements.
    pub synthetic: bool,
}

/// The sidecar `<key>.meta.json` of a trace file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceMeta {
    pub format: String,
    pub key: String,
    pub tier: Tier,
    pub model: ModelInfo,
    pub dataset: String,
    pub dataset_sha256: String,
    /// Items in the dataset file (the trace may hold fewer, e.g. in quick mode).
    pub dataset_items: usize,
}

/// Where traces come from: an engine that runs each tier's model (the live, `llm`-backed
/// source, still to come), or [`SyntheticSource`] for tests.
pub trait TraceSource {
    /// The model behind `tier` (after [`TraceSource::start_dataset`] for the dataset in hand:
    /// its prompt template id may depend on the dataset, e.g. few-shot exemplars).
    fn model(&self, tier: Tier) -> ModelInfo;
    /// Called before `tier` traces items of `dataset` (an engine feeds its few-shot prefix).
    fn start_dataset(&mut self, _tier: Tier, _dataset: &Dataset) -> Result<()> {
        Ok(())
    }
    /// Runs `tier`'s model once on `item` and records what it did.
    fn trace(&mut self, tier: Tier, item: &Item) -> Result<TraceRecord>;
}

/// The cache key of a trace file.
pub fn trace_key(
    tier: Tier,
    model_sha256: &str,
    template_id: &str,
    dataset_sha256: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [
        TRACE_FORMAT,
        tier.as_str(),
        model_sha256,
        template_id,
        dataset_sha256,
    ] {
        h.update(part.as_bytes());
        h.update(b"\n");
    }
    hex(&h.finalize())[..16].to_string()
}

/// The records of one trace file, by item index.
#[derive(Debug, Clone)]
pub struct TierTrace {
    pub meta: TraceMeta,
    pub records: BTreeMap<usize, TraceRecord>,
}

/// A folder of trace files (`target/eval/traces` by default).
#[derive(Debug, Clone)]
pub struct TraceStore {
    pub dir: PathBuf,
}

/// Reads the records of a trace file. A last line without a newline that does not parse is a
/// torn write and is left out; any other bad line is an error naming `file:line`. Returns the
/// records and the byte length of the good part of the file.
pub fn read_records(path: &Path) -> Result<(Vec<TraceRecord>, u64)> {
    let file = File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut reader = BufReader::new(file);
    let mut records = Vec::new();
    let mut good_len = 0u64;
    let mut buf = String::new();
    let mut line_no = 0;
    loop {
        buf.clear();
        line_no += 1;
        let n = reader
            .read_line(&mut buf)
            .with_context(|| format!("{}:{line_no}: cannot read", path.display()))?;
        if n == 0 {
            break;
        }
        let complete = buf.ends_with('\n');
        if buf.trim().is_empty() {
            good_len += n as u64;
            continue;
        }
        match serde_json::from_str::<TraceRecord>(buf.trim()) {
            Ok(r) if complete => {
                records.push(r);
                good_len += n as u64;
            }
            // No newline: a torn write (even if it parses); left out, and redone by `fill`.
            Ok(_) => break,
            Err(_) if !complete => break,
            Err(e) => bail!("{}:{line_no}: bad trace record: {e}", path.display()),
        }
    }
    Ok((records, good_len))
}

impl TraceStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        TraceStore { dir: dir.into() }
    }

    /// `<workspace root>/target/eval/traces`.
    pub fn default_dir() -> PathBuf {
        crate::datasets::workspace_root()
            .join("target")
            .join("eval")
            .join("traces")
    }

    pub fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.jsonl"))
    }

    pub fn meta_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.meta.json"))
    }

    /// The metadata of every trace file in the folder.
    pub fn list(&self) -> Result<Vec<TraceMeta>> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(out);
        };
        for entry in entries {
            let path = entry?.path();
            if path.to_string_lossy().ends_with(".meta.json") {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("{}", path.display()))?;
                let meta: TraceMeta = serde_json::from_str(&text)
                    .with_context(|| format!("{}: bad trace metadata", path.display()))?;
                out.push(meta);
            }
        }
        out.sort_by(|a, b| (&a.dataset, a.tier, &a.key).cmp(&(&b.dataset, b.tier, &b.key)));
        Ok(out)
    }

    /// Loads a trace file and checks it against `dataset` (same file hash, ids match).
    pub fn load(&self, meta: &TraceMeta, dataset: &Dataset) -> Result<TierTrace> {
        if meta.dataset_sha256 != dataset.sha256 {
            bail!(
                "trace {} was recorded on another version of {} (sha256 {} vs {})",
                meta.key,
                dataset.name,
                meta.dataset_sha256,
                dataset.sha256
            );
        }
        let path = self.path(&meta.key);
        let (records, _) = read_records(&path)?;
        let mut by_item = BTreeMap::new();
        for r in records {
            check_record(&path, &r, meta.tier, dataset)?;
            if by_item.insert(r.item, r).is_some() {
                bail!("{}: item recorded twice", path.display());
            }
        }
        Ok(TierTrace {
            meta: meta.clone(),
            records: by_item,
        })
    }

    /// Makes sure the trace of `tier` on the first `limit` items of `dataset` (all by default)
    /// is complete, running `source` on the items it lacks; appends and flushes one line per
    /// item, so it can be interrupted and resumed. `progress(done, total)` is called after each
    /// item.
    pub fn fill(
        &self,
        source: &mut dyn TraceSource,
        tier: Tier,
        dataset: &Dataset,
        limit: Option<usize>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<TierTrace> {
        let n = limit.unwrap_or(usize::MAX).min(dataset.items.len());
        let items: Vec<usize> = (0..n).collect();
        self.fill_items(source, tier, dataset, &items, progress)
    }

    /// [`TraceStore::fill`] for the items at `indices` of `dataset`, traced in that order (those
    /// already in the file are skipped). `progress(done, total)` counts within `indices`.
    pub fn fill_items(
        &self,
        source: &mut dyn TraceSource,
        tier: Tier,
        dataset: &Dataset,
        indices: &[usize],
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<TierTrace> {
        source.start_dataset(tier, dataset)?;
        let model = source.model(tier);
        let key = trace_key(tier, &model.sha256, &model.template_id, &dataset.sha256);
        let meta = TraceMeta {
            format: TRACE_FORMAT.to_string(),
            key: key.clone(),
            tier,
            model,
            dataset: dataset.name.clone(),
            dataset_sha256: dataset.sha256.clone(),
            dataset_items: dataset.items.len(),
        };
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let meta_path = self.meta_path(&key);
        std::fs::write(&meta_path, serde_json::to_string_pretty(&meta)? + "\n")
            .with_context(|| format!("{}", meta_path.display()))?;

        let path = self.path(&key);
        let mut done = BTreeMap::new();
        if path.exists() {
            let (records, good_len) = read_records(&path)?;
            // Cut a torn last line so that appending continues on a line boundary.
            let mut f = OpenOptions::new().write(true).read(true).open(&path)?;
            let len = f.seek(SeekFrom::End(0))?;
            if len != good_len {
                f.set_len(good_len)?;
            }
            for r in records {
                check_record(&path, &r, tier, dataset)?;
                done.insert(r.item, r);
            }
        }
        let mut items = Vec::with_capacity(indices.len());
        for &i in indices {
            items.push(dataset.items.get(i).ok_or_else(|| {
                anyhow!(
                    "{}: no item {i} (it has {})",
                    dataset.name,
                    dataset.items.len()
                )
            })?);
        }
        let total = items.len();
        let mut out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("{}", path.display()))?;
        let mut count = items.iter().filter(|i| done.contains_key(&i.index)).count();
        for item in items {
            if done.contains_key(&item.index) {
                continue;
            }
            let record = source
                .trace(tier, item)
                .with_context(|| format!("{} item {} ({})", dataset.name, item.index, item.id))?;
            check_record(&path, &record, tier, dataset)?;
            let mut line = serde_json::to_string(&record)?;
            line.push('\n');
            out.write_all(line.as_bytes())?;
            out.flush()?;
            done.insert(item.index, record);
            count += 1;
            progress(count, total);
        }
        Ok(TierTrace {
            meta,
            records: done,
        })
    }
}

fn check_record(path: &Path, r: &TraceRecord, tier: Tier, dataset: &Dataset) -> Result<()> {
    if r.tier != tier {
        bail!(
            "{}: record of item {} is for tier {}, not {tier}",
            path.display(),
            r.item,
            r.tier
        );
    }
    let item = dataset.items.get(r.item).ok_or_else(|| {
        anyhow!(
            "{}: item {} is beyond the {} items of {}",
            path.display(),
            r.item,
            dataset.items.len(),
            dataset.name
        )
    })?;
    if item.id != r.id {
        bail!(
            "{}: item {} has id {:?} in the trace but {:?} in {}",
            path.display(),
            r.item,
            r.id,
            item.id,
            dataset.name
        );
    }
    if !r.compute_ms.is_finite() || r.compute_ms < 0.0 {
        bail!("{}: item {}: bad compute_ms", path.display(), r.item);
    }
    Ok(())
}

/// Reads a whole file into a string with a clear error (used by the CLI for small files).
pub fn read_text(path: &Path) -> Result<String> {
    let mut s = String::new();
    File::open(path)
        .and_then(|mut f| f.read_to_string(&mut s))
        .with_context(|| format!("{}", path.display()))?;
    Ok(s)
}

/// The answer options as they travel in `offload.options`: the label words for classification,
/// and the option **letters** (`A`, `B`, …) for multiple choice, whose texts are listed with
/// their letters in the prompt ([`Item::prompt`]). Letters keep every item within the wire's
/// option rules (at most 256 characters each, no duplicates), which the option texts of 136
/// PIQA items and 136 MMLU test items (127 too long, 9 with duplicates) break.
pub fn wire_options(item: &Item) -> Option<Vec<String>> {
    match item.layout {
        Layout::Classification => Some(item.options.clone()),
        Layout::MultipleChoice => Some(
            (0..item.options.len())
                .map(crate::datasets::option_letter)
                .collect(),
        ),
        _ => None,
    }
}

/// Where a generated answer ends, besides the end of the model's turn.
pub fn stop_strings(item: &Item) -> Vec<String> {
    match item.layout {
        // One line: the prompts end in `en:` and a translation is one segment.
        Layout::Translation => vec!["\n".into()],
        Layout::Gsm8k => vec!["\n\n".into(), "Question:".into()],
        _ => Vec::new(),
    }
}

/// The OpenAI chat request a client sends a tier for `item`: the prompt as one user message,
/// `max_tokens`, and `offload.task` (with [`wire_options`]); for generation, `temperature` 0
/// and the task's [`stop_strings`]. This is a trace record's
/// policy-independent `request_body`. It does not ask for `logprobs`: every tier computes its
/// own confidence and reports it in its hop record, so no tier needs the log-probs of the tiers
/// above, and [`client_response`] carries none (asking for them would add them to every
/// response on the way down, and to the bytes counted).
pub fn client_request(item: &Item, model: &str, max_tokens: u32) -> ChatCompletionRequest {
    let mut request = ChatCompletionRequest::new(vec![ChatMessage::user(item.prompt())]);
    request.model = Some(model.to_string());
    request.max_tokens = Some(max_tokens);
    if wire_options(item).is_none() {
        // Generation is greedy, and ends where the task's answer ends; a serving tier does
        // what the request says, so both are in it (OpenAI's default temperature is 1).
        request.temperature = Some(0.0);
        let stop = stop_strings(item);
        if !stop.is_empty() {
            request.stop = Some(offload::wire::Stop::Many(stop));
        }
    }
    request.offload = Some(match wire_options(item) {
        Some(options) => OffloadRequest::with_options(item.task, options),
        None => OffloadRequest::new(item.task),
    });
    request
}

/// The OpenAI chat response a tier returns with `answer` (without the `offload` object): a
/// trace record's policy-independent `response_body`.
pub fn client_response(
    id: &str,
    model: &str,
    answer: &str,
    prompt_tokens: u64,
    completion_tokens: u64,
) -> ChatCompletionResponse {
    let choice = ChatChoice {
        index: 0,
        message: ChatMessage::new(offload::wire::Role::Assistant, answer),
        logprobs: None,
        finish_reason: Some(FinishReason::Stop),
    };
    let mut response = ChatCompletionResponse::new(id, 0, model, choice);
    let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    response.usage = Some(Usage::new(clamp(prompt_tokens), clamp(completion_tokens)));
    response
}

/// What a model produced for one item, before it becomes a [`TraceRecord`]: what the
/// engine-backed source measures.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelOutput {
    /// Option-scoring tasks: one score (logit or summed log-prob) per option, in option order.
    OptionScores(Vec<f64>),
    /// Generation tasks: the text and the natural-log probability of each generated token.
    Generation { text: String, logprobs: Vec<f64> },
}

/// Measured costs of one model call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CallCost {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub compute_ms: f64,
}

/// Builds a [`TraceRecord`] from a model's raw output, with the confidence of DESIGN.md §1.1
/// computed by `offload` (`pick`/max softmax over option scores, `1/(1+PPL)` over token
/// log-probs), correctness by this crate's metrics (option = gold, GSM8K final number, sentence
/// BLEU as the per-item score of a translation), and the bodies of [`client_request`] /
/// [`client_response`]. Errors (no options, non-finite scores, no tokens) name the item.
pub fn record_from_output(
    tier: Tier,
    model: &str,
    item: &Item,
    output: ModelOutput,
    cost: CallCost,
    max_tokens: u32,
) -> Result<TraceRecord> {
    let what = || format!("item {} ({})", item.index, item.id);
    let (prediction, choice, confidence, answer) = match output {
        ModelOutput::OptionScores(scores) => {
            if scores.len() != item.options.len() {
                bail!(
                    "{}: {} scores for {} options",
                    what(),
                    scores.len(),
                    item.options.len()
                );
            }
            let (c, confidence) = offload::confidence::pick(&scores).with_context(what)?;
            let text = item.options.get(c).cloned().unwrap_or_default();
            let answer = match item.layout {
                Layout::MultipleChoice => crate::datasets::option_letter(c),
                _ => text.clone(),
            };
            (text, Some(c), confidence, answer)
        }
        ModelOutput::Generation { text, logprobs } => {
            let confidence = PerplexityAccumulator::from_logprobs(logprobs)
                .and_then(|acc| acc.confidence())
                .with_context(what)?;
            (text.clone(), None, confidence, text)
        }
    };
    let (correct, score) = match (&item.gold, choice) {
        (Gold::Choice(g), Some(c)) => (Some(*g == c), None),
        (Gold::Number(g), _) => (Some(crate::metrics::gsm8k_match(&prediction, g)), None),
        (Gold::Reference(r), _) => (
            None,
            Some(crate::metrics::sentence_bleu(&prediction, &[r]).score),
        ),
        _ => (None, None),
    };
    if !cost.compute_ms.is_finite() || cost.compute_ms < 0.0 {
        bail!("{}: compute time {} ms", what(), cost.compute_ms);
    }
    Ok(TraceRecord {
        item: item.index,
        id: item.id.clone(),
        tier,
        model: model.to_string(),
        prediction,
        choice,
        correct,
        score,
        confidence,
        prompt_tokens: cost.prompt_tokens,
        completion_tokens: cost.completion_tokens,
        compute_ms: cost.compute_ms,
        request_body: serde_json::to_value(client_request(item, model, max_tokens))?,
        response_body: serde_json::to_value(client_response(
            &format!("{}-{}-{}", tier, model, item.index),
            model,
            &answer,
            cost.prompt_tokens,
            cost.completion_tokens,
        ))?,
    })
}

/// **Synthetic** traces, for tests and for exercising the pipeline before an engine exists.
/// Nothing here is measured: every number is drawn from a seeded hash, and [`ModelInfo::synthetic`]
/// is set, so the metadata says so.
///
/// Each item gets a difficulty `d ∈ [0, 1)`; a tier answers correctly when `d < skill` (so a
/// stronger tier is right wherever a weaker one is). Confidence is higher for right answers than
/// for wrong ones (drawn from `[0.35, 1)` vs `[0, 0.75)` before mapping to the task's range:
/// `[1/n, 1]` for `n` options, `(0, 0.5]` for generation), and items at or after `shift_at` get
/// their confidences multiplied by `shift_factor` (a drop in confidence midway, for the shift
/// experiment).
#[derive(Debug, Clone)]
pub struct SyntheticSource {
    pub seed: u64,
    /// Probability of a right answer per tier (device, edge, cloud).
    pub skill: [f64; 3],
    pub shift_at: Option<usize>,
    pub shift_factor: f64,
}

impl Default for SyntheticSource {
    fn default() -> Self {
        SyntheticSource {
            seed: 1,
            skill: [0.6, 0.75, 0.9],
            shift_at: None,
            shift_factor: 1.0,
        }
    }
}

/// SplitMix64, as a stateless hash.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform draw in `[0, 1)` from a hash of the parts.
pub fn unit(parts: &[u64]) -> f64 {
    let h = parts
        .iter()
        .fold(0x5EED_u64, |acc, &p| splitmix64(acc ^ splitmix64(p)));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

const SYNTHETIC_MODELS: [&str; 3] = ["synthetic-device", "synthetic-edge", "synthetic-cloud"];

impl SyntheticSource {
    /// The record of `tier` on `item`, at stream position `position` (used for the shift).
    pub fn record(&self, tier: Tier, item: &Item, position: usize) -> Result<TraceRecord> {
        let t = tier.index() as u64;
        let i = item.index as u64;
        let difficulty = unit(&[self.seed, i, 1]);
        let correct = difficulty < self.skill[tier.index()];
        let u = unit(&[self.seed, i, 2 + t]);
        let mut raw = if correct { 0.35 + 0.65 * u } else { 0.75 * u };
        if self.shift_at.is_some_and(|s| position >= s) {
            raw *= self.shift_factor;
        }
        let raw = raw.clamp(0.0, 1.0);
        let model = SYNTHETIC_MODELS[tier.index()].to_string();
        let (prediction, choice, score, conf) = match (&item.gold, item.options.len()) {
            (Gold::Choice(g), n) if n > 0 => {
                let c = if correct { *g } else { (*g + 1) % n };
                let floor = 1.0 / n as f64;
                let text = item.options.get(c).cloned().unwrap_or_default();
                (text, Some(c), None, floor + (1.0 - floor) * raw)
            }
            (Gold::Reference(r), _) => {
                let text = if correct {
                    r.clone()
                } else {
                    // Drop every other word: a plausible but worse translation.
                    r.split(' ')
                        .enumerate()
                        .filter(|(k, _)| k % 2 == 0)
                        .map(|(_, w)| w)
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                let s = crate::metrics::sentence_bleu(&text, &[r]).score;
                (text, None, Some(s), (0.5 * raw).max(1e-6))
            }
            (Gold::Number(g), _) => {
                let text = if correct {
                    format!("The answer is {g}.\n#### {g}")
                } else {
                    format!("The answer is {g}1.\n#### {g}1")
                };
                (text, None, None, (0.5 * raw).max(1e-6))
            }
            _ => (
                format!("(synthetic answer by {model})"),
                None,
                None,
                (0.5 * raw).max(1e-6),
            ),
        };
        let prompt = item.prompt();
        let prompt_tokens = (prompt.len() as u64).div_ceil(4);
        let completion_tokens = if choice.is_some() {
            1
        } else {
            (prediction.len() as u64).div_ceil(4)
        };
        let ms_per_token = [2.0, 1.0, 0.5][tier.index()];
        let compute_ms = ((prompt_tokens + 4 * completion_tokens) as f64 * ms_per_token * 1000.0)
            .round()
            / 1000.0;
        let max_tokens = if choice.is_some() { 1 } else { 256 };
        let request_body = serde_json::to_value(client_request(item, &model, max_tokens))?;
        // Multiple choice answers with the option's letter, as the prompt asks.
        let answer = match (item.layout, choice) {
            (Layout::MultipleChoice, Some(c)) => crate::datasets::option_letter(c),
            _ => prediction.clone(),
        };
        let response_body = serde_json::to_value(client_response(
            &format!("synthetic-{}-{}", tier, item.index),
            &model,
            &answer,
            prompt_tokens,
            completion_tokens,
        ))?;
        let has_gold = !matches!(item.gold, Gold::None);
        Ok(TraceRecord {
            item: item.index,
            id: item.id.clone(),
            tier,
            model,
            prediction,
            choice,
            correct: (has_gold && item.layout != Layout::Translation).then_some(correct),
            score,
            confidence: Confidence::new(conf.clamp(0.0, 1.0))?,
            prompt_tokens,
            completion_tokens,
            compute_ms,
            request_body,
            response_body,
        })
    }
}

impl TraceSource for SyntheticSource {
    fn model(&self, tier: Tier) -> ModelInfo {
        let name = SYNTHETIC_MODELS[tier.index()];
        ModelInfo {
            name: name.to_string(),
            sha256: hex(&Sha256::digest(
                format!(
                    "{name} seed={} skill={:?} shift={:?}x{}",
                    self.seed, self.skill, self.shift_at, self.shift_factor
                )
                .as_bytes(),
            )),
            template_id: crate::datasets::PROMPT_TEMPLATE_ID.to_string(),
            synthetic: true,
        }
    }

    fn trace(&mut self, tier: Tier, item: &Item) -> Result<TraceRecord> {
        self.record(tier, item, item.index)
    }
}
