//! Our token ids against llama.cpp's, for the default models.
//!
//! The reference ids are in `fixtures/tokenizer_ids.json`, written by
//! `scripts/llama-cpp/tokenizer-fixture.py` from llama.cpp's `llama-tokenize`. The models are
//! looked up in `$LADDER_MODELS` (default `~/.cache/ladder/models/`); a model that is not
//! there is skipped with a line saying so.

mod common;

use common::{GEMMA3, SMOLLM2, models_dir};
use llm::{DecodeOptions, EncodeOptions, Gguf, Tokenizer};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    llama_cpp_python: String,
    strings: Vec<String>,
    models: std::collections::BTreeMap<String, ModelIds>,
}

#[derive(Deserialize)]
struct ModelIds {
    /// add_special (BOS as the model wants) + parse_special: `llama-tokenize` defaults.
    prompt: Vec<Vec<u32>>,
    /// `--no-bos --no-parse-special`.
    text: Vec<Vec<u32>>,
}

fn fixture() -> Fixture {
    serde_json::from_str(include_str!("fixtures/tokenizer_ids.json"))
        .expect("fixtures/tokenizer_ids.json is valid JSON of the expected shape")
}

fn load(name: &str) -> Option<Tokenizer> {
    let gguf = common::open(name)?;
    Some(
        gguf.tokenizer()
            .expect("the default model's tokenizer builds"),
    )
}

fn show(ids: &[u32], t: &Tokenizer) -> String {
    let pieces: Vec<String> = ids
        .iter()
        .map(|&id| format!("{id}:{:?}", t.vocab().text(id).unwrap_or("?")))
        .collect();
    pieces.join(" ")
}

fn check_model(name: &str) {
    let fx = fixture();
    let ids = fx
        .models
        .get(name)
        .expect("the fixture has every default model");
    let Some(tok) = load(name) else { return };
    let mut failures = Vec::new();
    let mut matched = [0usize; 2];
    for (i, s) in fx.strings.iter().enumerate() {
        for (mode, (opts, want)) in [
            (EncodeOptions::PROMPT, &ids.prompt[i]),
            (EncodeOptions::TEXT, &ids.text[i]),
        ]
        .into_iter()
        .enumerate()
        {
            let got = tok.encode(s, opts);
            if &got == want {
                matched[mode] += 1;
            } else {
                failures.push(format!(
                    "{s:?} ({}):\n   ours: {}\n  llama: {}",
                    ["prompt", "text"][mode],
                    show(&got, &tok),
                    show(want, &tok)
                ));
            }
        }
    }
    let n = fx.strings.len();
    eprintln!(
        "{name}: {}/{n} strings match llama.cpp (llama-cpp-python {}) with BOS + special parsing, {}/{n} as plain text",
        matched[0], fx.llama_cpp_python, matched[1]
    );
    assert!(
        failures.is_empty(),
        "{} encodings differ from llama.cpp:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn check_round_trip(name: &str) {
    let fx = fixture();
    let Some(tok) = load(name) else { return };
    let opts = DecodeOptions {
        remove_special: true,
        render_special: true,
    };
    for s in &fx.strings {
        // SentencePiece stores spaces as U+2581, so a literal U+2581 comes back as a space.
        if s.contains('\u{2581}') {
            continue;
        }
        let ids = tok.encode(s, EncodeOptions::PROMPT);
        assert_eq!(&tok.decode(&ids, opts).expect("ids in range"), s, "{name}");
    }
}

#[test]
fn smollm2_ids_equal_llama_cpp() {
    check_model(SMOLLM2);
}

#[test]
fn gemma3_ids_equal_llama_cpp() {
    check_model(GEMMA3);
}

#[test]
fn smollm2_round_trips() {
    check_round_trip(SMOLLM2);
}

#[test]
fn gemma3_round_trips() {
    check_round_trip(GEMMA3);
}

#[test]
fn default_models_special_tokens() {
    if let Some(t) = load(SMOLLM2) {
        let im_end = t.vocab().id("<|im_end|>").expect("ChatML end token");
        assert_eq!(t.special().eot, Some(im_end));
        assert!(t.is_eog(im_end) && t.is_eog(0));
        assert!(!t.adds_bos());
    }
    if let Some(t) = load(GEMMA3) {
        let eot = t.vocab().id("<end_of_turn>").expect("Gemma end of turn");
        assert_eq!(t.special().eot, Some(eot));
        assert!(t.is_eog(eot) && t.is_eog(1));
        assert!(t.adds_bos());
        assert_eq!(t.special().bos, Some(2));
    }
}

#[test]
fn truncated_default_model_is_reported() {
    let path = models_dir().join(SMOLLM2);
    let Ok(bytes) = std::fs::read(&path) else {
        eprintln!("SKIP truncation check: {} not found", path.display());
        return;
    };
    // Header intact, tensor data cut.
    let err = Gguf::from_bytes(&bytes[..bytes.len() / 2]).expect_err("half a file");
    assert!(matches!(err, llm::Error::Truncated { .. }), "{err}");
    assert!(err.to_string().contains("fetch the model again"), "{err}");
    // Header cut.
    let err = Gguf::from_bytes(&bytes[..100_000]).expect_err("100 kB of a file");
    assert!(matches!(err, llm::Error::Truncated { .. }), "{err}");
}
