//! The engine-backed trace source on the real default models (skipped with a note when the
//! model cache is absent): what it records for each kind of task, that the few-shot prefix fed
//! once and forked gives what feeding the whole prompt gives, that exemplars are never traced,
//! and that a run is cached.

// Test helpers may unwrap: a panic there is a failing test.
#![allow(clippy::unwrap_used)]

use eval::datasets::{Dataset, load_file};
use eval::engine::{EngineSource, PromptStyle, TierConfig, default_models, exemplars};
use eval::run;
use eval::traces::{TraceSource, TraceStore};
use offload::Tier;
use offload::wire::{ChatCompletionRequest, ChatCompletionResponse, Limits};
use std::path::{Path, PathBuf};

fn models() -> Option<[PathBuf; 3]> {
    match default_models() {
        Ok(m) => Some(m),
        Err(e) => {
            eprintln!("SKIPPED: {e:#}");
            None
        }
    }
}

fn write(dir: &Path, name: &str, lines: &[String]) -> Dataset {
    let path = dir.join(format!("{name}.jsonl"));
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    load_file(&path).unwrap()
}

fn sentiment(dir: &Path) -> Dataset {
    let reviews = [
        ("A wonderful, moving film with superb acting.", 1),
        ("Dull, long and badly acted. I want my money back.", 0),
        ("I loved every minute of it.", 1),
        ("The worst meal I have ever had.", 0),
        ("Great service and friendly staff.", 1),
        ("Terrible. Avoid.", 0),
    ];
    let lines: Vec<String> = reviews
        .iter()
        .enumerate()
        .map(|(i, (text, label))| {
            serde_json::json!({"id": format!("s{i}"), "text": text, "label": label,
                "label_names": ["negative", "positive"]})
            .to_string()
        })
        .collect();
    write(dir, "sentiment", &lines)
}

fn translation(dir: &Path) -> Dataset {
    let pairs = [
        ("Guten Morgen.", "Good morning."),
        ("Das Haus ist groß.", "The house is big."),
        ("Ich trinke Wasser.", "I drink water."),
    ];
    let lines: Vec<String> = pairs
        .iter()
        .enumerate()
        .map(|(i, (de, en))| {
            serde_json::json!({"id": format!("t{i}"), "src_lang": "de", "tgt_lang": "en",
                "source_text": de, "reference": en})
            .to_string()
        })
        .collect();
    write(dir, "translation", &lines)
}

fn choice(dir: &Path) -> Dataset {
    let lines = [serde_json::json!({"id": "q0",
        "question": "Which of these is a mammal?",
        "choices": ["A trout", "A dolphin", "A frog", "A sparrow"], "answer": 1})
    .to_string()];
    write(dir, "choice", &lines)
}

fn engine(models: &[PathBuf; 3], shots: [usize; 3]) -> EngineSource {
    let styles = [
        PromptStyle::Chat,
        PromptStyle::Completion,
        PromptStyle::Completion,
    ];
    let configs = [0, 1, 2].map(|t| TierConfig {
        model: models[t].clone(),
        style: styles[t],
        shots: shots[t],
    });
    EngineSource::load(configs, Some(1)).unwrap()
}

#[test]
fn records_every_task_with_wire_bodies_and_offload_confidence() {
    let Some(models) = models() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut source = engine(&models, [0, 0, 0]);
    for ds in [
        sentiment(dir.path()),
        translation(dir.path()),
        choice(dir.path()),
    ] {
        for tier in Tier::ALL {
            source.start_dataset(tier, &ds).unwrap();
            let item = &ds.items[0];
            let r = source.trace(tier, item).unwrap();
            assert_eq!((r.item, r.tier, r.id.as_str()), (0, tier, item.id.as_str()));
            assert!(r.prompt_tokens > 5 && r.compute_ms > 0.0);
            let request: ChatCompletionRequest =
                serde_json::from_value(r.request_body.clone()).unwrap();
            let bytes = serde_json::to_vec(&request).unwrap();
            ChatCompletionRequest::parse(&bytes, &Limits::default()).unwrap();
            let response: ChatCompletionResponse =
                serde_json::from_value(r.response_body.clone()).unwrap();
            let c = r.confidence.get();
            match item.options.len() {
                0 => {
                    // 1/(1+PPL) of a generation lies in (0, 0.5].
                    assert!(c > 0.0 && c <= 0.5, "{c}");
                    assert!(!r.prediction.is_empty() && r.completion_tokens >= 1);
                    assert!(r.score.is_some() && r.correct.is_none());
                    assert_eq!(response.text().unwrap(), r.prediction.as_str());
                }
                n => {
                    // The max softmax over n options lies in [1/n, 1].
                    assert!(c >= 1.0 / n as f64 - 1e-12 && c <= 1.0, "{c}");
                    let chosen = r.choice.unwrap();
                    assert_eq!(r.prediction, item.options[chosen]);
                    assert!(r.correct.is_some());
                }
            }
            // The same item again gives the same answer and confidence (greedy, deterministic).
            let again = source.trace(tier, item).unwrap();
            assert_eq!(
                (again.prediction, again.confidence),
                (r.prediction.clone(), r.confidence)
            );
        }
    }
}

#[test]
fn few_shot_exemplars_are_reserved_and_change_the_key() {
    let Some(models) = models() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ds = sentiment(dir.path());
    // Two shots: one of each label, the shortest of each.
    let ex = exemplars(&ds, 2);
    assert_eq!(ex, vec![5, 2]);
    let mut source = engine(&models, [0, 0, 2]);
    assert_eq!(source.reserved(&ds), vec![2, 5]);
    let store = TraceStore::new(dir.path().join("traces"));
    let mut keys = Vec::new();
    run::fill_engine(
        &mut source,
        std::slice::from_ref(&ds),
        &store,
        None,
        2,
        &mut keys,
        &mut |_, _, _, _| {},
    )
    .unwrap();
    let metas = store.list().unwrap();
    assert_eq!(metas.len(), 3);
    for meta in &metas {
        let trace = store.load(meta, &ds).unwrap();
        let items: Vec<usize> = trace.records.keys().copied().collect();
        assert_eq!(items, vec![0, 1, 3, 4], "{}", meta.tier);
        assert!(keys.contains(&meta.key));
    }
    let cloud = metas.iter().find(|m| m.tier == Tier::Cloud).unwrap();
    let edge = metas.iter().find(|m| m.tier == Tier::Edge).unwrap();
    // Same model file, other prompting: another trace key.
    assert_eq!(cloud.model.sha256, edge.model.sha256);
    assert_ne!(cloud.model.template_id, edge.model.template_id);
    assert!(cloud.model.template_id.contains("2-shot[5, 2]"));

    // A second run finds everything cached: the files do not change.
    let before: Vec<Vec<u8>> = metas
        .iter()
        .map(|m| std::fs::read(store.path(&m.key)).unwrap())
        .collect();
    run::fill_engine(
        &mut source,
        &[ds],
        &store,
        None,
        2,
        &mut keys,
        &mut |_, _, _, _| panic!("nothing is left to trace"),
    )
    .unwrap();
    let after: Vec<Vec<u8>> = metas
        .iter()
        .map(|m| std::fs::read(store.path(&m.key)).unwrap())
        .collect();
    assert_eq!(before, after);
}
