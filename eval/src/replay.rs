//! Replaying traces through the three tiers under an `offload` policy.
//!
//! Items are streamed in order. At each tier the replay does exactly what a live tier does, using
//! only `offload`'s public API: it asks [`Policy::route`] before generating; if the policy
//! forwards, the request climbs one tier without generating; otherwise the tier's recorded answer
//! is scored with [`offload::policy::decide`] (which records the confidence in the (tier, task)
//! window and asks the policy), and the answer is kept or the request climbs one tier. The top
//! tier always answers. `reachable` is every tier and `request_key` is the item's position in the
//! stream. Nothing here computes a quantile or compares a threshold.
//!
//! Bytes are counted the way the tiers count them (DESIGN.md §2.2): the request body a tier sends
//! up is the upper tier's recorded request body with `offload.policy` set and `offload.hops`
//! holding the records of the tiers below (each without `bytes`); the response body coming down
//! a link is the answering tier's recorded response body with an `offload` object
//! (`answered_by` and every hop record, where each tier above the link has completed its own
//! record with the bytes it sent and received). The bodies are built with `offload::wire`'s
//! types and serialised with `serde_json`, and their lengths are the link's bytes.

use crate::datasets::{Gold, Item, Layout, Metric};
use crate::metrics;
use crate::traces::{TierTrace, TraceRecord};
use anyhow::{Result, anyhow, bail};
use offload::policy::{PerTier, PolicyKind, RouteInput};
use offload::wire::{HopOutcome, HopRecord, LinkBytes, OffloadResponse, TokenCounts};
use offload::{Action, Decision, PolicySpec, Route, SlidingWindow, Tier, TierSet, Windows};
use serde::Serialize;
use serde_json::Value;

/// One item of a stream with the records of all three tiers.
#[derive(Debug, Clone, Copy)]
pub struct StreamEntry<'a> {
    pub item: &'a Item,
    /// Device, edge, cloud.
    pub records: [&'a TraceRecord; 3],
}

/// The stream of a dataset: its items in file order that all three traces cover.
pub fn stream<'a>(items: &'a [Item], traces: &'a [TierTrace; 3]) -> Vec<StreamEntry<'a>> {
    items
        .iter()
        .filter_map(|item| {
            let get = |t: usize| traces[t].records.get(&item.index);
            Some(StreamEntry {
                item,
                records: [get(0)?, get(1)?, get(2)?],
            })
        })
        .collect()
}

/// What happened to one item under one policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemOutcome {
    /// Position in the stream (the request key).
    pub position: usize,
    pub answered_by: Tier,
    /// Per tier: generated an answer here.
    pub attempted: [bool; 3],
    /// Per tier: generated, was not confident, and sent the request up.
    pub offloaded: [bool; 3],
    /// Bytes on device→edge and edge→cloud (request sent, response received).
    pub links: [LinkBytes; 2],
}

/// A policy replayed over a stream.
#[derive(Debug, Clone)]
pub struct Replay {
    pub name: String,
    pub spec: PolicySpec,
    pub outcomes: Vec<ItemOutcome>,
}

fn body_len(value: &impl Serialize) -> Result<u64> {
    Ok(serde_json::to_vec(value)?.len() as u64)
}

pub fn request_body(base: &Value, spec: &PolicySpec, hops: &[HopRecord]) -> Result<Value> {
    let mut body = base.clone();
    let Value::Object(map) = &mut body else {
        bail!("a recorded request body is not a JSON object");
    };
    let offload = map
        .entry("offload")
        .or_insert_with(|| Value::Object(Default::default()));
    let Value::Object(ext) = offload else {
        bail!("a recorded request body's `offload` is not an object");
    };
    ext.insert("policy".into(), serde_json::to_value(spec)?);
    ext.insert("hops".into(), serde_json::to_value(hops)?);
    Ok(body)
}

fn response_body(base: &Value, ext: &OffloadResponse) -> Result<Value> {
    let mut body = base.clone();
    let Value::Object(map) = &mut body else {
        bail!("a recorded response body is not a JSON object");
    };
    map.insert("offload".into(), serde_json::to_value(ext)?);
    Ok(body)
}

