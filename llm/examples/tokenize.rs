//! Prints the token ids of a text, like llama.cpp's `llama-tokenize --ids`.
//!
//! `cargo run -p llm --example tokenize -- MODEL.gguf "text" [--no-bos] [--no-parse-special]`

use llm::{EncodeOptions, Gguf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(model), Some(text)) = (args.first(), args.get(1)) else {
        return Err("usage: tokenize MODEL.gguf TEXT [--no-bos] [--no-parse-special]".into());
    };
    let flag = |f: &str| args.iter().skip(2).any(|a| a == f);
    let tokenizer = Gguf::open(model)?.tokenizer()?;
    let ids = tokenizer.encode(
        text,
        EncodeOptions {
            add_special: !flag("--no-bos"),
            parse_special: !flag("--no-parse-special"),
        },
    );
    println!("{ids:?}");
    Ok(())
}
