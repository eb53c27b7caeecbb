//! Decoding on the real default models (fetched by `cargo xtask models`; skipped with a note
//! when the model cache is absent).

use llm::EncodeOptions;
use llm::generate::{FinishReason, Generation, SamplingParams, score_options};
use llm::models::Model;
use std::path::PathBuf;

fn model_path(file: &str) -> Option<PathBuf> {
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

const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn chat(question: &str) -> String {
    format!("<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n")
}

#[test]
fn greedy_answer_with_logprobs() {
    let Some(path) = model_path(SMOLLM2) else {
        return;
    };
    let model = Model::load(&path).unwrap();
    let prompt = model.tokenizer().encode(
        &chat("What is the capital of France?"),
        EncodeOptions::PROMPT,
    );
    let params = SamplingParams {
        max_tokens: 24,
        top_logprobs: 3,
        ..Default::default()
    };
    let mut generation = Generation::start(&model, &prompt, params).unwrap();
    let tokens: Vec<_> = (&mut generation).map(Result::unwrap).collect();
    let text: String = tokens.iter().map(|t| t.text.as_str()).collect();
    assert!(text.contains("Paris"), "{text:?}");
    assert_eq!(generation.finish_reason(), Some(FinishReason::Stop));
    for t in &tokens {
        assert!(t.logprob <= 0.0);
        assert_eq!(t.top.len(), 3);
        // Greedy picks the most likely token, which is then the first alternative.
        assert_eq!(t.top[0].0, t.id);
        assert!(t.top.windows(2).all(|w| w[0].1 >= w[1].1));
    }
    // Confidence as the tiers compute it.
    let confidence =
        offload::PerplexityAccumulator::from_logprobs(tokens.iter().map(|t| f64::from(t.logprob)))
            .unwrap()
            .confidence()
            .unwrap()
            .get();
    assert!(confidence > 0.0 && confidence <= 1.0);
}

#[test]
fn limits_stops_cancel_and_seeds() {
    let Some(path) = model_path(SMOLLM2) else {
        return;
    };
    let model = Model::load(&path).unwrap();
    let prompt = model.tokenizer().encode(
        &chat("Count from one to twenty, in words."),
        EncodeOptions::PROMPT,
    );

    let mut g = Generation::start(
        &model,
        &prompt,
        SamplingParams {
            max_tokens: 5,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!((&mut g).count(), 5);
    assert_eq!(g.finish_reason(), Some(FinishReason::Length));

    let mut g = Generation::start(
        &model,
        &prompt,
        SamplingParams {
            max_tokens: 64,
            stop: vec![",".into()],
            ..Default::default()
        },
    )
    .unwrap();
    let text: String = (&mut g).map(|t| t.unwrap().text).collect();
    assert_eq!(g.finish_reason(), Some(FinishReason::Stop));
    assert!(!text.contains(','), "{text:?}");

    let mut g = Generation::start(
        &model,
        &prompt,
        SamplingParams {
            max_tokens: 64,
            ..Default::default()
        },
    )
    .unwrap();
    let cancel = g.cancel_token();
    assert!(g.next().is_some());
    cancel.cancel();
    assert!(g.next().is_none());
    assert_eq!(g.finish_reason(), Some(FinishReason::Cancelled));

    let sampled = |seed| -> Vec<u32> {
        let params = SamplingParams {
            max_tokens: 12,
            temperature: 0.9,
            top_p: Some(0.95),
            seed,
            ..Default::default()
        };
        Generation::start(&model, &prompt, params)
            .unwrap()
            .map(|t| t.unwrap().id)
            .collect()
    };
    assert_eq!(sampled(7), sampled(7));
}

#[test]
fn option_scores_agree_with_generation() {
    let Some(path) = model_path(SMOLLM2) else {
        return;
    };
    let model = Model::load(&path).unwrap();
    let tok = model.tokenizer();
    let prompt = tok.encode(
        &chat("Is the sky blue? Answer yes or no."),
        EncodeOptions::PROMPT,
    );
    let options: Vec<Vec<u32>> = ["Yes", "No", "Yes, it is"]
        .iter()
        .map(|o| tok.encode(o, EncodeOptions::TEXT))
        .collect();
    let scores = score_options(&model, &prompt, &options).unwrap();
    // A one-token option scores its log-prob at the first step of generation.
    let first = Generation::start(
        &model,
        &prompt,
        SamplingParams {
            max_tokens: 1,
            top_logprobs: 50,
            ..Default::default()
        },
    )
    .unwrap()
    .next()
    .unwrap()
    .unwrap();
    assert_eq!(
        options[0].len(),
        1,
        "\"Yes\" is one token in SmolLM2's vocabulary"
    );
    let lp = first
        .top
        .iter()
        .find(|(id, _)| *id == options[0][0])
        .map(|x| x.1)
        .expect("\"Yes\" is among the 50 most likely first tokens");
    assert!(
        (f64::from(lp) - scores[0]).abs() < 1e-4,
        "{lp} vs {}",
        scores[0]
    );
    // A longer option that extends a shorter one can only score lower.
    assert!(scores[2] < scores[0]);
    assert!(scores.iter().all(|s| s.is_finite() && *s <= 0.0));
}

/// Greedy text equal to llama.cpp's on prompts where no step is a near tie (from the same
/// fixture as `engine_llama_cpp.rs`). The logits are the same bit for bit on every machine
/// and build (native or WebAssembly, any instruction set), so this holds everywhere.
#[test]
fn greedy_text_equals_llama_cpp() {
    #[derive(serde::Deserialize)]
    struct Fixture {
        models: std::collections::HashMap<String, Vec<Case>>,
    }
    #[derive(serde::Deserialize)]
    struct Case {
        prompt: Vec<u32>,
        content: String,
        steps: Vec<serde::de::IgnoredAny>,
    }
    let fixture: Fixture =
        serde_json::from_str(include_str!("fixtures/llama_cpp_greedy.json")).unwrap();
    for (file, cases) in [(SMOLLM2, [0usize, 1]), ("gemma-3-270m-q4_k_m.gguf", [0, 2])] {
        let Some(path) = model_path(file) else {
            continue;
        };
        let model = Model::load(&path).unwrap();
        for c in cases {
            let case = &fixture.models[file][c];
            let params = SamplingParams {
                max_tokens: case.steps.len(),
                ..Default::default()
            };
            let text: String = Generation::start(&model, &case.prompt, params)
                .unwrap()
                .map(|t| t.unwrap().text)
                .collect();
            assert_eq!(text, case.content, "{file} case {c}");
        }
    }
}

/// The batched option scoring gives each option what feeding it alone, one token at a time,
/// gives; and scoring after a prefix fed once equals scoring the whole prompt.
#[test]
fn batched_option_scores_equal_one_option_at_a_time() {
    use llm::generate::{log_softmax, score_options_after};
    let Some(path) = model_path(SMOLLM2) else {
        return;
    };
    let model = Model::load(&path).unwrap();
    let tok = model.tokenizer();
    let prefix = tok.encode(&chat("Name a colour."), EncodeOptions::PROMPT);
    let options: Vec<Vec<u32>> = ["Red", "Light blue", "A deep shade of green", ""]
        .iter()
        .map(|o| tok.encode(o, EncodeOptions::TEXT))
        .collect();
    assert!(options[2].len() > options[1].len() && options[1].len() > 1);
    let batched = score_options(&model, &prefix, &options).unwrap();
    for (option, &score) in options.iter().zip(&batched) {
        let Some((&head, rest)) = option.split_first() else {
            assert_eq!(score, f64::NEG_INFINITY);
            continue;
        };
        let mut s = model.session();
        let mut lp = s.feed(&prefix).unwrap();
        log_softmax(&mut lp);
        let mut alone = f64::from(lp[head as usize]);
        let mut prev = head;
        for &id in rest {
            let mut lp = s.feed(&[prev]).unwrap();
            log_softmax(&mut lp);
            alone += f64::from(lp[id as usize]);
            prev = id;
        }
        assert_eq!(score, alone, "option {option:?}");
    }
    // A prefix fed once and forked.
    let mut base = model.session();
    let logits = base.feed(&prefix).unwrap();
    assert_eq!(
        score_options_after(&base, logits, &options).unwrap(),
        batched
    );
}
