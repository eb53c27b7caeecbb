//! Our tokenizer on llama.cpp's own tokenizer test vocabularies (`models/ggml-vocab-*.gguf`
//! with `.inp`/`.out`: inputs and the ids Hugging Face's tokenizers give for them, which
//! llama.cpp's `test-tokenizer-0` checks it reproduces).
//!
//! They ship in the llama.cpp tree that `scripts/llama-cpp/build.sh` extracts; the test looks
//! in `$LLAMA_CPP_SRC`, else `~/.cache/ladder/llama.cpp/0.3.36/src`, and skips with a line
//! when neither exists. Vocabularies whose type or pre-tokenizer is not implemented are
//! listed as skipped, not failed.

use std::path::PathBuf;

use llm::{EncodeOptions, Error, Gguf};

fn llama_cpp_src() -> PathBuf {
    if let Some(dir) = std::env::var_os("LLAMA_CPP_SRC") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache/ladder/llama.cpp/0.3.36/src")
}

#[test]
fn llama_cpp_vocab_tests() {
    let models = llama_cpp_src().join("models");
    let Ok(entries) = std::fs::read_dir(&models) else {
        eprintln!(
            "SKIP llama.cpp vocab tests: {} not found (run scripts/llama-cpp/build.sh or set LLAMA_CPP_SRC)",
            models.display()
        );
        return;
    };
    let mut vocabs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .filter(|p| p.with_extension("gguf.inp").is_file())
        .collect();
    vocabs.sort();
    let mut failures = Vec::new();
    let mut checked = 0;
    for path in vocabs {
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let tok = match Gguf::open(&path).and_then(|g| g.tokenizer()) {
            Ok(t) => t,
            Err(
                e @ (Error::UnsupportedTokenizer { .. } | Error::UnsupportedPreTokenizer { .. }),
            ) => {
                eprintln!("SKIP {name}: {e}");
                continue;
            }
            Err(e) => panic!("{name}: {e}"),
        };
        let inp = std::fs::read_to_string(path.with_extension("gguf.inp")).expect(".inp readable");
        let out = std::fs::read_to_string(path.with_extension("gguf.out")).expect(".out readable");
        let inputs: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
        let expected: Vec<Vec<u32>> = out
            .lines()
            .map(|l| {
                l.split_whitespace()
                    .map(|x| x.parse().expect("an id"))
                    .collect()
            })
            .collect();
        let mut ok = 0;
        for (text, want) in inputs.iter().zip(&expected) {
            let got = tok.encode(text, EncodeOptions::TEXT);
            if &got == want {
                ok += 1;
            } else {
                failures.push(format!(
                    "{name}: {text:?}\n   ours: {got:?}\n  want: {want:?}"
                ));
            }
        }
        eprintln!("{name}: {ok}/{} match", expected.len());
        checked += 1;
    }
    assert!(
        checked > 0,
        "no supported vocabulary found in {}",
        models.display()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
