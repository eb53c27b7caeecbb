//! The cloud tier: a native OpenAI-compatible server running the largest model with `llm`, or
//! fronting an existing engine; the top tier, so it always answers.
//!
//! Not built yet (issue 4). Up the request path: `edge-fn` and any OpenAI client; down: `llm`.

fn main() {
    eprintln!("cloud-host is not built yet (issue 4): see README.md, section Status");
    std::process::exit(2);
}
