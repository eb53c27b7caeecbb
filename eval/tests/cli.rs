//! The `eval` binary: exit codes and messages.

// Test helpers may unwrap: a panic there is a failing test.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn eval(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_eval"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn datasets_lists_detected_layouts_and_warns_about_unknown_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.jsonl"),
        "{\"source_text\":\"Hallo\",\"reference\":\"Hello\",\"src_lang\":\"de\",\"tgt_lang\":\"en\"}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("b.jsonl"), "{\"x\":1}\n").unwrap();
    let data = dir.path().to_str().unwrap();
    let (ok, out, err) = eval(&["datasets", "--data", data]);
    assert!(ok, "{err}");
    assert!(out.contains("a ") && out.contains("translation"), "{out}");
    assert!(err.contains("skipped") && err.contains("[x]"), "{err}");

    let (ok, _, err) = eval(&["datasets", "--data", "/nonexistent/folder"]);
    assert!(!ok);
    assert!(err.contains("no dataset folder"), "{err}");
}

#[test]
fn replay_without_traces_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.jsonl"),
        "{\"question\":\"q\",\"choices\":[\"x\",\"y\"],\"answer\":0}\n",
    )
    .unwrap();
    let d = dir.path().to_str().unwrap();
    let traces = dir.path().join("traces");
    let out = dir.path().join("out");
    let (ok, _, err) = eval(&[
        "replay",
        "--data",
        d,
        "--traces",
        traces.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("no dataset has traces"), "{err}");
    let (ok, _, err) = eval(&["replay", "--data", d, "--shift", "nocomma"]);
    assert!(!ok);
    assert!(err.contains("FIRST,SECOND"), "{err}");
}

#[test]
fn synthetic_runs_end_to_end_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..40 {
        text.push_str(&format!(
            "{{\"text\":\"t{i}\",\"label\":{},\"label_names\":[\"negative\",\"positive\"]}}\n",
            i % 2
        ));
    }
    std::fs::write(dir.path().join("s.jsonl"), text).unwrap();
    let out = dir.path().join("out");
    let (ok, stdout, err) = eval(&[
        "synthetic",
        "--data",
        dir.path().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--shift",
        "s,s",
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("SYNTHETIC"), "{err}");
    assert!(stdout.contains("summary.json"), "{stdout}");
    let summary = std::fs::read_to_string(out.join("summary.json")).unwrap();
    assert!(summary.contains("\"recserve-b0.3\""));
}

#[test]
fn score_prints_bleu_and_chrf() {
    let dir = tempfile::tempdir().unwrap();
    let h = dir.path().join("h.txt");
    let r = dir.path().join("r.txt");
    std::fs::write(&h, "The cat sat on the mat.\nHello world\n").unwrap();
    std::fs::write(&r, "The cat sat on the mat.\nHello there world\n").unwrap();
    let (ok, out, err) = eval(&[
        "score",
        "--hyp",
        h.to_str().unwrap(),
        "--ref",
        r.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("BLEU = ") && out.contains("chrF2 = "),
        "{out}"
    );
    std::fs::write(&r, "one line\n").unwrap();
    let (ok, _, err) = eval(&[
        "score",
        "--hyp",
        h.to_str().unwrap(),
        "--ref",
        r.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("has 2 lines"), "{err}");
}
