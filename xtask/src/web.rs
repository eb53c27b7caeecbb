//! The chat page as the browser gets it: `wasm-device` built for wasm32-unknown-unknown and
//! turned into an ES module with its `.d.ts` by wasm-bindgen (into `target/www-pkg/PROFILE`),
//! and a static server on loopback that serves `www/`, that module under `/pkg/`, the model
//! cache under `/models/` and a `config.json` telling the page where the model and the edge are.
//! Every response carries COOP/COEP headers, so the page is cross-origin isolated
//! (`SharedArrayBuffer`, and with it wasm threads, need that).

use crate::browser;
use crate::run::{self, cargo, step};
use anyhow::{Context, Result, bail};
use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

/// The flags of the threaded build: atomics (the standard library rebuilt with them) and a
/// shared memory that the module imports, so that Web Workers can instantiate it on the same
/// memory; up to 2 GiB (a shared memory declares its maximum). Given whole, they replace the
/// `+simd128` of `.cargo/config.toml`, so they repeat it.
const THREADS_RUSTFLAGS: &str = "-C target-feature=+atomics,+bulk-memory,+mutable-globals,+simd128 \
    -C link-arg=--shared-memory -C link-arg=--max-memory=2147483648 -C link-arg=--import-memory \
    -C link-arg=--export=__wasm_init_tls -C link-arg=--export=__tls_size \
    -C link-arg=--export=__tls_align -C link-arg=--export=__tls_base";

/// Builds the page's module with the dev or release profile, in three builds: `threads/` with
/// the relaxed-SIMD kernels on a shared memory (kernel threads on Web Workers; built with the
/// pinned nightly, see [`crate::setup::NIGHTLY`]), `relaxed/` with the same kernels on one
/// thread, and at the top the simd128-only one for browsers without relaxed SIMD
/// (`www/device-worker.js` picks). Returns the folder holding `wasm_device.js`,
/// `wasm_device_bg.wasm` and `wasm_device.d.ts` (and `threads/` and `relaxed/` with the same).
pub fn build_page(release: bool) -> Result<PathBuf> {
    let profile = if release { "release" } else { "debug" };
    let target = run::target_dir()?;
    let out = target.join("www-pkg").join(profile);
    let bindgen = browser::wasm_bindgen()?;
    crate::setup::nightly_toolchain()?;
    // Cargo writes the two stable builds to the same file, so each goes through wasm-bindgen at
    // once; the threaded one has a target folder of its own (other flags, other toolchain).
    let threads_target = target.join("threads");
    for (flavour, threaded, features, dir) in [
        ("simd128", false, None, out.clone()),
        (
            "relaxed SIMD",
            false,
            Some("relaxed-simd"),
            out.join("relaxed"),
        ),
        (
            "relaxed SIMD, threads",
            true,
            Some("relaxed-simd"),
            out.join("threads"),
        ),
    ] {
        step(&format!(
            "The device module for the page (wasm-device, {profile}, {flavour})"
        ));
        let mut cmd = if threaded {
            let mut cmd = ladder_tests::build::cargo_of(crate::setup::NIGHTLY);
            cmd.env("RUSTFLAGS", THREADS_RUSTFLAGS)
                .env("CARGO_TARGET_DIR", &threads_target)
                .args(["-Z", "build-std=std,panic_abort"]);
            cmd
        } else {
            cargo()
        };
        cmd.args([
            "build",
            "--locked",
            "--target",
            "wasm32-unknown-unknown",
            "-p",
            "wasm-device",
        ]);
        if release {
            cmd.arg("--release");
        }
        if let Some(features) = features {
            cmd.args(["--features", features]);
        }
        run::run(cmd.current_dir(run::workspace_root()))?;
        let wasm = if threaded { &threads_target } else { &target }
            .join("wasm32-unknown-unknown")
            .join(profile)
            .join("wasm_device.wasm");
        if !wasm.is_file() {
            bail!("cargo built no {}", wasm.display());
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        run::run(
            std::process::Command::new(&bindgen)
                .args(["--target", "web", "--out-dir"])
                .arg(&dir)
                .arg(&wasm),
        )?;
    }
    Ok(out)
}

/// What the static server serves.
pub struct Site {
    /// The page's own files (`www/`).
    pub www: PathBuf,
    /// The wasm-bindgen output, served as `/pkg/`.
    pub pkg: PathBuf,
    /// The model cache, served as `/models/`.
    pub models: PathBuf,
    /// The body of `/config.json`.
    pub config: serde_json::Value,
    /// More folders to serve, as (path, folder).
    pub extra: Vec<(String, PathBuf)>,
}

impl Site {
    /// The page of this repository with the module built by [`build_page`].
    pub fn new(pkg: PathBuf, models: PathBuf, edge_url: &str) -> Site {
        Site {
            www: run::workspace_root().join("www"),
            pkg,
            models,
            config: serde_json::json!({
                "model_url": format!("models/{}", crate::models::DEVICE_FILE),
                "edge_url": edge_url,
            }),
            extra: Vec::new(),
        }
    }
}

fn header_layer(name: &'static str, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::overriding(
        HeaderName::from_static(name),
        HeaderValue::from_static(value),
    )
}

