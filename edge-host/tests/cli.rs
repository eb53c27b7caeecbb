//! The command line refuses bad input with a message that names it, before serving anything.

use std::process::{Command, Output};

fn edge_host(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edge-host"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("edge-host runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_missing_manifest_is_named() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let manifest = dir.path().join("nothing-here.toml");
    let out = edge_host(&["--manifest", &manifest.display().to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("nothing-here.toml"), "{err}");
    assert!(err.contains("cannot read manifest"), "{err}");
}

#[test]
fn malformed_flags_say_what_they_expect() {
    for (args, expected) in [
        (&["--var", "novalue"][..], "expected NAME=VALUE"),
        (&["--nn-graph", "x"], "expected NAME=PATH.gguf"),
        (&["--max-body-bytes", "lots"], "--max-body-bytes"),
    ] {
        let out = edge_host(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}
