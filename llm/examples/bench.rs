//! Engine speed in llama-bench's terms: prompt processing of `-p` tokens (one fresh sequence
//! per repetition) and generation of `-n` tokens one at a time from an empty cache, both
//! without sampling, as tokens per second. `cargo xtask bench engine` runs it beside
//! llama.cpp's `llama-bench` on the same file and thread count.
//!
//! ```text
//! cargo run --release -p llm --example bench -- MODEL.gguf [-t THREADS] [-p 128] [-n 64] [-r 3] [--json]
//! ```

use llm::models::{Model, ModelOptions};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const USAGE: &str =
        "usage: bench MODEL.gguf [-t THREADS] [-p PROMPT] [-n GEN] [-r REPS] [--json]";
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().ok_or(USAGE)?;
    let value = |flag: &str, default: usize| -> Result<usize, Box<dyn std::error::Error>> {
        match args.iter().position(|a| a == flag) {
            Some(i) => Ok(args.get(i + 1).ok_or(USAGE)?.parse()?),
            None => Ok(default),
        }
    };
    let threads = value("-t", llm::kernels::Pool::default_threads())?;
    let (prompt, generate, reps) = (value("-p", 128)?, value("-n", 64)?, value("-r", 3)?.max(1));
    let model = Model::load_with(
        path,
        &ModelOptions {
            threads: Some(threads),
            ..Default::default()
        },
    )?;
    // Deterministic stand-in tokens (what they are does not change the work).
    let vocab = model.tokenizer().vocab_size() as u32;
    let tokens: Vec<u32> = (0..prompt.max(generate) as u32)
        .map(|i| (i * 7919 + 13) % vocab)
        .collect();

    // One warm-up of each phase: page in the weights, spin up the threads.
    model.session().feed(&tokens[..prompt.clamp(1, 16)])?;
    let mut pp = Vec::new();
    let mut tg = Vec::new();
    for _ in 0..reps {
        if prompt > 0 {
            let mut s = model.session();
            let t = Instant::now();
            s.feed(&tokens[..prompt])?;
            pp.push(prompt as f64 / t.elapsed().as_secs_f64());
        }
        if generate > 0 {
            let mut s = model.session();
            let t = Instant::now();
            for &tok in &tokens[..generate] {
                s.feed(&[tok])?;
            }
            tg.push(generate as f64 / t.elapsed().as_secs_f64());
        }
    }
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    if args.iter().any(|a| a == "--json") {
        println!(
            "{{\"threads\": {threads}, \"prompt\": {prompt}, \"gen\": {generate}, \"prefill_tps\": {:.3}, \"decode_tps\": {:.3}, \"isa\": \"{:?}\"}}",
            mean(&pp),
            mean(&tg),
            llm::kernels::Isa::detect()
        );
    } else {
        println!(
            "{} threads={threads} ({:?}): pp{prompt} {:.1} tok/s, tg{generate} {:.1} tok/s",
            model.name(),
            llm::kernels::Isa::detect(),
            mean(&pp),
            mean(&tg)
        );
    }
    Ok(())
}
