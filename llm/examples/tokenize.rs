//! Prints the token ids of a text, like llama.cpp's `llama-tokenize --ids`.
//!
//! ```text
//! cargo run -p llm --example tokenize -- MODEL.gguf (TEXT | -f FILE) [--no-bos] [--no-parse-special]
//! ```
//! The text is used verbatim (no escape processing), as `llama-tokenize --no-escape` does.

use llm::{EncodeOptions, Gguf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const USAGE: &str =
        "usage: tokenize MODEL.gguf (TEXT | -f FILE) [--no-bos] [--no-parse-special]";
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model = args.first().ok_or(USAGE)?;
    let text = match args.get(1).map(String::as_str) {
        Some("-f") => std::fs::read_to_string(args.get(2).ok_or(USAGE)?)?,
        Some(text) => text.to_string(),
        None => return Err(USAGE.into()),
    };
    let flag = |f: &str| args.iter().skip(2).any(|a| a == f);
    let tokenizer = Gguf::open(model)?.tokenizer()?;
    let ids = tokenizer.encode(
        &text,
        EncodeOptions {
            add_special: !flag("--no-bos"),
            parse_special: !flag("--no-parse-special"),
        },
    );
    println!("{ids:?}");
    Ok(())
}
