#!/usr/bin/env python3
"""Write llm/tests/fixtures/llama_cpp_greedy.json: llama.cpp's greedy continuations of a few
prompts on both default models, with the log-probability of every chosen token and the ten
most likely alternatives at each step.

Starts `llama-server` (built by scripts/llama-cpp/build.sh) on each default model, tokenizes
each prompt with its `/tokenize` endpoint and asks `/completion` for a greedy continuation
with `n_probs`. llm/tests/engine_llama_cpp.rs feeds the same token ids to `llm` and compares
its next-token distributions with these, step by step.

Usage:
  scripts/llama-cpp/logits-fixture.py [--llama-server PATH] [--models DIR] [--port N]
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
OUT = REPO / "llm" / "tests" / "fixtures" / "llama_cpp_greedy.json"
GENERATE = 24
TOP = 10

# A passage long enough (over 512 tokens) that Gemma's sliding-window layers drop part of it.
LONG = " ".join(
    f"Item {i}: the {['red', 'green', 'blue', 'amber'][i % 4]} box on shelf {i * 7 % 13} holds {i * i % 97} marbles."
    for i in range(60)
)

PROMPTS = {
    "SmolLM2-135M-Instruct.Q4_1.gguf": [
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nWrite a haiku about rain.<|im_end|>\n<|im_start|>assistant\n",
        "def fibonacci(n):\n    ",
        LONG + "\nQuestion: how many marbles does item 3 hold?\nAnswer:",
    ],
    "gemma-3-270m-q4_k_m.gguf": [
        "The capital of France is",
        "Translate English to German: The weather is nice today. =>",
        "def fibonacci(n):\n    ",
        LONG + "\nQuestion: how many marbles does item 3 hold?\nAnswer:",
    ],
}


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
    with urllib.request.urlopen(req, timeout=120) as r:
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
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-server")
    ap.add_argument("--models", default=os.environ.get("LADDER_MODELS", str(Path.home() / ".cache/ladder/models")))
    ap.add_argument("--port", type=int, default=8437)
    args = ap.parse_args()
    server = find_server(args.llama_server)
    out = {"llama_cpp_python": os.environ.get("LLAMA_CPP_PYTHON_VERSION", "0.3.36"), "models": {}}
    for model, prompts in PROMPTS.items():
        log = Path("/tmp") / f"logits-fixture-{model}.log"
        with open(log, "w") as lf:
            proc = subprocess.Popen(
                [str(server), "-m", str(Path(args.models) / model), "--host", "127.0.0.1",
                 "--port", str(args.port), "-t", "2", "-c", "4096", "-np", "1", "--no-warmup"],
                stdout=lf, stderr=subprocess.STDOUT,
            )
        try:
            wait_ready(args.port, proc, log)
            cases = []
            for text in prompts:
                ids = post(args.port, "/tokenize", {"content": text, "add_special": True, "parse_special": True})["tokens"]
                res = post(args.port, "/completion", {
                    "prompt": ids, "n_predict": GENERATE, "temperature": 0, "n_probs": TOP,
                    "cache_prompt": False, "samplers": ["top_k"], "top_k": 1,
                })
                steps = []
                for p in res["completion_probabilities"]:
                    steps.append({
                        "id": p["id"],
                        "logprob": p["logprob"],
                        "top": [[t["id"], t["logprob"]] for t in p["top_logprobs"]],
                    })
                cases.append({"text": text, "prompt": ids, "steps": steps, "content": res["content"]})
                print(f"{model}: {len(ids)} prompt tokens -> {res['content']!r}", file=sys.stderr)
            out["models"][model] = cases
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
