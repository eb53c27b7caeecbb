//! Prints a digest of the logits of a short greedy run, so two builds (native and
//! WebAssembly, or two machines) can be checked to compute exactly the same numbers.
//!
//! ```text
//! cargo run --release -p llm --example digest -- MODEL.gguf [TOKENS]
//! ```

use llm::EncodeOptions;
use llm::models::{Model, ModelOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().ok_or("usage: digest MODEL.gguf [TOKENS]")?;
    let steps: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(8);
    let model = Model::load_with(path, &ModelOptions::default())?;
    let prompt = model.tokenizer().encode(
        "The quick brown fox jumps over the lazy dog. In 1999, the",
        EncodeOptions::PROMPT,
    );
    let mut session = model.session();
    let mut logits = session.feed(&prompt)?;
    // FNV-1a over the bits of every logit of every step.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut ids = Vec::new();
    for _ in 0..steps {
        for l in &logits {
            for b in l.to_bits().to_le_bytes() {
                hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        let next = (0..logits.len())
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .ok_or("empty logits")? as u32;
        ids.push(next);
        logits = session.feed(&[next])?;
    }
    println!(
        "{} {} {hash:016x} {ids:?}",
        model.name(),
        model.kernels().name()
    );
    Ok(())
}
