//! Results: `summary.json` (the layout issue 7 fixes), Markdown tables per dataset, the shift
//! experiment's offload rates over time.

use crate::replay::{BucketRate, Summary};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// One row of `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    pub dataset: String,
    pub policy: String,
    /// `accuracy`, `bleu`, `exact_match` or `none`.
    pub metric: String,
    /// Percent (accuracy, exact match) or BLEU points; `null` where there is no gold.
    pub quality: Option<f64>,
    pub bytes_total: u64,
    pub bytes_device_edge: u64,
    pub bytes_edge_cloud: u64,
    pub share_device: f64,
    pub share_edge: f64,
    pub share_cloud: f64,
    pub items: usize,
}

/// `target/eval/summary.json`: `{"rows": [...]}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SummaryFile {
    pub rows: Vec<SummaryRow>,
}

/// All policies on one dataset.
#[derive(Debug, Clone)]
pub struct DatasetReport {
    pub dataset: String,
    pub summaries: Vec<Summary>,
    /// The models behind the traces, per tier (device, edge, cloud).
    pub models: [String; 3],
    /// True when any trace is synthetic: then nothing in the report is a measurement.
    pub synthetic: bool,
}

impl SummaryFile {
    pub fn from_reports(reports: &[DatasetReport]) -> Self {
        let rows = reports
            .iter()
            .flat_map(|r| {
                r.summaries.iter().map(|s| SummaryRow {
                    dataset: r.dataset.clone(),
                    policy: s.policy.clone(),
                    metric: s.metric.as_str().to_string(),
                    quality: s.quality,
                    bytes_total: s.bytes_total,
                    bytes_device_edge: s.bytes_device_edge,
                    bytes_edge_cloud: s.bytes_edge_cloud,
                    share_device: s.share_device,
                    share_edge: s.share_edge,
                    share_cloud: s.share_cloud,
                    items: s.items,
                })
            })
            .collect();
        SummaryFile { rows }
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => format!("{:.3}", a / b),
        _ => "–".into(),
    }
}

fn opt(x: Option<f64>, digits: usize) -> String {
    x.map_or("–".into(), |x| format!("{x:.digits$}"))
}

/// Bytes with a thousands separator.
pub fn bytes(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The Markdown table of one dataset: quality, bytes per link and total, share answered per
/// tier, and ratios against `cloudserve` and `casserve` (quality ratio and bytes ratio), plus
/// the quality difference to `cloudserve` in points.
pub fn markdown(report: &DatasetReport) -> String {
    let mut out = String::new();
    let find = |name: &str| report.summaries.iter().find(|s| s.policy == name);
    let cloud = find("cloudserve");
    let cas = find("casserve");
    let metric = report
        .summaries
        .first()
        .map_or("quality", |s| s.metric.as_str());
    let items = report.summaries.first().map_or(0, |s| s.items);
    let _ = writeln!(out, "### {} ({metric}, {items} items)\n", report.dataset);
    if report.synthetic {
        let _ = writeln!(
            out,
            "**SYNTHETIC traces: these numbers exercise the pipeline and are not measurements.**\n"
        );
    }
    let _ = writeln!(
        out,
        "Models: device `{}`, edge `{}`, cloud `{}`.\n",
        report.models[0], report.models[1], report.models[2]
    );
    let has_chrf = report.summaries.iter().any(|s| s.chrf.is_some());
    let _ = write!(out, "| policy | {metric} |");
    if has_chrf {
        out.push_str(" chrF |");
    }
    out.push_str(
        " Δ vs cloud | quality ÷ cloud | quality ÷ cas | device→edge B | edge→cloud B | total B | \
         bytes ÷ cloud | bytes ÷ cas | device | edge | cloud | offload rate (device, edge) |\n",
    );
    let cols = 14 + usize::from(has_chrf);
    out.push('|');
    for i in 0..cols {
        out.push_str(if i == 0 { "---|" } else { "---:|" });
    }
    out.push('\n');
    for s in &report.summaries {
        let delta = match (s.quality, cloud.and_then(|c| c.quality)) {
            (Some(a), Some(b)) => format!("{:+.2}", a - b),
            _ => "–".into(),
        };
        let _ = write!(out, "| {} | {} |", s.policy, opt(s.quality, 2));
        if has_chrf {
            let _ = write!(out, " {} |", opt(s.chrf, 2));
        }
        let total = Some(s.bytes_total as f64);
        let _ = writeln!(
            out,
            " {delta} | {} | {} | {} | {} | {} | {} | {} | {:.1}% | {:.1}% | {:.1}% | {}, {} |",
            ratio(s.quality, cloud.and_then(|c| c.quality)),
            ratio(s.quality, cas.and_then(|c| c.quality)),
            bytes(s.bytes_device_edge),
            bytes(s.bytes_edge_cloud),
            bytes(s.bytes_total),
            ratio(total, cloud.map(|c| c.bytes_total as f64)),
            ratio(total, cas.map(|c| c.bytes_total as f64)),
            100.0 * s.share_device,
            100.0 * s.share_edge,
            100.0 * s.share_cloud,
            opt(s.offload_rate[0], 3),
            opt(s.offload_rate[1], 3),
        );
    }
    out
}

/// The shift experiment: a stream of segments (e.g. an easy set, then a hard one) and each
/// policy's offload rate per tier over time.
#[derive(Debug, Clone, Serialize)]
pub struct ShiftReport {
    pub name: String,
    /// Segments in stream order: (dataset, items).
    pub segments: Vec<(String, usize)>,
    pub bucket: usize,
    pub series: Vec<ShiftSeries>,
    pub synthetic: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ShiftSeries {
    pub policy: String,
    pub buckets: Vec<BucketRate>,
    /// Device offload rate before and after the first segment boundary.
    pub device_rate_before: Option<f64>,
    pub device_rate_after: Option<f64>,
}

pub fn shift_markdown(r: &ShiftReport) -> String {
    let mut out = String::new();
    let segs: Vec<String> = r
        .segments
        .iter()
        .map(|(d, n)| format!("{d} ({n})"))
        .collect();
    let _ = writeln!(out, "### Shift: {}\n", segs.join(" → "));
    if r.synthetic {
        let _ = writeln!(
            out,
            "**SYNTHETIC traces: these numbers exercise the pipeline and are not measurements.**\n"
        );
    }
    let _ = writeln!(
        out,
        "Device offload rate before and after the change (buckets of {} items in the plot).\n",
        r.bucket
    );
    out.push_str("| policy | before | after |\n|---|---:|---:|\n");
    for s in &r.series {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            s.policy,
            opt(s.device_rate_before, 3),
            opt(s.device_rate_after, 3)
        );
    }
    out
}
