//! Policy replays on synthetic traces, where the right numbers are known by construction.
//! (Synthetic: nothing here is a measurement.)

// Test helpers may unwrap: a panic there is a failing test.
#![allow(clippy::unwrap_used)]

use eval::datasets::{Gold, Item, Layout};
use eval::replay::{
    StreamEntry, bucket_rates, offload_rate, replay, split_halves, standard_replays, summarize,
    tune_casserve,
};
use eval::traces::{SyntheticSource, TraceRecord};
use offload::policy::{PerTier, PolicyKind};
use offload::{PolicySpec, Tier};

fn items(n: usize) -> Vec<Item> {
    (0..n)
        .map(|i| Item {
            index: i,
            line: i + 1,
            id: format!("s-{i}"),
            layout: Layout::Classification,
            task: Layout::Classification.task(),
            passage: None,
            text: format!("review number {i}"),
            turns: vec![],
            src_lang: None,
            tgt_lang: None,
            options: vec!["negative".into(), "positive".into()],
            gold: Gold::Choice(i % 2),
        })
        .collect()
}

fn records(source: &SyntheticSource, items: &[Item]) -> Vec<[TraceRecord; 3]> {
    items
        .iter()
        .enumerate()
        .map(|(pos, item)| Tier::ALL.map(|t| source.record(t, item, pos).unwrap()))
        .collect()
}

fn entries<'a>(items: &'a [Item], recs: &'a [[TraceRecord; 3]]) -> Vec<StreamEntry<'a>> {
    items
        .iter()
        .zip(recs)
        .map(|(item, r)| StreamEntry {
            item,
            records: [&r[0], &r[1], &r[2]],
        })
        .collect()
}

fn spec(kind: PolicyKind) -> PolicySpec {
    PolicySpec::from(kind)
}

#[test]
fn single_tier_baselines_use_the_links_they_must() {
    let items = items(300);
    let recs = records(&SyntheticSource::default(), &items);
    let stream = entries(&items, &recs);

    let cloud = replay("cloudserve", &spec(PolicyKind::CloudServe), &stream).unwrap();
    for o in &cloud.outcomes {
        assert_eq!(o.answered_by, Tier::Cloud);
        assert_eq!(o.attempted, [false, false, true]);
        assert!(
            o.links.iter().all(|l| l.sent > 0 && l.received > 0),
            "{o:?}"
        );
        // The response down to the device carries the edge's completed hop record.
        assert!(o.links[0].received > o.links[1].received);
    }
    let end = replay("endserve", &spec(PolicyKind::EndServe), &stream).unwrap();
    let edge = replay("edgeserve", &spec(PolicyKind::EdgeServe), &stream).unwrap();
    let (c, e, d) = (
        summarize(&cloud, &stream),
        summarize(&end, &stream),
        summarize(&edge, &stream),
    );
    assert_eq!((c.share_cloud, c.share_device), (1.0, 0.0));
    assert!(c.bytes_device_edge > 0 && c.bytes_edge_cloud > 0);
    assert_eq!(c.bytes_total, c.bytes_device_edge + c.bytes_edge_cloud);
    assert_eq!((e.bytes_total, e.share_device), (0, 1.0));
    assert_eq!(d.bytes_edge_cloud, 0);
    assert!(d.bytes_device_edge > 0);
    assert_eq!(d.share_edge, 1.0);

    // Quality of a single-tier policy is that tier's accuracy, counted independently here.
    for (s, t) in [(&c, 2), (&e, 0), (&d, 1)] {
        let right = recs
            .iter()
            .zip(&items)
            .filter(|(r, i)| Gold::Choice(r[t].choice.unwrap()) == i.gold)
            .count();
        assert_eq!(s.quality, Some(100.0 * right as f64 / items.len() as f64));
        assert_eq!(s.items, 300);
    }
}

#[test]
fn recserve_offloads_about_beta_of_a_stationary_stream() {
    let items = items(4000);
    let recs = records(&SyntheticSource::default(), &items);
    let stream = entries(&items, &recs);
    for beta in [0.1, 0.3, 0.5] {
        for k in [200, 10_000] {
            let r = replay(
                "recserve",
                &spec(PolicyKind::RecServe {
                    beta: PerTier::same(beta),
                    k,
                }),
                &stream,
            )
            .unwrap();
            let dev = offload_rate(&r.outcomes, Tier::Device).unwrap();
            let edge = offload_rate(&r.outcomes, Tier::Edge).unwrap();
            assert!((dev - beta).abs() < 0.03, "beta {beta} k {k}: device {dev}");
            assert!((edge - beta).abs() < 0.06, "beta {beta} k {k}: edge {edge}");
            let s = summarize(&r, &stream);
            // About β² of the requests reach the cloud, β(1−β) stop at the edge.
            assert!((s.share_cloud - beta * beta).abs() < 0.04, "{s:?}");
            assert!(r.outcomes.iter().all(|o| o.attempted[0]));
        }
    }
}

