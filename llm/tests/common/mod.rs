//! Finding the default models for the tests that use them.

use std::path::PathBuf;

pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
#[allow(dead_code)] // not every test file that shares this module uses both models
pub const GEMMA3: &str = "gemma-3-270m-q4_k_m.gguf";

/// `$LADDER_MODELS`, else `~/.cache/ladder/models`.
pub fn models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LADDER_MODELS") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache/ladder/models")
}

/// The model's GGUF header, or `None` with a line saying why the caller skips.
#[allow(dead_code)] // not every test file that shares this module opens headers
pub fn open(name: &str) -> Option<llm::Gguf> {
    let path = models_dir().join(name);
    if !path.is_file() {
        eprintln!(
            "SKIP {name}: not found at {} (set LADDER_MODELS or fetch the default models)",
            path.display()
        );
        return None;
    }
    Some(llm::Gguf::open(&path).expect("the default model's GGUF header reads"))
}
