//! The whole evaluation: traces → replays → `summary.json`, tables, plots.

use crate::datasets::Dataset;
use crate::replay::{
    self, Replay, StreamEntry, bucket_rates, offload_rate, split_halves, standard_replays,
    summarize,
};
use crate::report::{
    DatasetReport, ShiftReport, ShiftSeries, SummaryFile, markdown, shift_markdown,
};
use crate::traces::{SyntheticSource, TierTrace, TraceMeta, TraceStore};
use anyhow::{Context, Result, bail};
use offload::policy::{PerTier, PolicyKind};
use offload::{PolicySpec, Tier};
use std::path::{Path, PathBuf};

/// What to evaluate and where to write it.
#[derive(Debug, Clone)]
pub struct Options {
    /// Results folder (`target/eval` by default): `summary.json`, `tables.md`, `shift.json`,
    /// `plots/*.svg`.
    pub out: PathBuf,
    /// At most this many items per dataset (quick mode).
    pub quick: Option<usize>,
    /// Items per time bucket in the shift experiment.
    pub bucket: usize,
    /// Shift streams: (first dataset, second dataset).
    pub shifts: Vec<(String, String)>,
    /// Per tier (device, edge, cloud): only traces whose model name contains this text or whose
    /// model hash starts with it.
    pub model_filter: [Option<String>; 3],
    /// Only the trace files with these keys (what an engine run just filled).
    pub only_keys: Option<Vec<String>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            out: crate::datasets::workspace_root()
                .join("target")
                .join("eval"),
            quick: None,
            bucket: 100,
            shifts: vec![],
            model_filter: [None, None, None],
            only_keys: None,
        }
    }
}

/// The default shift stream: ARC-Easy then ARC-Challenge (same task, harder questions).
pub const DEFAULT_SHIFT: (&str, &str) = ("arc_easy_test", "arc_challenge_test");

/// The written results.
#[derive(Debug, Default)]
pub struct Outputs {
    pub reports: Vec<DatasetReport>,
    pub shifts: Vec<ShiftReport>,
    pub files: Vec<PathBuf>,
    /// Datasets left out, with the reason (no traces for some tier, …).
    pub skipped: Vec<(String, String)>,
}