#[test]
fn recserve_beats_the_traffic_of_cloudserve_and_keeps_most_quality() {
    let items = items(4000);
    let recs = records(&SyntheticSource::default(), &items);
    let stream = entries(&items, &recs);
    let (cal, evaluation) = split_halves(&stream);
    assert_eq!((cal.len(), evaluation.len()), (2000, 2000));
    let replays = standard_replays(&cal, &evaluation).unwrap();
    let names: Vec<&str> = replays.iter().map(|r| r.name.as_str()).collect();
    for want in [
        "cloudserve",
        "edgeserve",
        "endserve",
        "colserve",
        "casserve",
        "recserve-b0.1",
        "recserve-b0.3",
        "recserve-b0.5",
        "recserve-b0.3-k100",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let get = |n: &str| summarize(replays.iter().find(|r| r.name == n).unwrap(), &evaluation);
    let (cloud, rec, col, cas) = (
        get("cloudserve"),
        get("recserve-b0.3"),
        get("colserve"),
        get("casserve"),
    );
    let ratio = rec.bytes_total as f64 / cloud.bytes_total as f64;
    assert!(
        ratio < 0.5,
        "recserve-b0.3 sends {ratio} of cloudserve's bytes"
    );
    // Confidence carries information in these traces, so RecServe beats a coin flip at the same
    // offload rates.
    assert!(
        rec.quality.unwrap() > col.quality.unwrap(),
        "{rec:?} vs {col:?}"
    );
    assert!((col.offload_rate[0].unwrap() - rec.offload_rate[0].unwrap()).abs() < 0.05);
    // CasServe tuned on the calibration half offloads at β-like rates on the same distribution.
    assert!((cas.offload_rate[0].unwrap() - 0.3).abs() < 0.05, "{cas:?}");
}

#[test]
fn under_shift_recserve_stays_near_beta_while_a_fixed_cascade_drifts() {
    let n = 8000;
    let shift_at = n / 2;
    let items = items(n);
    let source = SyntheticSource {
        shift_at: Some(shift_at),
        shift_factor: 0.6,
        ..SyntheticSource::default()
    };
    let recs = records(&source, &items);
    let stream = entries(&items, &recs);
    // The cascade is tuned once, on calibration data from before the shift.
    let (cal, _) = split_halves(&stream[..shift_at]);
    let thresholds = tune_casserve(&cal, 0.3).unwrap();
    let cas = replay(
        "casserve",
        &spec(PolicyKind::CasServe { thresholds }),
        &stream,
    )
    .unwrap();
    let rec = replay(
        "recserve-b0.3-k500",
        &spec(PolicyKind::RecServe {
            beta: PerTier::same(0.3),
            k: 500,
        }),
        &stream,
    )
    .unwrap();
    let late =
        |r: &eval::replay::Replay| offload_rate(&r.outcomes[n * 5 / 8..], Tier::Device).unwrap();
    let early =
        |r: &eval::replay::Replay| offload_rate(&r.outcomes[..shift_at], Tier::Device).unwrap();
    assert!((early(&rec) - 0.3).abs() < 0.04, "{}", early(&rec));
    assert!((early(&cas) - 0.3).abs() < 0.05, "{}", early(&cas));
    assert!(
        (late(&rec) - 0.3).abs() < 0.05,
        "recserve after shift: {}",
        late(&rec)
    );
    assert!(late(&cas) > 0.55, "casserve after shift: {}", late(&cas));

    let buckets = bucket_rates(&rec, 500);
    assert_eq!(buckets.len(), 16);
    assert_eq!((buckets[0].start, buckets[0].end), (0, 500));
    assert!(buckets.iter().all(|b| b.device.is_some()));
}

#[test]
fn replays_are_deterministic_and_bytes_grow_with_hops() {
    let items = items(500);
    let recs = records(&SyntheticSource::default(), &items);
    let stream = entries(&items, &recs);
    let s = spec(PolicyKind::RecServe {
        beta: PerTier::same(0.3),
        k: 100,
    });
    let a = replay("r", &s, &stream).unwrap();
    let b = replay("r", &s, &stream).unwrap();
    assert_eq!(a.outcomes, b.outcomes);
    let cloud = replay("c", &spec(PolicyKind::CloudServe), &stream).unwrap();
    for (o, c) in a.outcomes.iter().zip(&cloud.outcomes) {
        match o.answered_by {
            Tier::Device => assert!(o.links.iter().all(|l| l.total() == 0)),
            Tier::Edge => {
                assert!(o.links[0].sent > 0 && o.links[1].sent == 0);
            }
            Tier::Cloud => {
                // An offloaded hop record carries a confidence, threshold and decision; a
                // forwarded one only its decision: offloading costs more bytes per request.
                assert!(o.links[1].sent > c.links[1].sent, "{o:?} vs {c:?}");
            }
        }
    }
}
