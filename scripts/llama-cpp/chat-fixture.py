#!/usr/bin/env python3
"""Write llm/tests/fixtures/chat_prompts.json: llama.cpp's rendering of a few conversations.

Starts `llama-server` (built by scripts/llama-cpp/build.sh) on each default model and asks
its `/apply-template` endpoint for the prompt of every conversation, with the generation
prompt added. SmolLM2 is rendered with the Jinja template in its GGUF; Gemma-3-270M (a base
model without a template) with llama.cpp's built-in `gemma` template (`--no-jinja`).
llm/tests/chat_default_models.rs checks that `llm::ChatTemplate` renders the same text.

Usage:
  scripts/llama-cpp/chat-fixture.py [--llama-server PATH] [--models DIR] [--port N]
"""
import argparse
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "llm" / "tests" / "fixtures" / "chat_prompts.json"

# model file -> extra llama-server arguments
MODELS = {
    "SmolLM2-135M-Instruct.Q4_1.gguf": [],
    "gemma-3-270m-q4_k_m.gguf": ["--no-jinja", "--chat-template", "gemma"],
}

CONVERSATIONS = [
    [{"role": "user", "content": "Hi!"}],
    [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "What colour is the sky?"},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "  And at night?\n"},
    ],
    [{"role": "user", "content": "Translate to French:\n\n\"Good morning, 42 friends!\" 😀"}],
    [
        {"role": "user", "content": "code:\n    fn main() {}\n\tdone"},
        {"role": "assistant", "content": "\nLooks fine. \n"},
        {"role": "user", "content": "Thanks"},
    ],
]


def find_server(explicit):
    if explicit:
        return Path(explicit)
    build = REPO / "scripts" / "llama-cpp" / "build.sh"
    res = subprocess.run(["bash", str(build)], stdout=subprocess.PIPE, check=True, text=True)
    return Path(res.stdout.strip().splitlines()[-1]) / "llama-server"


def post(port, path, body):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def wait_ready(port, proc, log):
    for _ in range(240):
        if proc.poll() is not None:
            sys.exit(f"llama-server exited with {proc.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    sys.exit(f"llama-server did not become ready; see {log}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-server")
    ap.add_argument("--models", default=os.environ.get("LADDER_MODELS", str(Path.home() / ".cache/ladder/models")))
    ap.add_argument("--port", type=int, default=18093)
    args = ap.parse_args()

    server = find_server(args.llama_server)
    fixture = {
        "about": "llama.cpp /apply-template output; regenerate with scripts/llama-cpp/chat-fixture.py",
        "llama_cpp_python": os.environ.get("LLAMA_CPP_PYTHON_VERSION", "0.3.36"),
        "conversations": CONVERSATIONS,
        "models": {},
    }
    for name, extra in MODELS.items():
        model = Path(args.models) / name
        if not model.is_file():
            sys.exit(f"{model} not found; fetch the default models first or pass --models DIR")
        log = Path(os.environ.get("TMPDIR", "/tmp")) / f"chat-fixture-{name}.log"
        cmd = [str(server), "-m", str(model), "--host", "127.0.0.1", "--port", str(args.port),
               "-t", "1", "-c", "1024", "-np", "1"] + extra
        with open(log, "wb") as logf:
            proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT)
        try:
            wait_ready(args.port, proc, log)
            prompts = [post(args.port, "/apply-template", {"messages": c})["prompt"] for c in CONVERSATIONS]
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        fixture["models"][name] = {"server_args": extra, "prompts": prompts}
        print(f"{name}: {len(prompts)} prompts", file=sys.stderr)

    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(fixture, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
