//! `eval`: the evaluation harness's command line (issue 7).

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use eval::datasets::{self, Dataset, Layout, load_dir};
use eval::engine::{self, EngineSource, PromptStyle, TierConfig};
use eval::metrics;
use eval::run::{self, DEFAULT_SHIFT, Options};
use eval::traces::TraceStore;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "eval",
    about = "Reproduce the RecServe comparison: datasets → traces → policy replays → tables and plots"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct DataArgs {
    /// Folder of JSONL datasets (any of the known layouts, subfolders included)
    /// [default: <workspace>/../shared/datasets]
    #[arg(long)]
    data: Option<PathBuf>,
    /// Only these datasets (names as `eval datasets` lists them), comma-separated
    #[arg(long, value_delimiter = ',')]
    datasets: Vec<String>,
}

#[derive(clap::Args, Clone)]
struct ReplayArgs {
    /// At most this many items per dataset
    #[arg(long)]
    quick: Option<usize>,
    /// Results folder [default: <workspace>/target/eval]
    #[arg(long)]
    out: Option<PathBuf>,
    /// Items per time bucket in the shift plot
    #[arg(long, default_value_t = 100)]
    bucket: usize,
    /// Shift stream FIRST,SECOND (repeatable) [default: arc_easy_test,arc_challenge_test]
    #[arg(long, value_name = "FIRST,SECOND")]
    shift: Vec<String>,
    /// Pick the device trace by model name or hash prefix, when there are several
    #[arg(long)]
    device_model: Option<String>,
    #[arg(long)]
    edge_model: Option<String>,
    #[arg(long)]
    cloud_model: Option<String>,
}

#[derive(clap::Args, Clone)]
struct TierArgs {
    /// Device tier's GGUF [default: SmolLM2-135M-Instruct.Q4_1.gguf in the model cache]
    #[arg(long, value_name = "GGUF")]
    device: Option<PathBuf>,
    /// How the device tier prompts its model
    #[arg(long, value_enum, default_value_t = engine::DEFAULT_STYLES[0])]
    device_prompt: PromptStyle,
    /// Few-shot exemplars before every device prompt
    #[arg(long, default_value_t = engine::DEFAULT_SHOTS[0])]
    device_shots: usize,
    /// Edge tier's GGUF [default: gemma-3-270m-q4_k_m.gguf in the model cache]
    #[arg(long, value_name = "GGUF")]
    edge: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = engine::DEFAULT_STYLES[1])]
    edge_prompt: PromptStyle,
    #[arg(long, default_value_t = engine::DEFAULT_SHOTS[1])]
    edge_shots: usize,
    /// Cloud tier's GGUF [default: the largest GGUF in the model cache's models.json]
    #[arg(long, value_name = "GGUF")]
    cloud: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = engine::DEFAULT_STYLES[2])]
    cloud_prompt: PromptStyle,
    #[arg(long, default_value_t = engine::DEFAULT_SHOTS[2])]
    cloud_shots: usize,
    /// Kernel threads per model [default: $LADDER_THREADS, else every core]
    #[arg(long)]
    threads: Option<usize>,
}

impl TierArgs {
    fn configs(&self) -> Result<[TierConfig; 3]> {
        let defaults = engine::default_models()?;
        let pick = |given: &Option<PathBuf>, default: &PathBuf| {
            given.clone().unwrap_or_else(|| default.clone())
        };
        Ok([
            TierConfig {
                model: pick(&self.device, &defaults[0]),
                style: self.device_prompt,
                shots: self.device_shots,
            },
            TierConfig {
                model: pick(&self.edge, &defaults[1]),
                style: self.edge_prompt,
                shots: self.edge_shots,
            },
            TierConfig {
                model: pick(&self.cloud, &defaults[2]),
                style: self.cloud_prompt,
                shots: self.cloud_shots,
            },
        ])
    }
}