fn tokens(r: &TraceRecord) -> TokenCounts {
    TokenCounts {
        prompt: u32::try_from(r.prompt_tokens).unwrap_or(u32::MAX),
        completion: u32::try_from(r.completion_tokens).unwrap_or(u32::MAX),
    }
}

/// Replays `spec` over `stream`, in order, with fresh windows of the policy's `k` (the
/// default `k` for policies without windows).
pub fn replay(name: &str, spec: &PolicySpec, stream: &[StreamEntry<'_>]) -> Result<Replay> {
    replay_inner(name, spec, stream, false).map(|(r, _)| r)
}

/// The bodies that crossed one link for one item: the request sent up and the response that
/// came back down.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkBodies {
    pub request: Value,
    pub response: Value,
}

/// [`replay`], also returning every body it counted, per item and link (device→edge,
/// edge→cloud); for checking them against the wire types and, later, against a live run.
pub fn replay_with_bodies(
    name: &str,
    spec: &PolicySpec,
    stream: &[StreamEntry<'_>],
) -> Result<(Replay, Vec<[Option<LinkBodies>; 2]>)> {
    replay_inner(name, spec, stream, true)
}

type Bodies = Vec<[Option<LinkBodies>; 2]>;

/// What one tier did with a request under a policy.
#[derive(Debug, Clone)]
pub struct TierStep {
    /// The tier's hop record (no `bytes`, no `timings`).
    pub hop: HopRecord,
    /// It generated an answer (the policy did not forward the request before generating).
    pub attempted: bool,
    /// Where the request goes next; `None` when this tier answers.
    pub up: Option<Tier>,
}

/// One tier's part, as a live tier does it: [`Policy::route`] before generating; a forward
/// climbs without an answer; otherwise `record`'s confidence goes through
/// [`offload::policy::decide`] (the (tier, task) window records it and the policy decides).
/// The replay and the live mode's device tier both take this path.
pub fn tier_step(
    policy: &dyn offload::policy::Policy,
    windows: &mut Windows,
    policy_name: &str,
    tier: Tier,
    task: offload::TaskType,
    record: &TraceRecord,
    key: u64,
) -> Result<TierStep> {
    let route = policy.route(&RouteInput {
        tier,
        task,
        request_key: key,
        reachable: TierSet::ALL,
    });
    if let Route::Forward { to, reason } = route {
        let mut hop = HopRecord::new(tier, &record.model, HopOutcome::Forwarded)
            .with_decision(Decision::offload(to, reason));
        hop.policy = Some(policy_name.to_string());
        return Ok(TierStep {
            hop,
            attempted: false,
            up: Some(to),
        });
    }
    let decision = offload::policy::decide(
        policy,
        windows,
        tier,
        task,
        record.confidence,
        key,
        TierSet::ALL,
    )?;
    let up = match decision.action {
        Action::Answer => None,
        Action::Offload { to } => Some(to),
    };
    let outcome = if up.is_some() {
        HopOutcome::Offloaded
    } else {
        HopOutcome::Answered
    };
    let mut hop = HopRecord::new(tier, &record.model, outcome).with_decision(decision);
    hop.confidence = Some(record.confidence.get());
    hop.policy = Some(policy_name.to_string());
    hop.tokens = Some(tokens(record));
    Ok(TierStep {
        hop,
        attempted: true,
        up,
    })
}

fn replay_inner(
    name: &str,
    spec: &PolicySpec,
    stream: &[StreamEntry<'_>],
    keep: bool,
) -> Result<(Replay, Bodies)> {
    let mut kept: Bodies = Vec::new();
    let policy = spec.build()?;
    let mut windows = match spec.window_size() {
        Some(k) => Windows::new(k)?,
        None => Windows::default(),
    };
    let policy_name = spec.name().to_string();
    let mut outcomes = Vec::with_capacity(stream.len());
    for (position, entry) in stream.iter().enumerate() {
        let key = position as u64;
        let task = entry.item.task;
        let mut hops: Vec<HopRecord> = Vec::new();
        let mut sent = [0u64; 2];
        let mut requests: [Option<Value>; 2] = [None, None];
        let mut attempted = [false; 3];
        let mut offloaded = [false; 3];
        let mut tier = Tier::Device;
        let answered_by = loop {
            let record = entry.records[tier.index()];
            let step = tier_step(
                &*policy,
                &mut windows,
                &policy_name,
                tier,
                task,
                record,
                key,
            )?;
            attempted[tier.index()] = step.attempted;
            let Some(decision_to) = step.up else {
                hops.push(step.hop);
                break tier;
            };
            offloaded[tier.index()] = step.attempted;
            let hop = step.hop;
            // The request climbs one tier at a time (device → edge → cloud); the tier above
            // asks the policy itself, as a live tier does.
            let up = tier
                .next()
                .filter(|&up| up <= decision_to)
                .ok_or_else(|| anyhow!("{policy_name}: {tier} sent a request to {decision_to}"))?;
            hops.push(hop);
            let body = request_body(&entry.records[up.index()].request_body, spec, &hops)?;
            sent[tier.index()] = body_len(&body)?;
            if keep {
                requests[tier.index()] = Some(body);
            }
            tier = up;
        };
        // The answer travels down, each tier completing its own record with its link's bytes.
        let mut ext = OffloadResponse::new(answered_by, hops);
        let mut links = [LinkBytes::default(); 2];
        let mut bodies: [Option<LinkBodies>; 2] = [None, None];
        let base = &entry.records[answered_by.index()].response_body;
        for lower in (0..answered_by.index()).rev() {
            let response = response_body(base, &ext)?;
            let received = body_len(&response)?;
            if keep && let Some(request) = requests[lower].take() {
                bodies[lower] = Some(LinkBodies { request, response });
            }
            links[lower] = LinkBytes {
                sent: sent[lower],
                received,
            };
            if let Some(hop) = ext.hops.get_mut(lower) {
                hop.bytes = Some(links[lower]);
            }
        }
        outcomes.push(ItemOutcome {
            position,
            answered_by,
            attempted,
            offloaded,
            links,
        });
        if keep {
            kept.push(bodies);
        }
    }
    Ok((
        Replay {
            name: name.to_string(),
            spec: spec.clone(),
            outcomes,
        },
        kept,
    ))
}

/// A replay's numbers, as `summary.json` rows report them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub policy: String,
    pub metric: Metric,
    /// Accuracy or exact match in percent, or corpus BLEU in points; `None` without gold.
    pub quality: Option<f64>,
    /// Corpus chrF (translation only).
    pub chrf: Option<f64>,
    pub bytes_device_edge: u64,
    pub bytes_edge_cloud: u64,
    pub bytes_total: u64,
    pub share_device: f64,
    pub share_edge: f64,
    pub share_cloud: f64,
    /// Fraction of the requests a tier generated for that it offloaded (device, edge).
    pub offload_rate: [Option<f64>; 2],
    pub items: usize,
}

/// The metric of a stream: that of its items' layout (all items must share it).
pub fn stream_metric(stream: &[StreamEntry<'_>]) -> Metric {
    let mut metrics = stream.iter().map(|e| e.item.layout.metric());
    match metrics.next() {
        Some(m) if metrics.all(|x| x == m) => m,
        _ => Metric::None,
    }
}

/// Quality of the answers a replay returned.
pub fn quality(replay: &Replay, stream: &[StreamEntry<'_>]) -> (Metric, Option<f64>, Option<f64>) {
    let metric = stream_metric(stream);
    let answers = replay
        .outcomes
        .iter()
        .zip(stream)
        .map(|(o, e)| (e.item, e.records[o.answered_by.index()]));
    match metric {
        Metric::Accuracy => {
            let hits = answers
                .filter(|(item, r)| match (&item.gold, r.choice) {
                    (Gold::Choice(g), Some(c)) => *g == c,
                    (Gold::Choice(g), None) => item.options.get(*g) == Some(&r.prediction),
                    _ => false,
                })
                .count();
            (metric, metrics::percent(hits, stream.len()), None)
        }
        Metric::ExactMatch => {
            let hits = answers
                .filter(|(item, r)| match &item.gold {
                    Gold::Number(g) => metrics::gsm8k_match(&r.prediction, g),
                    _ => false,
                })
                .count();
            (metric, metrics::percent(hits, stream.len()), None)
        }
        Metric::Bleu => {
            let mut hyps = Vec::new();
            let mut refs = Vec::new();
            for (item, r) in answers {
                if let Gold::Reference(g) = &item.gold {
                    hyps.push(r.prediction.as_str());
                    refs.push(vec![g.as_str()]);
                }
            }
            if hyps.is_empty() {
                return (metric, None, None);
            }
            (
                metric,
                Some(metrics::corpus_bleu(&hyps, &refs).score),
                Some(metrics::corpus_chrf(&hyps, &refs)),
            )
        }
        Metric::None => (metric, None, None),
    }
}

/// Offload rate of `tier` over `outcomes`: offloaded / generated there.
pub fn offload_rate(outcomes: &[ItemOutcome], tier: Tier) -> Option<f64> {
    let t = tier.index();
    let attempted = outcomes.iter().filter(|o| o.attempted[t]).count();
    let offloaded = outcomes.iter().filter(|o| o.offloaded[t]).count();
    (attempted > 0).then(|| offloaded as f64 / attempted as f64)
}

pub fn summarize(replay: &Replay, stream: &[StreamEntry<'_>]) -> Summary {
    let (metric, quality, chrf) = quality(replay, stream);
    let n = replay.outcomes.len();
    let sum = |l: usize| -> u64 { replay.outcomes.iter().map(|o| o.links[l].total()).sum() };
    let share = |t: Tier| {
        if n == 0 {
            0.0
        } else {
            replay
                .outcomes
                .iter()
                .filter(|o| o.answered_by == t)
                .count() as f64
                / n as f64
        }
    };
    let (de, ec) = (sum(0), sum(1));
    Summary {
        policy: replay.name.clone(),
        metric,
        quality,
        chrf,
        bytes_device_edge: de,
        bytes_edge_cloud: ec,
        bytes_total: de + ec,
        share_device: share(Tier::Device),
        share_edge: share(Tier::Edge),
        share_cloud: share(Tier::Cloud),
        offload_rate: [
            offload_rate(&replay.outcomes, Tier::Device),
            offload_rate(&replay.outcomes, Tier::Edge),
        ],
        items: n,
    }
}

/// Offload rates per time bucket of `bucket` consecutive items.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BucketRate {
    pub start: usize,
    pub end: usize,
    pub device: Option<f64>,
    pub edge: Option<f64>,
}

pub fn bucket_rates(replay: &Replay, bucket: usize) -> Vec<BucketRate> {
    replay
        .outcomes
        .chunks(bucket.max(1))
        .map(|chunk| BucketRate {
            start: chunk.first().map_or(0, |o| o.position),
            end: chunk.last().map_or(0, |o| o.position + 1),
            device: offload_rate(chunk, Tier::Device),
            edge: offload_rate(chunk, Tier::Edge),
        })
        .collect()
}

/// Splits a stream into a calibration half (even positions) and an evaluation half (odd
/// positions), both in stream order; interleaving keeps the two halves alike.
pub fn split_halves<'a>(
    stream: &[StreamEntry<'a>],
) -> (Vec<StreamEntry<'a>>, Vec<StreamEntry<'a>>) {
    let (cal, eval): (Vec<_>, Vec<_>) = stream.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    (
        cal.into_iter().map(|(_, e)| *e).collect(),
        eval.into_iter().map(|(_, e)| *e).collect(),
    )
}

/// CasServe's fixed thresholds, tuned on a calibration stream: the device threshold is the
/// `rate`-quantile of the device's confidences, and the edge threshold the `rate`-quantile of
/// the edge's confidences on the calibration items the device would have offloaded with that
/// threshold; so on calibration data each tier offloads about a fraction `rate` of what reaches
/// it (β-like rates), and the thresholds then stay fixed. Quantiles come from `offload`'s
/// [`SlidingWindow`] (a window holding all calibration values); a tier with fewer than two
/// calibration values gets threshold 0 (never offloads).
pub fn tune_casserve(calibration: &[StreamEntry<'_>], rate: f64) -> Result<PerTier<f64>> {
    let quantile = |values: Vec<f64>| -> Result<f64> {
        if values.is_empty() {
            return Ok(0.0);
        }
        let w = SlidingWindow::from_values(values.len(), values)?;
        Ok(w.quantile(rate)?.unwrap_or(0.0))
    };
    let device: Vec<f64> = calibration
        .iter()
        .map(|e| e.records[0].confidence.get())
        .collect();
    let t_device = quantile(device)?;
    let edge: Vec<f64> = calibration
        .iter()
        .filter(|e| e.records[0].confidence.get() < t_device)
        .map(|e| e.records[1].confidence.get())
        .collect();
    let t_edge = quantile(edge)?;
    Ok(PerTier {
        device: t_device,
        edge: t_edge,
    })
}

/// The window sizes of the "several k" RecServe runs (β = 0.3); the named `recserve-b*` runs
/// use the paper's k = 10 000.
pub const EXTRA_K: [usize; 3] = [100, 500, 2000];

/// The target offload rate CasServe's thresholds are tuned for, and ColServe's fallback
/// probability.
pub const CASSERVE_RATE: f64 = 0.3;

/// RecServe with the same β on both tiers and window size `k`.
pub fn recserve(beta: f64, k: usize) -> PolicySpec {
    PolicySpec::from(PolicyKind::RecServe {
        beta: PerTier::same(beta),
        k,
    })
}

/// Replays the standard policy set over `evaluation`, with CasServe tuned on `calibration`:
/// `cloudserve`, `edgeserve`, `endserve`, `recserve-b0.1`, `recserve-b0.3`, `recserve-b0.5`
/// (k = 10 000), `recserve-b0.3-k<k>` for each of [`EXTRA_K`], `colserve` (per-tier offload
/// probability equal to `recserve-b0.3`'s measured offload rate at that tier on this stream, or
/// [`CASSERVE_RATE`] where a tier generated nothing; seed 0), and `casserve`
/// ([`tune_casserve`] at [`CASSERVE_RATE`]).
pub fn standard_replays(
    calibration: &[StreamEntry<'_>],
    evaluation: &[StreamEntry<'_>],
) -> Result<Vec<Replay>> {
    let mut out = Vec::new();
    for (name, kind) in [
        ("cloudserve", PolicyKind::CloudServe),
        ("edgeserve", PolicyKind::EdgeServe),
        ("endserve", PolicyKind::EndServe),
    ] {
        out.push(replay(name, &PolicySpec::from(kind), evaluation)?);
    }
    // The paper's k, as `offload`'s default policy specification carries it.
    let paper_k = PolicySpec::default()
        .window_size()
        .unwrap_or(offload::window::DEFAULT_CAPACITY);
    let mut rec03 = None;
    for beta in [0.1, 0.3, 0.5] {
        let r = replay(
            &format!("recserve-b{beta}"),
            &recserve(beta, paper_k),
            evaluation,
        )?;
        if beta == 0.3 {
            rec03 = Some([
                offload_rate(&r.outcomes, Tier::Device),
                offload_rate(&r.outcomes, Tier::Edge),
            ]);
        }
        out.push(r);
    }
    for k in EXTRA_K {
        out.push(replay(
            &format!("recserve-b0.3-k{k}"),
            &recserve(0.3, k),
            evaluation,
        )?);
    }
    let rates = rec03.unwrap_or([None, None]);
    let colserve = PolicySpec::from(PolicyKind::ColServe {
        probability: PerTier {
            device: rates[0].unwrap_or(CASSERVE_RATE),
            edge: rates[1].unwrap_or(CASSERVE_RATE),
        },
        seed: 0,
    });
    out.push(replay("colserve", &colserve, evaluation)?);
    let thresholds = tune_casserve(calibration, CASSERVE_RATE)?;
    out.push(replay(
        "casserve",
        &PolicySpec::from(PolicyKind::CasServe { thresholds }),
        evaluation,
    )?);
    Ok(out)
}

/// Whether a stream's items are all of one layout (mixed streams have no single metric).
pub fn stream_layout(stream: &[StreamEntry<'_>]) -> Option<Layout> {
    let first = stream.first()?.item.layout;
    stream
        .iter()
        .all(|e| e.item.layout == first)
        .then_some(first)
}