/// Picks the trace of each tier for `dataset`; `Ok(None)` with a reason when a tier has none.
pub fn select_traces(
    store: &TraceStore,
    metas: &[TraceMeta],
    dataset: &Dataset,
    filter: &[Option<String>; 3],
) -> Result<Result<[TierTrace; 3], String>> {
    let mut picked = Vec::new();
    for tier in Tier::ALL {
        let f = &filter[tier.index()];
        let candidates: Vec<&TraceMeta> = metas
            .iter()
            .filter(|m| m.tier == tier && m.dataset_sha256 == dataset.sha256)
            .filter(|m| {
                f.as_ref().is_none_or(|f| {
                    m.model.name.contains(f.as_str()) || m.model.sha256.starts_with(f.as_str())
                })
            })
            .collect();
        match candidates.as_slice() {
            [] => return Ok(Err(format!("no {tier} trace for this dataset file"))),
            [one] => picked.push(store.load(one, dataset)?),
            many => bail!(
                "{}: several {tier} traces ({}); choose one with --{tier}-model",
                dataset.name,
                many.iter()
                    .map(|m| format!("{} = {}", m.key, m.model.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    let [d, e, c]: [TierTrace; 3] = picked
        .try_into()
        .map_err(|_| anyhow::anyhow!("internal: expected three tiers"))?;
    Ok(Ok([d, e, c]))
}

/// Positions of `n` items spread evenly over `len` (all of them when `n >= len`): item
/// `⌊i·len/n⌋` for `i < n`. Quick mode takes these rather than the first `n`, because files
/// are often sorted (IMDB holds its negative reviews first).
pub fn spread(len: usize, n: Option<usize>) -> Vec<usize> {
    match n {
        Some(n) if n < len => (0..n).map(|i| i * len / n).collect(),
        _ => (0..len).collect(),
    }
}

/// `0..n` in an order whose every prefix is spread over the range (positions sorted by their
/// bit-reversed value), so an interrupted trace run leaves an evenly spread sample, not the
/// start of a possibly sorted file.
pub fn spread_order(n: usize) -> Vec<usize> {
    let bits = usize::BITS - n.saturating_sub(1).leading_zeros();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| {
        if bits == 0 {
            0
        } else {
            i.reverse_bits() >> (usize::BITS - bits)
        }
    });
    order
}

fn limited<'a>(stream: Vec<StreamEntry<'a>>, quick: Option<usize>) -> Vec<StreamEntry<'a>> {
    spread(stream.len(), quick)
        .into_iter()
        .map(|i| stream[i])
        .collect()
}

/// The items of `dataset` to trace: every item but the `reserved` ones (few-shot exemplars),
/// or `quick` of them spread evenly; in file order.
pub fn selection(dataset: &Dataset, reserved: &[usize], quick: Option<usize>) -> Vec<usize> {
    let candidates: Vec<usize> = (0..dataset.items.len())
        .filter(|i| !reserved.contains(i))
        .collect();
    spread(candidates.len(), quick)
        .into_iter()
        .map(|i| candidates[i])
        .collect()
}

/// Progress of a trace run: `(dataset, tier, done, total)` after each item.
pub type Progress<'a> = dyn FnMut(&str, Tier, usize, usize) + 'a;

/// Fills the engine's traces of every tier on `datasets` (the items [`selection`] picks), in
/// rounds: each round takes the next `chunk` items of every dataset, in [`spread_order`], and
/// traces them on the three tiers before the next round starts. An interrupted run therefore
/// leaves, for every dataset, complete and evenly spread items that a replay can use, and a
/// rerun continues where it stopped. The key of every trace file it filled is added to `keys`.
pub fn fill_engine(
    source: &mut crate::engine::EngineSource,
    datasets: &[Dataset],
    store: &TraceStore,
    quick: Option<usize>,
    chunk: usize,
    keys: &mut Vec<String>,
    progress: &mut Progress<'_>,
) -> Result<()> {
    let orders: Vec<Vec<usize>> = datasets
        .iter()
        .map(|ds| {
            let picked = selection(ds, &source.reserved(ds), quick);
            spread_order(picked.len())
                .into_iter()
                .map(|i| picked[i])
                .collect()
        })
        .collect();
    let chunk = chunk.max(1);
    let rounds = orders
        .iter()
        .map(|o| o.len().div_ceil(chunk))
        .max()
        .unwrap_or(0);
    for round in 0..rounds {
        for (ds, order) in datasets.iter().zip(&orders) {
            let start = round * chunk;
            let Some(part) = order.get(start..(start + chunk).min(order.len())) else {
                continue;
            };
            for tier in Tier::ALL {
                let trace = store.fill_items(source, tier, ds, part, &mut |done, _| {
                    progress(&ds.name, tier, start + done, order.len())
                })?;
                if !keys.contains(&trace.meta.key) {
                    keys.push(trace.meta.key);
                }
            }
        }
    }
    Ok(())
}

fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Replays every dataset that has traces for all three tiers in `store`, runs the shift
/// streams, and writes the results under `opts.out`.
pub fn run_replays(datasets: &[Dataset], store: &TraceStore, opts: &Options) -> Result<Outputs> {
    let metas = store.list()?;
    let metas: Vec<TraceMeta> = match &opts.only_keys {
        Some(keys) => metas
            .into_iter()
            .filter(|m| keys.contains(&m.key))
            .collect(),
        None => metas,
    };
    let mut outputs = Outputs::default();
    let mut loaded: Vec<(&Dataset, [TierTrace; 3])> = Vec::new();
    for ds in datasets {
        match select_traces(store, &metas, ds, &opts.model_filter)? {
            Ok(t) => loaded.push((ds, t)),
            Err(why) => outputs.skipped.push((ds.name.clone(), why)),
        }
    }
    let plots = opts.out.join("plots");
    std::fs::create_dir_all(&plots).with_context(|| format!("{}", plots.display()))?;
    let mut tables = String::from("# Evaluation results\n\n");
    for (ds, traces) in &loaded {
        let stream = limited(replay::stream(&ds.items, traces), opts.quick);
        if stream.len() < 4 {
            outputs.skipped.push((
                ds.name.clone(),
                format!("only {} items traced on all tiers", stream.len()),
            ));
            continue;
        }
        let (calibration, evaluation) = split_halves(&stream);
        let replays = standard_replays(&calibration, &evaluation)?;
        let summaries = replays.iter().map(|r| summarize(r, &evaluation)).collect();
        let report = DatasetReport {
            dataset: ds.name.clone(),
            summaries,
            models: traces.each_ref().map(|t| t.meta.model.name.clone()),
            synthetic: traces.iter().any(|t| t.meta.model.synthetic),
        };
        tables.push_str(&markdown(&report));
        tables.push('\n');
        let svg = plots.join(format!("{}-quality-vs-traffic.svg", file_safe(&ds.name)));
        if report.summaries.iter().any(|s| s.quality.is_some()) {
            let title = format!(
                "{}: quality vs traffic{}",
                ds.name,
                if report.synthetic { " (SYNTHETIC)" } else { "" }
            );
            crate::plot::quality_vs_traffic(&svg, &title, &report.summaries)?;
            outputs.files.push(svg);
        }
        outputs.reports.push(report);
    }
    for (a, b) in &opts.shifts {
        let find = |n: &str| loaded.iter().find(|(d, _)| d.name == n);
        let (Some((da, ta)), Some((db, tb))) = (find(a), find(b)) else {
            outputs.skipped.push((
                format!("shift {a} → {b}"),
                "both datasets need traces on all tiers".into(),
            ));
            continue;
        };
        let first = limited(replay::stream(&da.items, ta), opts.quick);
        let second = limited(replay::stream(&db.items, tb), opts.quick);
        let report = shift_experiment(
            (&da.name, &first),
            (&db.name, &second),
            opts.bucket,
            ta.iter().chain(tb).any(|t| t.meta.model.synthetic),
        )?;
        tables.push_str(&shift_markdown(&report));
        tables.push('\n');
        let svg = plots.join(format!("shift-{}-{}.svg", file_safe(a), file_safe(b)));
        crate::plot::offload_over_time(&svg, &report)?;
        outputs.files.push(svg);
        outputs.shifts.push(report);
    }
    if !outputs.skipped.is_empty() {
        tables.push_str("### Left out\n\n");
        for (name, why) in &outputs.skipped {
            tables.push_str(&format!("- {name}: {why}\n"));
        }
    }
    let summary = SummaryFile::from_reports(&outputs.reports);
    let write = |name: &str, text: String, files: &mut Vec<PathBuf>| -> Result<()> {
        let path = opts.out.join(name);
        std::fs::write(&path, text).with_context(|| format!("{}", path.display()))?;
        files.push(path);
        Ok(())
    };
    write(
        "summary.json",
        serde_json::to_string_pretty(&summary)? + "\n",
        &mut outputs.files,
    )?;
    write("tables.md", tables, &mut outputs.files)?;
    write(
        "shift.json",
        serde_json::to_string_pretty(&outputs.shifts)? + "\n",
        &mut outputs.files,
    )?;
    Ok(outputs)
}

/// The shift experiment on `first` then `second` (one stream, request keys continuing):
/// RecServe β = 0.3 with k = 10 000, 500 and 100, ColServe at RecServe's measured rates, and
/// CasServe with thresholds tuned on the calibration half of `first` only (a cascade tuned once,
/// before the change).
pub fn shift_experiment(
    first: (&str, &[StreamEntry<'_>]),
    second: (&str, &[StreamEntry<'_>]),
    bucket: usize,
    synthetic: bool,
) -> Result<ShiftReport> {
    let stream: Vec<StreamEntry<'_>> = first.1.iter().chain(second.1).copied().collect();
    let boundary = first.1.len();
    let (calibration, _) = split_halves(first.1);
    let recserve = |k: usize| {
        PolicySpec::from(PolicyKind::RecServe {
            beta: PerTier::same(0.3),
            k,
        })
    };
    let mut replays: Vec<Replay> = Vec::new();
    for (name, k) in [
        ("recserve-b0.3", 10_000),
        ("recserve-b0.3-k500", 500),
        ("recserve-b0.3-k100", 100),
    ] {
        replays.push(replay::replay(name, &recserve(k), &stream)?);
    }
    let rates = [Tier::Device, Tier::Edge].map(|t| offload_rate(&replays[0].outcomes, t));
    replays.push(replay::replay(
        "colserve",
        &PolicySpec::from(PolicyKind::ColServe {
            probability: PerTier {
                device: rates[0].unwrap_or(replay::CASSERVE_RATE),
                edge: rates[1].unwrap_or(replay::CASSERVE_RATE),
            },
            seed: 0,
        }),
        &stream,
    )?);
    let thresholds = replay::tune_casserve(&calibration, replay::CASSERVE_RATE)?;
    replays.push(replay::replay(
        "casserve",
        &PolicySpec::from(PolicyKind::CasServe { thresholds }),
        &stream,
    )?);
    let series = replays
        .iter()
        .map(|r| ShiftSeries {
            policy: r.name.clone(),
            buckets: bucket_rates(r, bucket),
            device_rate_before: offload_rate(&r.outcomes[..boundary], Tier::Device),
            device_rate_after: offload_rate(&r.outcomes[boundary..], Tier::Device),
        })
        .collect();
    Ok(ShiftReport {
        name: format!("{} → {}", first.0, second.0),
        segments: vec![
            (first.0.to_string(), first.1.len()),
            (second.0.to_string(), second.1.len()),
        ],
        bucket,
        series,
        synthetic,
    })
}

/// Fills **synthetic** traces for `datasets` into `store` (the second dataset of each shift
/// pair gets confidences scaled by 0.6, a harder set), for exercising the pipeline without an
/// engine. Everything it writes is marked synthetic.
pub fn fill_synthetic(
    datasets: &[Dataset],
    store: &TraceStore,
    opts: &Options,
    progress: &mut dyn FnMut(&str, Tier, usize, usize),
) -> Result<()> {
    for ds in datasets {
        let harder = opts.shifts.iter().any(|(_, b)| *b == ds.name);
        let mut source = SyntheticSource {
            shift_at: harder.then_some(0),
            shift_factor: if harder { 0.6 } else { 1.0 },
            ..SyntheticSource::default()
        };
        let picked = selection(ds, &[], opts.quick);
        for tier in Tier::ALL {
            store.fill_items(&mut source, tier, ds, &picked, &mut |done, total| {
                progress(&ds.name, tier, done, total)
            })?;
        }
    }
    Ok(())
}

/// `path` relative to the current folder when it is inside it (for messages).
pub fn display(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_takes_evenly_spaced_items() {
        assert_eq!(spread(10, Some(4)), vec![0, 2, 5, 7]);
        assert_eq!(spread(3, Some(4)), vec![0, 1, 2]);
        assert_eq!(spread(3, None), vec![0, 1, 2]);
        assert_eq!(spread(0, Some(2)), Vec::<usize>::new());
    }

    #[test]
    fn spread_order_is_a_permutation_whose_prefixes_are_spread() {
        for n in [0, 1, 2, 7, 100, 1000] {
            let order = spread_order(n);
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..n).collect::<Vec<_>>());
        }
        let order = spread_order(1000);
        // Any prefix of the order has about as many items in each half of the range.
        for len in [2, 10, 64, 100, 333] {
            let low = order[..len].iter().filter(|&&i| i < 500).count();
            assert!(low.abs_diff(len - low) <= 2, "{len}: {low}");
        }
    }
}
