#!/usr/bin/env python3
"""Differential check of the `llm` tokenizer against llama.cpp on random documents.

Generates N random documents (seeded) mixing scripts, digits, emoji, whitespace runs, code
and special-token text, tokenizes each with llama.cpp's `llama-tokenize` and with the
crate's `tokenize` example, and reports the first difference per document. Slower and wider
than the committed fixture; run it after changing the tokenizer.

Usage:
  scripts/llama-cpp/tokenizer-diff.py [--docs N] [--seed S] [--models DIR] [--llama-tokenize PATH]
"""
import argparse
import importlib.util
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

spec = importlib.util.spec_from_file_location("fixture", Path(__file__).resolve().parent / "tokenizer-fixture.py")
fixture = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fixture)

PIECES = [
    "the", "The", " and", "tokenizer", "don't", "I'll", "we're", "naïve", "café", "Straße",
    "日本語", "漢字", "テスト", "中文", "你好", "한국어", "Привет", "Ελληνικά", "مرحبا", "नमस्ते", "ภาษาไทย",
    "😀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "½", "²", "٣", "Ⅻ", "₿", "€", "—", "…", "“", "”",
    "0", "7", "42", "2024", "3.14159", "1,000,000", "0x1F",
    "{", "}", "(", ")", "[", "]", "<", ">", "=>", "->", "::", "&&", "||", "!=", "==", "+=", "#", "//", "/*", "*/",
    "fn", "def", "return", "println!", "<div>", "</div>", "<b>", "<table>", "&amp;",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>",
    "<|im_start", "end_of_turn>", "[multimodal]", "<0x41>", "▁", "Ġ",
    "'", "'s", "'ll", "\"", "`", "\\", "\u00a0", "\u3000", "\u200b", "\u200d", "\ufeff", "\u0007",
]
SPACES = [" ", " ", " ", " ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\r\n", " \n", "\n  ", ""]


def random_doc(rng, n):
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.08:
            out.append(chr(rng.choice([rng.randint(0x20, 0x7E), rng.randint(0xA0, 0x2FFF), rng.randint(0x3000, 0xD7FF), rng.randint(0x1F300, 0x1FAFF)])))
        else:
            out.append(rng.choice(PIECES))
        out.append(rng.choice(SPACES))
    return "".join(out)


def ours(exe, model, path, prompt):
    cmd = [str(exe), str(model), "-f", path] + ([] if prompt else ["--no-bos", "--no-parse-special"])
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True, text=True)
    return [int(x) for x in res.stdout.strip().strip("[]").split(",") if x.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--pieces", type=int, default=400, help="pieces per document")
    ap.add_argument("--llama-tokenize")
    ap.add_argument("--models", default=os.environ.get("LADDER_MODELS", str(Path.home() / ".cache/ladder/models")))
    args = ap.parse_args()

    llama = fixture.find_llama_tokenize(args.llama_tokenize)
    target = Path(os.environ.get("CARGO_TARGET_DIR", fixture.REPO / "target"))
    subprocess.run(["cargo", "build", "--quiet", "--release", "-p", "llm", "--example", "tokenize"], cwd=fixture.REPO, check=True)
    exe = target / "release" / "examples" / "tokenize"

    rng = random.Random(args.seed)
    docs = [random_doc(rng, args.pieces) for _ in range(args.docs)]
    bad = 0
    for name in fixture.MODELS:
        model = Path(args.models) / name
        if not model.is_file():
            sys.exit(f"{model} not found; pass --models DIR")
        ok = 0
        for i, doc in enumerate(docs):
            with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt", delete=False) as f:
                f.write(doc)
                path = f.name
            try:
                for prompt in (True, False):
                    want = fixture.tokenize(llama, model, doc, prompt)
                    got = ours(exe, model, path, prompt)
                    if got == want:
                        ok += 1
                        continue
                    bad += 1
                    k = next((j for j, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
                    print(f"{name} doc {i} ({'prompt' if prompt else 'text'}): first difference at token {k}:"
                          f"\n  ours:  {got[max(0, k - 3):k + 5]}\n  llama: {want[max(0, k - 3):k + 5]}")
            finally:
                os.unlink(path)
        print(f"{name}: {ok}/{2 * len(docs)} documents identical")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
