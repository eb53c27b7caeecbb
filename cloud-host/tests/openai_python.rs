//! The official `openai` Python package as the client, unchanged (tests/openai_client.py).
//! `cargo xtask test` installs it into a virtual environment and names its interpreter in
//! `$LADDER_PYTHON`; without it the test says so and skips.

mod common;

use common::{Running, config};
use std::path::Path;

#[tokio::test]
async fn the_official_python_client_works_unchanged() {
    let Some(python) = std::env::var_os("LADDER_PYTHON") else {
        eprintln!("SKIPPED: $LADDER_PYTHON is not set (cargo xtask test sets it)");
        return;
    };
    let Some(mut config) = config() else { return };
    config.api_keys = vec!["py-key".into()];
    let server = Running::start(config).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openai_client.py");
    let output = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(&server.url)
        .arg("py-key")
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.trim_end().ends_with("OK"),
        "the openai client failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
}
