//! Runs a `wasi:cli/command` component (a wasm32-wasip2 program or test binary) in this host's
//! wasmtime, with the host's file system mounted at `/`, stdio and the environment inherited:
//! `wasi_run COMPONENT [ARGS...]`.
//!
//! The `llm` tests of the relaxed-SIMD build run here, on the engine the edge component runs on
//! (Node.js 20, which runs the other WebAssembly tests, predates relaxed SIMD's final form).
use anyhow::{Context, Result, anyhow, bail};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::p2::bindings::sync::Command;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

struct State {
    ctx: WasiCtx,
    table: ResourceTable,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        bail!("usage: wasi_run COMPONENT [ARGS...]");
    };
    let mut config = Config::new();
    // Relaxed SIMD is on by default; spelled out because the kernels under test rely on it.
    config.wasm_component_model(true).wasm_relaxed_simd(true);
    // `WASI_RUN_PERFMAP=1`: write /tmp/perf-PID.map, so that `perf report` names the guest's
    // functions (how the wasm kernels are profiled).
    if std::env::var_os("WASI_RUN_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    let engine = host(Engine::new(&config), "configuring wasmtime")?;
    // `WASI_RUN_PRECOMPILE=FILE`: write the compiled component (an ELF file: `objdump -d`
    // shows the machine code Cranelift made of the kernels) instead of running it.
    if let Some(out) = std::env::var_os("WASI_RUN_PRECOMPILE") {
        let bytes = std::fs::read(&path).with_context(|| format!("reading {path}"))?;
        let compiled = host(engine.precompile_component(&bytes), "compiling")?;
        std::fs::write(&out, compiled).context("writing the compiled component")?;
        return Ok(());
    }
    let component = host(
        Component::from_file(&engine, &path),
        &format!("loading {path}"),
    )?;
    let mut linker = Linker::new(&engine);
    host(
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker),
        "linking WASI",
    )?;

    let mut wasi = WasiCtx::builder();
    wasi.inherit_stdio()
        .inherit_env()
        .arg(&path)
        .args(&args.collect::<Vec<_>>());
    host(
        wasi.preopened_dir("/", "/", FsPerms::ReadOnly),
        "mounting /",
    )?;
    let mut store = Store::new(
        &engine,
        State {
            ctx: wasi.build(),
            table: ResourceTable::new(),
        },
    );
    let command = host(
        Command::instantiate(&mut store, &component, &linker),
        &format!("instantiating {path}"),
    )?;
    match command.wasi_cli_run().call_run(&mut store) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(())) => std::process::exit(1),
        // `std::process::exit` in the guest (a failing test harness exits with 101).
        Err(e) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            Some(exit) => std::process::exit(exit.0),
            None => Err(anyhow!("{path} trapped: {e:?}")),
        },
    }
}

/// wasmtime's own error type, with what was being done, as this program's error.
fn host<T>(r: wasmtime::Result<T>, doing: &str) -> Result<T> {
    r.map_err(|e| anyhow!("{doing}: {e:?}"))
}
