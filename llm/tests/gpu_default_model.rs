//! The GPU path on the default models (SmolLM2-135M-Instruct Q4_1, and Gemma-3-270M Q4_K_M
//! with its Q8_0, Q5_0, Q4_K and Q6_K weights) against the CPU path, both fed the CPU's greedy
//! tokens: logits within 10 % of the largest logit, and greedy picks
//! that differ only at near-ties. (In headless Chromium on SwiftShader the logits were equal to
//! the last bit; on Mesa's lavapipe a last-bit difference in a deep layer flips 8-bit
//! activation roundings, which the 30 layers amplify.) Skips when the model cache
//! or (without `LADDER_REQUIRE_GPU`) a GPU adapter is missing.
#![cfg(feature = "gpu")]

mod common;

use llm::gpu::{GpuError, GpuModel};
use llm::{Message, Model};

/// The largest logit difference over the vocabulary, and the largest logit's size.
fn gap(a: &[f32], b: &[f32]) -> (f32, f32) {
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    (diff, a.iter().map(|x| x.abs()).fold(0.0, f32::max))
}

fn argmax(l: &[f32]) -> u32 {
    llm::generate::top_n(l, 1).first().map_or(0, |(id, _)| *id)
}

#[test]
fn smollm2_on_the_gpu_follows_the_cpu_path_except_at_near_ties() {
    follows_the_cpu_path(
        common::SMOLLM2,
        &[
            "What is the capital of France?",
            "Write a haiku about the sea.",
        ],
    );
}

#[test]
fn gemma3_on_the_gpu_follows_the_cpu_path_except_at_near_ties() {
    // One question: the 262 144-row output projection makes each token slow on lavapipe.
    follows_the_cpu_path(common::GEMMA3, &["What is the capital of France?"]);
}

fn follows_the_cpu_path(file: &str, questions: &[&str]) {
    let path = common::models_dir().join(file);
    if !path.is_file() {
        eprintln!("SKIP: {} not found", path.display());
        return;
    }
    let cpu = Model::load(&path).expect("loads");
    let gpu = match pollster::block_on(GpuModel::new(&cpu)) {
        Ok(g) => g,
        Err(GpuError::NoAdapter(why)) if std::env::var_os("LADDER_REQUIRE_GPU").is_none() => {
            eprintln!("SKIP: no GPU adapter ({why})");
            return;
        }
        Err(e) => panic!("GPU model: {e}"),
    };
    let template = cpu.chat_template().expect("chat template");
    for &question in questions {
        let prompt = template.encode(cpu.tokenizer(), &[Message::user(question)], true);
        let mut c = cpu.session();
        let mut g = pollster::block_on(gpu.session(512)).expect("session");
        let mut lc = c.feed(&prompt).expect("cpu");
        let mut lg = pollster::block_on(g.feed(&prompt)).expect("gpu");
        let mut worst = 0.0f32;
        let mut disagreements = Vec::new();
        let (mut cpu_text, mut gpu_text) = (Vec::new(), Vec::new());
        for _ in 0..16 {
            let (d, m) = gap(&lg, &lc);
            worst = worst.max(d / m);
            let (tc, tg) = (argmax(&lc), argmax(&lg));
            if tc != tg {
                // Where the paths pick differently, the CPU path must have been close to a
                // tie between the two tokens: within the logits' difference at this step.
                let margin = lc[tc as usize] - lc[tg as usize];
                assert!(margin <= 2.0 * d, "margin {margin} against a gap of {d}");
                disagreements.push((cpu_text.len(), margin));
            }
            cpu_text.push(tc);
            gpu_text.push(tg);
            // Both continue from the CPU's token, so the logits stay comparable.
            lc = c.feed(&[tc]).expect("cpu");
            lg = pollster::block_on(g.feed(&[tc])).expect("gpu");
        }
        let text = cpu
            .tokenizer()
            .decode(&cpu_text, llm::DecodeOptions::default())
            .expect("decodes");
        eprintln!(
            "{question:?} on {}: max |Δlogit| / max |logit| = {worst:.2e} against the CPU \
             path; {text:?}",
            gpu.adapter()
        );
        eprintln!("  near-ties picked differently (step, CPU margin): {disagreements:?}");
        assert!(worst < 0.1, "against the CPU path: {worst}");
    }
}
