//! The trace store (cache keys, resuming after an interruption, validation), the wire bodies a
//! replay counts, and the whole pipeline on synthetic traces. (Synthetic: nothing here is a
//! measurement.)

// Test helpers may unwrap: a panic there is a failing test.
#![allow(clippy::unwrap_used)]

use eval::datasets::{Dataset, Item, load_file};
use eval::replay::{self, replay_with_bodies};
use eval::report::SummaryFile;
use eval::run::{self, Options};
use eval::traces::{
    ModelInfo, SyntheticSource, TraceRecord, TraceSource, TraceStore, read_records, trace_key,
};
use offload::policy::{PerTier, PolicyKind};
use offload::wire::{ChatCompletionRequest, ChatCompletionResponse, HopOutcome, Limits};
use offload::{PolicySpec, Tier};
use std::path::Path;

fn dataset(dir: &Path, name: &str, n: usize) -> Dataset {
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!(
            "{{\"id\":\"{name}-{i}\",\"text\":\"text {i} \u{e9}\",\"label\":{},\"label_names\":[\"negative\",\"positive\"]}}\n",
            i % 2
        ));
    }
    let path = dir.join(format!("{name}.jsonl"));
    std::fs::write(&path, text).unwrap();
    load_file(&path).unwrap()
}

/// Counts the items it was asked for, and fails on request.
struct Counting {
    inner: SyntheticSource,
    calls: usize,
    fail_at: Option<usize>,
}

impl TraceSource for Counting {
    fn model(&self, tier: Tier) -> ModelInfo {
        self.inner.model(tier)
    }
    fn trace(&mut self, tier: Tier, item: &Item) -> anyhow::Result<TraceRecord> {
        if self.fail_at == Some(item.index) {
            anyhow::bail!("engine crashed");
        }
        self.calls += 1;
        self.inner.trace(tier, item)
    }
}

#[test]
fn keys_change_with_every_part() {
    let base = trace_key(Tier::Device, "m", "t", "d");
    assert_eq!(base.len(), 16);
    assert_eq!(base, trace_key(Tier::Device, "m", "t", "d"));
    for other in [
        trace_key(Tier::Edge, "m", "t", "d"),
        trace_key(Tier::Device, "m2", "t", "d"),
        trace_key(Tier::Device, "m", "t2", "d"),
        trace_key(Tier::Device, "m", "t", "d2"),
    ] {
        assert_ne!(base, other);
    }
}

#[test]
fn fill_resumes_after_an_interruption_and_a_torn_line() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path(), "d", 20);
    let store = TraceStore::new(dir.path().join("traces"));
    let mut src = Counting {
        inner: SyntheticSource::default(),
        calls: 0,
        fail_at: Some(12),
    };
    let err = store
        .fill(&mut src, Tier::Edge, &ds, None, &mut |_, _| {})
        .unwrap_err();
    assert!(format!("{err:#}").contains("engine crashed"), "{err:#}");
    assert_eq!(src.calls, 12);

    let meta = store.list().unwrap().pop().unwrap();
    assert!(meta.model.synthetic);
    assert_eq!((meta.tier, meta.dataset_items), (Tier::Edge, 20));
    let path = store.path(&meta.key);
    // A write cut in the middle of a line.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"{\"item\":12,\"id\":\"d-1");
    std::fs::write(&path, &bytes).unwrap();
    let (records, good) = read_records(&path).unwrap();
    assert_eq!(records.len(), 12);
    assert_eq!(good as usize, bytes.len() - 20);

    src.fail_at = None;
    src.calls = 0;
    let mut last = (0, 0);
    let trace = store
        .fill(&mut src, Tier::Edge, &ds, None, &mut |d, t| last = (d, t))
        .unwrap();
    assert_eq!(src.calls, 8, "only the missing items are run again");
    assert_eq!(last, (20, 20));
    assert_eq!(trace.records.len(), 20);
    let (records, _) = read_records(&path).unwrap();
    let items: Vec<usize> = records.iter().map(|r| r.item).collect();
    assert_eq!(items, (0..20).collect::<Vec<_>>());

    // A third run has nothing to do, and loading gives the same records.
    src.calls = 0;
    store
        .fill(&mut src, Tier::Edge, &ds, None, &mut |_, _| {})
        .unwrap();
    assert_eq!(src.calls, 0);
    let loaded = store.load(&meta, &ds).unwrap();
    assert_eq!(loaded.records, trace.records);
}

