//! Greedy (or sampled) generation from a prompt, printing the text as it comes and the speed.
//!
//! ```text
//! cargo run --release -p llm --example generate -- MODEL.gguf "PROMPT" [-n TOKENS] [-t THREADS] [--top N] [--chat]
//! ```

use llm::generate::{Generation, SamplingParams};
use llm::models::{Model, ModelOptions};
use llm::{ChatTemplate, EncodeOptions, Message, Role};
use std::io::Write;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const USAGE: &str =
        "usage: generate MODEL.gguf PROMPT [-n TOKENS] [-t THREADS] [--top N] [--chat]";
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().ok_or(USAGE)?;
    let prompt = args.get(1).ok_or(USAGE)?;
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.parse::<usize>())
            .transpose()
    };
    let max_tokens = value("-n")?.unwrap_or(64);
    let threads = value("-t")?;
    // Alternatives per token, as the hosts ask for when they report confidence.
    let top_logprobs = value("--top")?.unwrap_or(0);
    let t0 = Instant::now();
    let model = Model::load_with(
        path,
        &ModelOptions {
            threads,
            ..Default::default()
        },
    )?;
    eprintln!("loaded {model:?} in {:.2?}", t0.elapsed());
    let text = if args.iter().any(|a| a == "--chat") {
        ChatTemplate::for_model(&llm::Gguf::open(path)?)?
            .render(&[Message::new(Role::User, prompt)], true)
    } else {
        prompt.clone()
    };
    let ids = model.tokenizer().encode(&text, EncodeOptions::PROMPT);
    let params = SamplingParams {
        max_tokens,
        top_logprobs,
        ..Default::default()
    };
    let t1 = Instant::now();
    let mut generation = Generation::start(&model, &ids, params)?;
    let prefill = t1.elapsed();
    let t2 = Instant::now();
    let mut n = 0;
    let mut out = std::io::stdout().lock();
    for token in &mut generation {
        let token = token?;
        write!(out, "{}", token.text)?;
        out.flush()?;
        n += 1;
    }
    let decode = t2.elapsed();
    writeln!(out)?;
    eprintln!(
        "prompt {} tokens in {:.2?} ({:.1} tok/s); generated {n} in {:.2?} ({:.1} tok/s); {:?}",
        ids.len(),
        prefill,
        ids.len() as f64 / prefill.as_secs_f64(),
        decode,
        n as f64 / decode.as_secs_f64(),
        generation.finish_reason(),
    );
    Ok(())
}