/// The router of the static server.
pub fn router(site: &Site) -> Router {
    let config = site.config.to_string();
    let no_cache = SetResponseHeaderLayer::if_not_present(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    let mut router = Router::new();
    for (path, dir) in &site.extra {
        router = router.nest_service(path, ServeDir::new(dir));
    }
    router
        .route(
            "/config.json",
            axum::routing::get(move || {
                let config = config.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], config) }
            }),
        )
        .nest_service("/pkg", ServeDir::new(&site.pkg))
        .nest_service("/models", ServeDir::new(&site.models))
        .fallback_service(ServeDir::new(&site.www))
        .layer(no_cache)
        .layer(header_layer("cross-origin-opener-policy", "same-origin"))
        .layer(header_layer("cross-origin-embedder-policy", "require-corp"))
        .layer(header_layer("cross-origin-resource-policy", "same-origin"))
}

/// Binds `addr` and serves `site` on the current tokio runtime; returns the bound address.
pub async fn serve(site: &Site, addr: SocketAddr) -> Result<SocketAddr> {
    for (what, dir) in [
        ("www", &site.www),
        ("pkg", &site.pkg),
        ("models", &site.models),
    ] {
        check_dir(what, dir)?;
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the page server to {addr}"))?;
    let bound = listener.local_addr()?;
    let app = router(site);
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            eprintln!("the page server stopped: {err}");
        }
    });
    Ok(bound)
}

fn check_dir(what: &str, dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        bail!("the page's {what} folder {} is missing", dir.display());
    }
    Ok(())
}

/// `cargo xtask test`'s browser step: builds the page, serves it on loopback with the edge
/// and cloud tiers (`edge-host` serving the edge component's debug build with a fresh key-value
/// store, offloading to `cloud-host`; the binaries of the workspace's test build), and runs
/// `tests/browser/*.test.mjs` (Node's test runner driving Debian's Chromium through
/// playwright-core).
pub fn browser_tests() -> Result<()> {
    let pkg = build_page(false)?;
    let chromium = browser::chromium()?;
    let tests = browser::node_packages()?;
    let root = run::workspace_root();
    // The hosts as `cargo test --workspace` builds them (a no-op after the test step).
    run::run(
        crate::run::cargo()
            .args(["test", "--workspace", "--locked", "--no-run"])
            .current_dir(&root),
    )?;
    let components = crate::edge::build(false)?;
    let work = run::target_dir()?.join("browser-tests");
    let state = work.join("state");
    if state.exists() {
        std::fs::remove_dir_all(&state).with_context(|| format!("clearing {}", state.display()))?;
    }
    std::fs::create_dir_all(&state).with_context(|| format!("creating {}", state.display()))?;
    let manifest = crate::edge::manifest_in(&work, &components.wasi_nn)?;
    let hosts = crate::tiers::Hosts {
        bin: run::target_dir()?.join("debug"),
        manifest,
        // One kernel thread each: Chromium runs the device model on the other core.
        threads: 1,
        state_dir: Some(state),
    };

    step("Browser tests (tests/browser: Playwright driving Chromium, the tiers on loopback)");
    let models = crate::models::cache_dir(None)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    let (page, tiers, dead) = runtime.block_on(async {
        // The tests give the page its edge in the address (`?edge=`), so the page is served
        // first and the edge allows its origin.
        let page = serve(&Site::new(pkg, models.clone(), ""), loopback).await?;
        let tiers = crate::tiers::start(&hosts, &models, &format!("http://{page}")).await?;
        // An address where nothing listens: the edge, stopped.
        let dead = tokio::net::TcpListener::bind(loopback)
            .await?
            .local_addr()?;
        anyhow::Ok((page, tiers, format!("http://{dead}")))
    })?;
    let screenshot = work.join("chat.png");
    if screenshot.exists() {
        std::fs::remove_file(&screenshot)
            .with_context(|| format!("removing the old {}", screenshot.display()))?;
    }
    let mut cmd = std::process::Command::new("node");
    cmd.args(["--test", "--test-concurrency=1"])
        .arg(tests.join("chat.test.mjs"))
        .env("LADDER_PAGE_URL", format!("http://{page}/"))
        .env("LADDER_EDGE_URL", &tiers.edge.url)
        .env("LADDER_DEAD_EDGE_URL", &dead)
        .env("LADDER_SCREENSHOT", &screenshot)
        .env("CHROMIUM", &chromium)
        .current_dir(&tests);
    let result = run::run(&mut cmd);
    if result.is_ok() && screenshot.is_file() {
        println!(
            "  the chat page, with answers from the device and the edge: {}",
            screenshot.display()
        );
    }
    drop(tiers);
    runtime.shutdown_background();
    result.context("the browser tests failed")
}
