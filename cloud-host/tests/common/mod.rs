//! Starting a cloud host on 127.0.0.1 for a test, on the device model (the smallest default
//! model, fetched by `cargo xtask models`; tests skip with a note when the cache is absent).

#![allow(dead_code)]

use cloud_host::{Config, Server};
use std::path::PathBuf;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

pub fn model_path(file: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("LADDER_MODELS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/ladder/models"))
        })?;
    let path = dir.join(file);
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "SKIPPED: {} not found; run `cargo xtask models`",
            path.display()
        );
        None
    }
}

/// A test configuration: the device model, one kernel thread, a free port.
pub fn config() -> Option<Config> {
    Some(Config {
        addr: "127.0.0.1:0".parse().ok()?,
        model: Some(model_path(SMOLLM2)?),
        model_id: Some("smollm2-test".into()),
        threads: Some(1),
        context: Some(1024),
        ..Config::default()
    })
}

pub struct Running {
    pub url: String,
    shutdown: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    pub async fn start(config: Config) -> Running {
        let server = Server::start(config).await.expect("the server starts");
        let addr = server.local_addr().expect("bound");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        Running {
            url: format!("http://{addr}"),
            shutdown: Some(tx),
            task,
        }
    }

    pub fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .expect("client")
}
