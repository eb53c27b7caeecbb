#!/usr/bin/env python3
"""Write llm/tests/fixtures/tokenizer_ids.json: llama.cpp's token ids for a set of test strings.

The `llm` crate's tokenizer must give exactly these ids (llm/tests/tokenizer_llama_cpp.rs).
For every default model and every string, two encodings are recorded:

  prompt: what `llama-tokenize` does by default: BOS if the model wants one, control-token
          text (`<|im_start|>`, `<start_of_turn>`) parsed into control tokens;
  text:   `--no-bos --no-parse-special`: nothing added, control-token text stays text.

Usage:
  scripts/llama-cpp/tokenizer-fixture.py [--llama-tokenize PATH] [--models DIR]

llama-tokenize defaults to the binary scripts/llama-cpp/build.sh builds (it is run if
needed); models default to $LADDER_MODELS or ~/.cache/ladder/models/.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "llm" / "tests" / "fixtures" / "tokenizer_ids.json"
MODELS = ["SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf"]

STRINGS = [
    # plain text and spacing
    "",
    "Hello world",
    " Hello world",
    "Hello",
    "  two leading spaces",
    "trailing spaces   ",
    "multiple   spaces   between    words",
    " ",
    "    ",
    "Hello\nworld",
    "\n",
    "\n\n\nthree newlines then text",
    "line one\r\nline two\r\n",
    "tab\tseparated\tvalues",
    "\t\t  mixed \t whitespace \n \n",
    "The quick brown fox jumps over the lazy dog. The end.",
    # contractions and case
    "It's a dog's life, isn't it? We'll see, they've said I'd come, you're right, I'm here.",
    "DON'T SHOUT, I'M HERE",
    "'s 're 've 'm 'll 'd 't",
    "rock 'n' roll",
    # digits and numbers
    "1234567890",
    "3.14159 and 2,718,281 and 1e-10 and -42",
    "The year 2024 had 366 days; 10000000000000000000000 is big.",
    "₿ 100 ¥ ½ ² ٣ ৪ Ⅻ",
    "0x1F 0b1010 007",
    # accents and scripts
    "naïve café résumé",
    "Ünïcödé façade — “quotes” ‘single’ … ellipsis",
    "日本語のテキストと漢字とカタカナ",
    "中文测试：你好，世界！",
    "한국어 텍스트입니다",
    "Привет, мир! Как дела?",
    "Ελληνικά γράμματα",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    "ภาษาไทย",
    # emoji and unusual code points
    "emoji 😀🎉👍🏽 family 👨‍👩‍👧‍👦 flag 🇫🇷",
    "😀",
    "a\u00a0b\u3000c\u2003d\u2028e",
    "zero\u200bwidth\u200djoiner\ufeffbom",
    "\u0007 bell \u001b[0m escape",
    "\U0001d54f\U0001d550 math letters",
    # code
    'fn main() {\n    println!("Hello, {}!", name);\n}\n',
    "def f(x):\n\treturn x ** 2  # square\n",
    '<div class="x">&amp; <b>bold</b></div>',
    "SELECT * FROM t WHERE a >= 10 AND b != 'x';",
    "https://example.com/path?q=1&r=2#frag user@example.com",
    "if (a&&b||!c) { x += 1; } // done",
    "    indented four\n        indented eight",
    # runs and punctuation
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "................................ ----------------",
    "!!!??? ... ,,, ;;;",
    # special tokens and their look-alikes
    "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
    "<start_of_turn>user\nHi!<end_of_turn>\n<start_of_turn>model\n",
    "<bos><eos><pad>",
    "<s></s><unk>",
    "text<|endoftext|>more text",
    "<|im_start|><|im_start|>",
    "<|im_start <start_of_turn <|im_end",
    "[multimodal] <table><tr><td>x</td></tr></table>",
    "<0x41> literal byte token text",
    "▁ sentencepiece marker ▁▁",
    "Ġ Ċ gpt2 byte characters",
]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def find_llama_tokenize(explicit):
    if explicit:
        return Path(explicit)
    build = REPO / "scripts" / "llama-cpp" / "build.sh"
    res = subprocess.run(["bash", str(build)], stdout=subprocess.PIPE, check=True, text=True)
    return Path(res.stdout.strip().splitlines()[-1]) / "llama-tokenize"


def tokenize(exe, model, text, prompt):
    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
        f.write(text.encode("utf-8"))
        path = f.name
    try:
        cmd = [str(exe), "-m", str(model), "-f", path, "--ids", "--log-disable", "--no-escape"]
        if not prompt:
            cmd += ["--no-bos", "--no-parse-special"]
        res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    finally:
        os.unlink(path)
    if res.returncode != 0:
        sys.exit(f"llama-tokenize failed on {text!r}: {res.stderr.decode(errors='replace')[-2000:]}")
    lines = [l for l in res.stdout.decode().splitlines() if l.startswith("[")]
    if not lines:
        sys.exit(f"llama-tokenize printed no ids for {text!r}: {res.stdout!r}")
    return json.loads(lines[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-tokenize")
    ap.add_argument("--models", default=os.environ.get("LADDER_MODELS", str(Path.home() / ".cache/ladder/models")))
    args = ap.parse_args()

    exe = find_llama_tokenize(args.llama_tokenize)
    version = os.environ.get("LLAMA_CPP_PYTHON_VERSION", "0.3.36")
    fixture = {
        "about": "llama.cpp token ids; regenerate with scripts/llama-cpp/tokenizer-fixture.py",
        "llama_cpp_python": version,
        "strings": STRINGS,
        "models": {},
    }
    for name in MODELS:
        model = Path(args.models) / name
        if not model.is_file():
            sys.exit(f"{model} not found; fetch the default models first or pass --models DIR")
        print(f"tokenizing {len(STRINGS)} strings with {name}", file=sys.stderr)
        fixture["models"][name] = {
            "sha256": sha256(model),
            "prompt": [tokenize(exe, model, s, True) for s in STRINGS],
            "text": [tokenize(exe, model, s, False) for s in STRINGS],
        }

    OUT.parent.mkdir(parents=True, exist_ok=True)
    # One line per id list keeps the file small and its diffs readable.
    lines = ["{"]
    lines.append(f'  "about": {json.dumps(fixture["about"])},')
    lines.append(f'  "llama_cpp_python": {json.dumps(version)},')
    lines.append('  "strings": [')
    lines.append(",\n".join("    " + json.dumps(s, ensure_ascii=False) for s in STRINGS))
    lines.append("  ],")
    lines.append('  "models": {')
    model_blocks = []
    for name, m in fixture["models"].items():
        block = [f"    {json.dumps(name)}: {{", f'      "sha256": {json.dumps(m["sha256"])},']
        for mode in ("prompt", "text"):
            rows = ",\n".join("        " + json.dumps(ids, separators=(",", ":")) for ids in m[mode])
            block.append(f'      "{mode}": [\n{rows}\n      ]' + ("," if mode == "prompt" else ""))
        block.append("    }")
        model_blocks.append("\n".join(block))
    lines.append(",\n".join(model_blocks))
    lines.append("  }")
    lines.append("}")
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    json.loads(OUT.read_text(encoding="utf-8"))  # check it parses
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
