//! Layout detection on small files in temporary folders, and on the real shared datasets.

// Test helpers may unwrap: a panic there is a failing test.
#![allow(clippy::unwrap_used)]

use eval::datasets::{Gold, Layout, default_data_dir, load_dir, load_file};
use eval::traces::client_request;
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_folder_of_mixed_layouts_is_detected_by_fields_not_names() {
    let dir = tempfile::tempdir().unwrap();
    // Names that lie about their content: detection must not look at them.
    write(
        dir.path(),
        "translation.jsonl",
        "{\"question\":\"Is it?\",\"passage\":\"It is.\",\"choices\":[\"no\",\"yes\"],\"answer\":1}\n",
    );
    write(
        dir.path(),
        "boolq.jsonl",
        "{\"id\":\"a\",\"text\":\"great\",\"label\":1,\"label_names\":[\"negative\",\"positive\"]}\n\n\
         {\"id\":\"b\",\"text\":\"bad\",\"label\":0,\"label_names\":[\"negative\",\"positive\"]}\n",
    );
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    write(
        &dir.path().join("sub"),
        "x.jsonl",
        "{\"id\":\"t\",\"src_lang\":\"de\",\"tgt_lang\":\"en\",\"source_text\":\"Hallo\",\"reference\":\"Hello\"}\n",
    );
    write(
        dir.path(),
        "math.jsonl",
        "{\"question\":\"1+1?\",\"answer\":\"2\"}\n",
    );
    write(
        dir.path(),
        "chat.jsonl",
        "{\"id\":81,\"question\":\"Hi\",\"turns\":[\"Hi\",\"More\"]}\n",
    );
    write(dir.path(), "other.jsonl", "{\"foo\":1}\n");
    write(dir.path(), "empty.jsonl", "\n\n");
    write(dir.path(), "notes.txt", "not a dataset");

    let load = load_dir(dir.path()).unwrap();
    let got: Vec<(&str, Layout, usize)> = load
        .datasets
        .iter()
        .map(|d| (d.name.as_str(), d.layout, d.items.len()))
        .collect();
    assert_eq!(
        got,
        [
            ("boolq", Layout::Classification, 2),
            ("chat", Layout::Chat, 1),
            ("math", Layout::Gsm8k, 1),
            ("x", Layout::Translation, 1),
            ("translation", Layout::MultipleChoice, 1),
        ]
    );
    // Unknown and empty files are skipped with a reason that names the fields.
    assert_eq!(load.skipped.len(), 2);
    let reasons: Vec<&str> = load.skipped.iter().map(|(_, r)| r.as_str()).collect();
    assert!(
        reasons.iter().any(|r| r.contains("fields found: [foo]")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("no records")),
        "{reasons:?}"
    );

    let mc = &load.datasets[4].items[0];
    assert_eq!(mc.passage.as_deref(), Some("It is."));
    assert_eq!(mc.gold, Gold::Choice(1));
    assert!(mc.prompt().starts_with("Passage: It is.\n"));
    let chat = &load.datasets[1].items[0];
    assert_eq!(chat.id, "81");
    assert_eq!(chat.gold, Gold::None);
    assert_eq!(
        load.datasets[0].items[1].line, 3,
        "blank lines keep line numbers"
    );
    assert_eq!(load.datasets[0].sha256.len(), 64);

    // Loaded on its own, an unknown layout is an error naming the file and the fields.
    let err = load_file(&dir.path().join("other.jsonl"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("other.jsonl:1") && err.contains("[foo]"),
        "{err}"
    );
}

#[test]
fn a_bad_line_in_a_known_layout_fails_the_folder_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.jsonl",
        "{\"question\":\"q\",\"choices\":[\"x\",\"y\"],\"answer\":0}\n{\"question\":\"q\",\"choices\":[\"x\"]}\n",
    );
    let err = load_dir(dir.path()).unwrap_err().to_string();
    assert!(err.contains("a.jsonl:2") && err.contains("answer"), "{err}");
}

#[test]
fn duplicate_stems_are_named_by_relative_path() {
    let dir = tempfile::tempdir().unwrap();
    let line = "{\"question\":\"q\",\"answer\":\"2\"}\n";
    write(dir.path(), "d.jsonl", line);
    std::fs::create_dir(dir.path().join("more")).unwrap();
    write(&dir.path().join("more"), "d.jsonl", line);
    let load = load_dir(dir.path()).unwrap();
    let names: Vec<&str> = load.datasets.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["d", "more/d"]);
}

/// The counts of the datasets READMEs, read from the shared folder.
#[test]
fn the_shared_datasets_load_with_their_documented_counts() {
    let dir = std::env::var_os("LADDER_DATASETS")
        .map(PathBuf::from)
        .unwrap_or_else(default_data_dir);
    if !dir.is_dir() {
        eprintln!(
            "SKIPPED: no shared datasets at {} (set LADDER_DATASETS to check them)",
            dir.display()
        );
        return;
    }
    let load = load_dir(&dir).unwrap();
    assert!(load.skipped.is_empty(), "skipped: {:?}", load.skipped);
    let expect = [
        ("gsm8k_test", 1319, Layout::Gsm8k),
        ("mmlu_test", 14042, Layout::MultipleChoice),
        ("mmlu_dev", 285, Layout::MultipleChoice),
        ("arc_challenge_test", 1172, Layout::MultipleChoice),
        ("arc_easy_test", 2376, Layout::MultipleChoice),
        ("boolq_dev", 3270, Layout::MultipleChoice),
        ("piqa_dev", 1838, Layout::MultipleChoice),
        ("mt_bench", 80, Layout::Chat),
        ("mt_bench_101", 1388, Layout::Chat),
        ("imdb", 1924, Layout::Classification),
        ("sst2", 872, Layout::Classification),
        ("yelp_polarity", 1000, Layout::Classification),
        ("wmt16", 1500, Layout::Translation),
        ("wmt19", 2000, Layout::Translation),
    ];
    for (name, count, layout) in expect {
        let ds = load
            .datasets
            .iter()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("{name} missing from {}", dir.display()));
        assert_eq!(ds.items.len(), count, "{name}");
        assert_eq!(ds.layout, layout, "{name}");
    }
    let boolq = load
        .datasets
        .iter()
        .find(|d| d.name == "boolq_dev")
        .unwrap();
    assert!(boolq.items.iter().all(|i| i.passage.is_some()));
    let turns: usize = load
        .datasets
        .iter()
        .find(|d| d.name == "mt_bench_101")
        .unwrap()
        .items
        .iter()
        .map(|i| i.turns.len())
        .sum();
    assert_eq!(turns, 4208, "MT-Bench-101 turns");

    // Every item's client request is a valid wire request (what a tier accepts).
    let limits = offload::wire::Limits::default();
    for ds in &load.datasets {
        for item in &ds.items {
            let body = serde_json::to_vec(&client_request(item, "m", 256)).unwrap();
            if let Err(e) = offload::wire::ChatCompletionRequest::parse(&body, &limits) {
                panic!("{} item {} ({}): {e}", ds.name, item.index, item.id);
            }
        }
    }
}