#[derive(clap::Args, Clone)]
struct LiveArgs {
    /// Items per dataset, spread evenly over the file
    #[arg(long, default_value_t = 8)]
    items: usize,
    /// RecServe's β (both tiers); high by default, so that most items climb and every link
    /// and tier is exercised
    #[arg(long, default_value_t = 0.8)]
    beta: f64,
    /// RecServe's window size k [default: the paper's, 10 000]
    #[arg(long)]
    k: Option<usize>,
    /// The cloud-host program [default: <target>/debug/cloud-host]
    #[arg(long, value_name = "PATH")]
    cloud_host: Option<PathBuf>,
    /// The edge-host program [default: <target>/debug/edge-host]
    #[arg(long, value_name = "PATH")]
    edge_host: Option<PathBuf>,
    /// The edge component, wasi-nn build [default: <target>/edge-fn/debug/wasi-nn.wasm]
    #[arg(long, value_name = "WASM")]
    component: Option<PathBuf>,
    /// The edge application's manifest [default: <workspace>/edge-fn/spin.toml]
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Device tier's GGUF [default: SmolLM2-135M-Instruct.Q4_1.gguf in the model cache]
    #[arg(long, value_name = "GGUF")]
    device: Option<PathBuf>,
    /// Edge tier's GGUF [default: gemma-3-270m-q4_k_m.gguf in the model cache]
    #[arg(long, value_name = "GGUF")]
    edge: Option<PathBuf>,
    /// Cloud tier's GGUF [default: the largest GGUF in the model cache's models.json]
    #[arg(long, value_name = "GGUF")]
    cloud: Option<PathBuf>,
    /// Kernel threads of each model [default: $LADDER_THREADS, else every core]
    #[arg(long)]
    threads: Option<usize>,
    /// Trace folder [default: <workspace>/target/eval/traces]
    #[arg(long)]
    traces: Option<PathBuf>,
    /// Results folder [default: <workspace>/target/eval/live]
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run every tier's model once per item (cached and resumable traces in --traces), then
    /// replay every policy and write summary.json, tables and plots
    Run {
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        args: ReplayArgs,
        #[command(flatten)]
        tiers: TierArgs,
        /// Trace folder [default: <workspace>/target/eval/traces]
        #[arg(long)]
        traces: Option<PathBuf>,
        /// Items traced on all three tiers before the next ones (an interrupted run leaves
        /// whole chunks)
        #[arg(long, default_value_t = 32)]
        chunk: usize,
        /// Only fill the traces; no replay
        #[arg(long)]
        no_replay: bool,
    },
    /// List the datasets found, with their detected layout and item counts
    Datasets {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Replay every policy over existing traces and write summary.json, tables and plots
    Replay {
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        args: ReplayArgs,
        /// Trace folder [default: <workspace>/target/eval/traces]
        #[arg(long)]
        traces: Option<PathBuf>,
    },
    /// Generate SYNTHETIC traces (not measurements) and replay them, to exercise the pipeline
    /// without an engine; writes under <workspace>/target/eval/synthetic by default
    Synthetic {
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        args: ReplayArgs,
    },
    /// Send a few items of each dataset through a freshly started deployment (cloud-host, and
    /// edge-host serving the edge component, started here; the device tier driven here) and
    /// check that decisions, answers and bytes equal the replay of the same items
    Live {
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        live: LiveArgs,
    },
    /// Corpus BLEU and chrF (sacreBLEU defaults) of a hypothesis file against a reference file,
    /// one segment per line
    Score {
        #[arg(long)]
        hyp: PathBuf,
        #[arg(long = "ref")]
        reference: PathBuf,
    },
}

fn load(data: &DataArgs) -> Result<Vec<Dataset>> {
    let dir = data.data.clone().unwrap_or_else(datasets::default_data_dir);
    if !dir.is_dir() {
        bail!(
            "no dataset folder at {} (pass --data DIR)",
            run::display(&dir)
        );
    }
    let loaded = load_dir(&dir)?;
    for (path, why) in &loaded.skipped {
        eprintln!("warning: skipped {}: {why}", run::display(path));
    }
    let mut sets = loaded.datasets;
    if !data.datasets.is_empty() {
        for want in &data.datasets {
            if !sets.iter().any(|d| &d.name == want) {
                bail!("no dataset named {want} in {}", run::display(&dir));
            }
        }
        // In the order asked for.
        sets.sort_by_key(|d| data.datasets.iter().position(|w| *w == d.name));
        sets.retain(|d| data.datasets.contains(&d.name));
    }
    Ok(sets)
}

/// Every classification, translation and multiple-choice dataset unless some are named.
fn comparison_sets(data: &DataArgs) -> Result<Vec<Dataset>> {
    let mut sets = load(data)?;
    if data.datasets.is_empty() {
        // The comparison's tasks; GSM8K and chat sets (long generations without a meaningful
        // score on these models) only when named.
        sets.retain(|d| {
            let keep = matches!(
                d.layout,
                Layout::Classification | Layout::Translation | Layout::MultipleChoice
            );
            if !keep {
                eprintln!(
                    "note: {} ({}) is left out unless named with --datasets",
                    d.name,
                    d.layout.as_str()
                );
            }
            keep
        });
    }
    Ok(sets)
}

fn live_mode(data: &DataArgs, args: &LiveArgs, eval_dir: &std::path::Path) -> Result<()> {
    use eval::live::{self, Deployment, DeploymentConfig};
    use offload::Tier;
    if args.items == 0 {
        bail!("--items must be at least 1");
    }
    let paper_k = offload::PolicySpec::default()
        .window_size()
        .unwrap_or(offload::window::DEFAULT_CAPACITY);
    let spec = eval::replay::recserve(args.beta, args.k.unwrap_or(paper_k));
    // Refuse a bad --beta or --k before any model runs.
    spec.build().context("--beta / --k")?;
    let sets = comparison_sets(data)?;
    let defaults = engine::default_models()?;
    let pick = |given: &Option<PathBuf>, i: usize| given.clone().unwrap_or(defaults[i].clone());
    // Zero-shot chat prompts on every tier: what the serving tiers do.
    let configs = [
        pick(&args.device, 0),
        pick(&args.edge, 1),
        pick(&args.cloud, 2),
    ]
    .map(|model| TierConfig {
        model,
        style: PromptStyle::Chat,
        shots: 0,
    });
    let paths = configs.each_ref().map(|c| c.model.clone());
    let mut source = EngineSource::load(configs, args.threads)?;
    let store = TraceStore::new(args.traces.clone().unwrap_or_else(TraceStore::default_dir));
    let root = datasets::workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let out = args.out.clone().unwrap_or_else(|| eval_dir.join("live"));
    let threads = args
        .threads
        .or_else(|| std::env::var("LADDER_THREADS").ok()?.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let config = DeploymentConfig {
        cloud_host: args
            .cloud_host
            .clone()
            .unwrap_or_else(|| target.join("debug/cloud-host")),
        edge_host: args
            .edge_host
            .clone()
            .unwrap_or_else(|| target.join("debug/edge-host")),
        component: args
            .component
            .clone()
            .unwrap_or_else(|| target.join("edge-fn/debug/wasi-nn.wasm")),
        manifest: args
            .manifest
            .clone()
            .unwrap_or_else(|| root.join("edge-fn/spin.toml")),
        edge_model: paths[1].clone(),
        cloud_model: paths[2].clone(),
        edge_model_id: eval::traces::TraceSource::model(&source, Tier::Edge).name,
        cloud_model_id: eval::traces::TraceSource::model(&source, Tier::Cloud).name,
        threads,
        work_dir: out.join("deployment"),
    };
    let name = format!("recserve-b{}", args.beta);
    let mut reports = Vec::new();
    for ds in &sets {
        let items = run::selection(ds, &source.reserved(ds), Some(args.items));
        eprintln!(
            "{}: tracing {} items on the three tiers",
            ds.name,
            items.len()
        );
        let mut traces = Vec::new();
        for tier in Tier::ALL {
            traces.push(store.fill_items(&mut source, tier, ds, &items, &mut |_, _| {})?);
        }
        let traces: [eval::traces::TierTrace; 3] = traces
            .try_into()
            .map_err(|_| anyhow::anyhow!("internal: expected three traces"))?;
        let stream: Vec<_> = eval::replay::stream(&ds.items, &traces)
            .into_iter()
            .filter(|e| items.contains(&e.item.index))
            .collect();
        eprintln!(
            "{}: starting a fresh deployment and sending {} items ({name}, k = {})",
            ds.name,
            stream.len(),
            spec.window_size().unwrap_or_default()
        );
        let deployment = Deployment::start(&config)?;
        let report = live::run_dataset(
            &deployment,
            &mut source,
            ds,
            &stream,
            &name,
            &spec,
            &mut |done, total| eprintln!("  {}: {done}/{total}", ds.name),
        )?;
        drop(deployment);
        for item in report.details.iter().filter(|i| !i.mismatches.is_empty()) {
            for m in &item.mismatches {
                eprintln!(
                    "  MISMATCH {} #{} ({}): {m}",
                    ds.name, item.position, item.id
                );
            }
        }
        println!("{}", live::summary_line(&report));
        reports.push(report);
    }
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let path = out.join("live.json");
    std::fs::write(&path, serde_json::to_string_pretty(&reports)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", run::display(&path));
    let bad: usize = reports.iter().map(|r| r.mismatches()).sum();
    if bad > 0 {
        bail!(
            "{bad} item(s) went differently live than in the replay (see above and {})",
            run::display(&path)
        );
    }
    Ok(())
}

fn options(args: &ReplayArgs, default_out: PathBuf) -> Result<Options> {
    let mut shifts = Vec::new();
    for s in &args.shift {
        let Some((a, b)) = s.split_once(',') else {
            bail!("--shift takes FIRST,SECOND, got {s:?}");
        };
        shifts.push((a.to_string(), b.to_string()));
    }
    if shifts.is_empty() {
        shifts.push((DEFAULT_SHIFT.0.to_string(), DEFAULT_SHIFT.1.to_string()));
    }
    if args.bucket == 0 {
        bail!("--bucket must be at least 1");
    }
    Ok(Options {
        out: args.out.clone().unwrap_or(default_out),
        quick: args.quick,
        bucket: args.bucket,
        shifts,
        model_filter: [
            args.device_model.clone(),
            args.edge_model.clone(),
            args.cloud_model.clone(),
        ],
        only_keys: None,
    })
}

fn report(outputs: &run::Outputs) {
    for (name, why) in &outputs.skipped {
        eprintln!("left out {name}: {why}");
    }
    for f in &outputs.files {
        println!("wrote {}", run::display(f));
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let eval_dir = datasets::workspace_root().join("target").join("eval");
    match cli.command {
        Command::Datasets { data } => {
            for ds in load(&data)? {
                println!(
                    "{:<22} {:<16} {:>6} items  {}  sha256 {}",
                    ds.name,
                    ds.layout.as_str(),
                    ds.items.len(),
                    run::display(&ds.path),
                    &ds.sha256[..12]
                );
            }
        }
        Command::Replay { data, args, traces } => {
            let sets = load(&data)?;
            let opts = options(&args, eval_dir.clone())?;
            let store = TraceStore::new(traces.unwrap_or_else(TraceStore::default_dir));
            let outputs = run::run_replays(&sets, &store, &opts)?;
            report(&outputs);
            if outputs.reports.is_empty() {
                bail!(
                    "no dataset has traces for all three tiers in {} (the engine-backed trace \
                     source is not built yet; `eval synthetic` exercises the pipeline)",
                    run::display(&store.dir)
                );
            }
        }
        Command::Run {
            data,
            args,
            tiers,
            traces,
            chunk,
            no_replay,
        } => {
            let sets = comparison_sets(&data)?;
            let mut opts = options(&args, eval_dir.clone())?;
            let store = TraceStore::new(traces.unwrap_or_else(TraceStore::default_dir));
            let configs = tiers.configs()?;
            for (tier, c) in offload::Tier::ALL.iter().zip(&configs) {
                eprintln!(
                    "{tier}: {} ({} prompt, {} shots)",
                    run::display(&c.model),
                    c.style.as_str(),
                    c.shots
                );
            }
            let mut source = EngineSource::load(configs, tiers.threads)?;
            let started = std::time::Instant::now();
            let mut last = started;
            let mut keys = Vec::new();
            run::fill_engine(
                &mut source,
                &sets,
                &store,
                opts.quick,
                chunk,
                &mut keys,
                &mut |name, tier, done, total| {
                    // Progress at most every ten seconds, and at the end of each dataset.
                    if done == total && tier == offload::Tier::Cloud
                        || last.elapsed().as_secs_f64() >= 10.0
                    {
                        last = std::time::Instant::now();
                        eprintln!(
                            "  [{:>6.0} s] {name}: {done}/{total} items ({tier})",
                            started.elapsed().as_secs_f64()
                        );
                    }
                },
            )?;
            if !no_replay {
                opts.only_keys = Some(keys);
                let outputs = run::run_replays(&sets, &store, &opts)?;
                report(&outputs);
            }
        }
        Command::Synthetic { data, args } => {
            let sets = load(&data)?;
            let mut opts = options(&args, eval_dir.join("synthetic"))?;
            if opts.quick.is_none() {
                opts.quick = Some(400);
            }
            let store = TraceStore::new(opts.out.join("traces"));
            eprintln!(
                "SYNTHETIC traces: generated numbers, not measurements (into {})",
                run::display(&store.dir)
            );
            let mut last = std::time::Instant::now();
            run::fill_synthetic(&sets, &store, &opts, &mut |name, tier, done, total| {
                // Progress at most every two seconds, and at the end of each trace.
                if done == total || last.elapsed().as_secs_f64() >= 2.0 {
                    last = std::time::Instant::now();
                    eprintln!("  {name} {tier}: {done}/{total}");
                }
            })?;
            let outputs = run::run_replays(&sets, &store, &opts)?;
            report(&outputs);
        }
        Command::Live { data, live } => live_mode(&data, &live, &eval_dir)?,
        Command::Score { hyp, reference } => {
            let read = |p: &PathBuf| -> Result<Vec<String>> {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading {}", run::display(p)))?;
                Ok(text.lines().map(str::to_string).collect())
            };
            let (h, r) = (read(&hyp)?, read(&reference)?);
            if h.len() != r.len() {
                bail!(
                    "{} has {} lines but {} has {}",
                    run::display(&hyp),
                    h.len(),
                    run::display(&reference),
                    r.len()
                );
            }
            let refs: Vec<Vec<&str>> = r.iter().map(|x| vec![x.as_str()]).collect();
            let bleu = metrics::corpus_bleu(&h, &refs);
            println!(
                "BLEU = {:.2} {:.1}/{:.1}/{:.1}/{:.1} (BP = {:.3} ratio = {:.3} hyp_len = {} ref_len = {})",
                bleu.score,
                bleu.precisions[0],
                bleu.precisions[1],
                bleu.precisions[2],
                bleu.precisions[3],
                bleu.bp,
                bleu.stats.hyp_len as f64 / (bleu.stats.ref_len.max(1)) as f64,
                bleu.stats.hyp_len,
                bleu.stats.ref_len
            );
            println!("chrF2 = {:.2}", metrics::corpus_chrf(&h, &refs));
        }
    }
    Ok(())
}
