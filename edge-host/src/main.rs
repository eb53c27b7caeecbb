//! A wasmtime host that serves the `edge-fn` component from its `spin.toml`, with a wasi-nn GGUF
//! backend built on `llm` and a persistent `wasi:keyvalue` store.
//!
//! Not built yet (issue 5). Up the request path: browsers and clients over HTTP; down: `edge-fn`.

fn main() {
    eprintln!("edge-host is not built yet (issue 5): see README.md, section Status");
    std::process::exit(2);
}
