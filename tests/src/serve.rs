//! Servers started as their users start them: a binary with `--addr 127.0.0.1:0` that prints
//! `listening on http://ADDR` on stdout once bound. The process is killed when the handle drops.

use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running server process.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Server {
    /// Starts `binary ARGS… --addr 127.0.0.1:0` and waits (at most `startup`) for its
    /// listening line. Its stderr goes to the test's stderr.
    pub async fn start(binary: &Path, args: &[String], startup: Duration) -> Result<Self> {
        let mut child = Command::new(binary)
            .args(args)
            .args(["--addr", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(startup, lines.next_line())
            .await
            .with_context(|| format!("{} did not start within {startup:?}", binary.display()))??;
        let Some(line) = line else {
            let status = child.wait().await?;
            bail!("{} exited before listening ({status})", binary.display());
        };
        let url = line
            .strip_prefix("listening on ")
            .with_context(|| format!("unexpected first line {line:?}"))?
            .trim()
            .to_string();
        // Keep reading stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Server { child, url })
    }

    /// Stops the server and waits for it to exit.
    pub async fn stop(mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}