#[test]
fn traces_are_checked_against_their_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path(), "d", 5);
    let store = TraceStore::new(dir.path().join("traces"));
    let mut src = SyntheticSource::default();
    store
        .fill(&mut src, Tier::Device, &ds, None, &mut |_, _| {})
        .unwrap();
    let meta = store.list().unwrap().pop().unwrap();

    // Another version of the file: refused by hash.
    let other = dataset(dir.path(), "other", 5);
    let err = store.load(&meta, &other).unwrap_err().to_string();
    assert!(err.contains("another version"), "{err}");

    // A corrupt line in the middle: an error with file and line.
    let path = store.path(&meta.key);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[2] = "{\"item\": \"two\"}";
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let err = store.load(&meta, &ds).unwrap_err().to_string();
    assert!(err.contains(&format!("{}.jsonl:3", meta.key)), "{err}");

    // A confidence outside [0, 1] is refused on load.
    let good = text.lines().nth(2).unwrap().to_string();
    let v: serde_json::Value = serde_json::from_str(&good).unwrap();
    let mut bad = v.clone();
    bad["confidence"] = serde_json::json!(1.5);
    lines[2] = "";
    let bad_line = bad.to_string();
    lines[2] = &bad_line;
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    assert!(store.load(&meta, &ds).is_err());
}

#[test]
fn counted_bodies_are_valid_wire_messages_of_the_counted_length() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path(), "d", 200);
    let src = SyntheticSource::default();
    let recs: Vec<[TraceRecord; 3]> = ds
        .items
        .iter()
        .map(|i| Tier::ALL.map(|t| src.record(t, i, i.index).unwrap()))
        .collect();
    let stream: Vec<replay::StreamEntry<'_>> = ds
        .items
        .iter()
        .zip(&recs)
        .map(|(item, r)| replay::StreamEntry {
            item,
            records: [&r[0], &r[1], &r[2]],
        })
        .collect();
    for spec in [
        PolicySpec::from(PolicyKind::RecServe {
            beta: PerTier::same(0.5),
            k: 50,
        }),
        PolicySpec::from(PolicyKind::CloudServe),
    ] {
        let (r, bodies) = replay_with_bodies("p", &spec, &stream).unwrap();
        let mut seen = 0;
        for (o, b) in r.outcomes.iter().zip(&bodies) {
            for (link, body) in b.iter().enumerate() {
                let Some(body) = body else {
                    assert_eq!(o.links[link].total(), 0);
                    continue;
                };
                seen += 1;
                let req = serde_json::to_vec(&body.request).unwrap();
                assert_eq!(req.len() as u64, o.links[link].sent);
                // What a tier parses and re-serialises has the same length.
                let parsed = ChatCompletionRequest::parse(&req, &Limits::default()).unwrap();
                assert_eq!(serde_json::to_vec(&parsed).unwrap().len(), req.len());
                let ext = parsed.offload.unwrap();
                assert_eq!(ext.hops.len(), link + 1);
                assert_eq!(ext.policy.as_ref(), Some(&spec));
                assert!(ext.hops.iter().all(|h| h.bytes.is_none()));
                let resp = serde_json::to_vec(&body.response).unwrap();
                assert_eq!(resp.len() as u64, o.links[link].received);
                let parsed: ChatCompletionResponse = serde_json::from_slice(&resp).unwrap();
                assert_eq!(serde_json::to_vec(&parsed).unwrap().len(), resp.len());
                let ext = parsed.offload.unwrap();
                assert_eq!(ext.answered_by, o.answered_by);
                // The tiers above this link have completed their records with their bytes.
                for hop in &ext.hops {
                    let has = hop.bytes.is_some();
                    let above = hop.tier.index() > link && hop.tier != o.answered_by;
                    assert_eq!(has, above, "{hop:?} on link {link}");
                }
                let last = ext.hops.last().unwrap();
                assert_eq!(last.tier, o.answered_by);
                assert_eq!(last.outcome, HopOutcome::Answered);
            }
        }
        assert!(seen > 100, "{seen}");
    }
}

