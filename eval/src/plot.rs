//! SVG plots with `plotters` (SVG backend only, no system fonts: text is written as SVG `<text>`
//! elements that the viewer renders, and plotters' built-in estimate lays it out).

use crate::replay::Summary;
use crate::report::ShiftReport;
use anyhow::{Result, anyhow};
use plotters::prelude::*;
use std::path::Path;

const PALETTE: [RGBColor; 12] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(0, 0, 0),
    RGBColor(255, 215, 0),
];

fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("plot: {e}")
}

/// Quality against total traffic, one labelled point per policy.
pub fn quality_vs_traffic(path: &Path, title: &str, summaries: &[Summary]) -> Result<()> {
    let points: Vec<(f64, f64, &str)> = summaries
        .iter()
        .filter_map(|s| {
            s.quality
                .map(|q| (s.bytes_total as f64 / 1e6, q, s.policy.as_str()))
        })
        .collect();
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let x_max = points.iter().map(|p| p.0).fold(0.0, f64::max).max(1e-6) * 1.15;
    let (mut y_min, mut y_max) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
    if !y_min.is_finite() {
        (y_min, y_max) = (0.0, 100.0);
    }
    let pad = ((y_max - y_min) * 0.15).max(0.5);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, (y_min - pad)..(y_max + pad))
        .map_err(err)?;
    let metric = summaries.first().map_or("quality", |s| s.metric.as_str());
    chart
        .configure_mesh()
        .x_desc("total traffic (MB, device→edge + edge→cloud)")
        .y_desc(metric)
        .draw()
        .map_err(err)?;
    for (i, (x, y, name)) in points.iter().enumerate() {
        let c = color(i);
        chart
            .draw_series(std::iter::once(Circle::new((*x, *y), 5, c.filled())))
            .map_err(err)?
            .label(*name)
            .legend(move |(lx, ly)| Circle::new((lx, ly), 4, c.filled()));
        chart
            .draw_series(std::iter::once(Text::new(
                name.to_string(),
                (*x, *y),
                ("sans-serif", 12).into_font().color(&c),
            )))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Offload rate over time under shift: device (top) and edge (bottom), one line per policy, and
/// a vertical mark at each segment boundary.
pub fn offload_over_time(path: &Path, report: &ShiftReport) -> Result<()> {
    let root = SVGBackend::new(path, (900, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let total: usize = report.segments.iter().map(|s| s.1).sum();
    let boundaries: Vec<usize> = report
        .segments
        .iter()
        .scan(0, |acc, s| {
            *acc += s.1;
            Some(*acc)
        })
        .take(report.segments.len().saturating_sub(1))
        .collect();
    let panels = root.split_evenly((2, 1));
    for (panel, (tier, pick)) in panels.iter().zip([
        (
            "device",
            (|b: &crate::replay::BucketRate| b.device) as fn(&_) -> _,
        ),
        ("edge", |b: &crate::replay::BucketRate| b.edge),
    ]) {
        let title = format!(
            "{} offload rate over time: {}",
            tier,
            report
                .segments
                .iter()
                .map(|s| s.0.as_str())
                .collect::<Vec<_>>()
                .join(" → ")
        );
        let mut chart = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 18))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..(total.max(1) as f64), 0.0..1.0)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("request (stream position)")
            .y_desc("offload rate")
            .draw()
            .map_err(err)?;
        for &b in &boundaries {
            chart
                .draw_series(LineSeries::new(
                    [(b as f64, 0.0), (b as f64, 1.0)],
                    BLACK.mix(0.5).stroke_width(1),
                ))
                .map_err(err)?;
        }
        for (i, s) in report.series.iter().enumerate() {
            let c = color(i);
            let pts: Vec<(f64, f64)> = s
                .buckets
                .iter()
                .filter_map(|b| pick(b).map(|r| ((b.start + b.end) as f64 / 2.0, r)))
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(err)?
                .label(s.policy.clone())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], c.stroke_width(2)));
            chart
                .draw_series(pts.into_iter().map(|p| Circle::new(p, 2, c.filled())))
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}