#[test]
fn the_pipeline_writes_the_summary_the_issue_specifies() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let sets = vec![dataset(&data, "easy", 120), dataset(&data, "hard", 120)];
    let store = TraceStore::new(dir.path().join("traces"));
    let opts = Options {
        out: dir.path().join("out"),
        quick: Some(100),
        bucket: 20,
        shifts: vec![("easy".into(), "hard".into())],
        model_filter: [None, None, None],
        only_keys: None,
    };
    // No traces yet: every dataset is left out, with the reason.
    let empty = run::run_replays(&sets, &store, &opts).unwrap();
    assert!(empty.reports.is_empty());
    assert!(
        empty
            .skipped
            .iter()
            .any(|(_, why)| why.contains("no device trace"))
    );

    run::fill_synthetic(&sets, &store, &opts, &mut |_, _, _, _| {}).unwrap();
    let out = run::run_replays(&sets, &store, &opts).unwrap();
    assert_eq!(out.reports.len(), 2);
    let text = std::fs::read_to_string(opts.out.join("summary.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let rows = json["rows"].as_array().unwrap();
    let mut keys: Vec<&str> = rows[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "bytes_device_edge",
            "bytes_edge_cloud",
            "bytes_total",
            "dataset",
            "items",
            "metric",
            "policy",
            "quality",
            "share_cloud",
            "share_device",
            "share_edge",
        ]
    );
    let summary: SummaryFile = serde_json::from_str(&text).unwrap();
    for policy in [
        "cloudserve",
        "edgeserve",
        "endserve",
        "colserve",
        "casserve",
        "recserve-b0.1",
        "recserve-b0.3",
        "recserve-b0.5",
    ] {
        let row = summary
            .rows
            .iter()
            .find(|r| r.dataset == "easy" && r.policy == policy)
            .unwrap();
        assert_eq!(row.metric, "accuracy");
        assert_eq!(row.items, 50, "quick 100, evaluation half 50");
        assert!(row.quality.is_some());
        let shares = row.share_device + row.share_edge + row.share_cloud;
        assert!((shares - 1.0).abs() < 1e-9);
    }
    let tables = std::fs::read_to_string(opts.out.join("tables.md")).unwrap();
    assert!(tables.contains("### easy (accuracy, 50 items)"));
    assert!(tables.contains("SYNTHETIC"));
    assert!(tables.contains("### Shift: easy (100) → hard (100)"));
    for f in ["easy-quality-vs-traffic.svg", "shift-easy-hard.svg"] {
        let svg = std::fs::read_to_string(opts.out.join("plots").join(f)).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("recserve-b0.3"),
            "{f}"
        );
    }
    let shift: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(opts.out.join("shift.json")).unwrap())
            .unwrap();
    assert_eq!(
        shift[0]["series"][0]["buckets"].as_array().unwrap().len(),
        10
    );
}

#[test]
fn records_are_built_from_raw_model_output_with_offloads_confidence() {
    use eval::datasets::read_items;
    use eval::traces::{CallCost, ModelOutput, record_from_output};
    let text = r#"{"id":"m1","question":"q","choices":["a","b","c"],"answer":1}"#;
    let (_, mc) = read_items(&mut text.as_bytes(), Path::new("m.jsonl"), "m").unwrap();
    let cost = CallCost {
        prompt_tokens: 10,
        completion_tokens: 1,
        compute_ms: 3.5,
    };
    let r = record_from_output(
        Tier::Device,
        "tiny",
        &mc[0],
        ModelOutput::OptionScores(vec![1.0, 3.0, 2.0]),
        cost,
        1,
    )
    .unwrap();
    assert_eq!((r.choice, r.correct), (Some(1), Some(true)));
    assert_eq!(r.prediction, "b");
    assert_eq!(
        r.confidence,
        offload::max_softmax(&[1.0, 3.0, 2.0]).unwrap()
    );
    assert_eq!(r.response_body["choices"][0]["message"]["content"], "B");
    assert_eq!(
        r.request_body["offload"]["options"],
        serde_json::json!(["A", "B", "C"])
    );
    for bad in [vec![1.0, 2.0], vec![1.0, f64::NAN, 0.0]] {
        let err = record_from_output(
            Tier::Device,
            "tiny",
            &mc[0],
            ModelOutput::OptionScores(bad),
            cost,
            1,
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("item 0 (m1)"), "{err:#}");
    }

    let text = r#"{"question":"q","answer":"18"}"#;
    let (_, g) = read_items(&mut text.as_bytes(), Path::new("g.jsonl"), "g").unwrap();
    let lp = vec![-0.5, -1.5];
    let r = record_from_output(
        Tier::Edge,
        "tiny",
        &g[0],
        ModelOutput::Generation {
            text: "9 + 9 = 18\n#### 18".into(),
            logprobs: lp.clone(),
        },
        cost,
        256,
    )
    .unwrap();
    assert_eq!(r.correct, Some(true));
    let expect = offload::PerplexityAccumulator::from_logprobs(lp)
        .unwrap()
        .confidence()
        .unwrap();
    assert_eq!(r.confidence, expect);
    let empty = record_from_output(
        Tier::Edge,
        "tiny",
        &g[0],
        ModelOutput::Generation {
            text: String::new(),
            logprobs: vec![],
        },
        cost,
        256,
    );
    assert!(empty.is_err());

    let text =
        r#"{"source_text":"Hallo Welt","reference":"Hello world","src_lang":"de","tgt_lang":"en"}"#;
    let (_, t) = read_items(&mut text.as_bytes(), Path::new("t.jsonl"), "t").unwrap();
    let r = record_from_output(
        Tier::Cloud,
        "tiny",
        &t[0],
        ModelOutput::Generation {
            text: "Hello world".into(),
            logprobs: vec![-0.1, -0.2],
        },
        cost,
        256,
    )
    .unwrap();
    assert_eq!(r.correct, None);
    assert!((r.score.unwrap() - 100.0).abs() < 1e-9);
}
