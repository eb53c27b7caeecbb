#!/usr/bin/env python3
"""Writes eval/tests/fixtures/sacrebleu.json: BLEU and chrF scores computed by the real sacreBLEU
package, against which the `eval` crate's Rust implementation is tested (eval/tests/sacrebleu.rs).

Only needed to regenerate the fixture, never at test time:

    python3 -m venv /tmp/sb-venv && /tmp/sb-venv/bin/pip install sacrebleu==2.6.0
    /tmp/sb-venv/bin/python scripts/sacrebleu_fixture.py [--data DIR]

The hypotheses are ~40 real reference lines of WMT16 de-en (read from the shared datasets
folder, default ../shared/datasets relative to the repository root), perturbed deterministically
(dropped, swapped, duplicated and re-cased words, changed numbers and punctuation), plus
hand-written edge cases: unicode, HTML entities, numbers with separators, an empty hypothesis, an
exact match. Floats are written with Python's repr, so they round-trip exactly.
"""

import argparse
import json
import os
import random
import sys

import sacrebleu
from sacrebleu.metrics import BLEU, CHRF

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def perturb(line, rng, kind):
    words = line.split()
    if not words:
        return line
    if kind == "drop":
        keep = [w for w in words if rng.random() > 0.25]
        return " ".join(keep or words[:1])
    if kind == "swap":
        if len(words) > 2:
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
        return " ".join(words)
    if kind == "dup":
        i = rng.randrange(len(words))
        return " ".join(words[: i + 1] + [words[i]] + words[i + 1 :])
    if kind == "case":
        return " ".join(w.lower() if rng.random() < 0.5 else w.upper() for w in words)
    if kind == "numbers":
        out = []
        for w in words:
            if any(c.isdigit() for c in w):
                w = "".join(str((int(c) + 1) % 10) if c.isdigit() else c for c in w)
            out.append(w)
        return " ".join(out) + " 1,234.5 - 3-4"
    if kind == "punct":
        return line.replace(",", " ,").replace(".", "!") + ' "quoted" (paren) [x]'
    if kind == "truncate":
        return " ".join(words[: max(1, len(words) // 3)])
    if kind == "exact":
        return line
    raise ValueError(kind)


KINDS = ["drop", "swap", "dup", "case", "numbers", "punct", "truncate", "exact"]

EDGE_CASES = [
    ("empty hypothesis", "", "The cat sat on the mat."),
    ("exact match", "The cat sat on the mat.", "The cat sat on the mat."),
    ("unicode", "Müller sagte: «Ça va?» — naïve café 東京 😀.", "Müller said: \"Ça va?\" - naive café Tokyo."),
    ("html entities", "Tom &amp; Jerry &quot;rock&quot; &lt;3 &gt; all", "Tom & Jerry \"rock\" <3 > all"),
    ("numbers", "It cost $1,234.56 in 1990-2000, i.e. 3.5%.", "It cost 1,234.56 dollars in 1990 - 2000, that is 3.5 %."),
    ("dash newline", "well-\nknown <skipped> text\nhere", "well-known text here"),
    ("whitespace", "  spaced\tout \u00a0words\u2003here  ", "spaced out words here"),
    ("ascii separators", "a\x1cb c\x1fd", "a b c d"),
    ("one word", "Yes", "Yes, it is."),
    ("long hypothesis", "the the the the the the the the the the the the", "the cat"),
    ("periods", "Mr. Smith... went to St. Paul's, etc.,and 3.14.", "Mr. Smith went to St. Paul's etc. and 3.14."),
]


def scores(hyps, refs):
    """Corpus and sentence scores for single-reference lists."""
    bleu = BLEU()
    chrf = CHRF()
    corpus_bleu = bleu.corpus_score(hyps, [refs])
    corpus_chrf = chrf.corpus_score(hyps, [refs])
    sent_bleu = BLEU(effective_order=True)
    return {
        "hypotheses": hyps,
        "references": refs,
        "corpus_bleu": corpus_bleu.score,
        "corpus_bleu_counts": list(corpus_bleu.counts),
        "corpus_bleu_totals": list(corpus_bleu.totals),
        "corpus_bleu_sys_len": corpus_bleu.sys_len,
        "corpus_bleu_ref_len": corpus_bleu.ref_len,
        "corpus_chrf": corpus_chrf.score,
        "sentence_bleu": [sent_bleu.sentence_score(h, [r]).score for h, r in zip(hyps, refs)],
        "sentence_chrf": [chrf.sentence_score(h, [r]).score for h, r in zip(hyps, refs)],
        # The compat functions, as most users call them.
        "compat_corpus_bleu": sacrebleu.corpus_bleu(hyps, [refs]).score,
        "compat_sentence_bleu": [sacrebleu.sentence_bleu(h, [r]).score for h, r in zip(hyps, refs)],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "datasets"))
    parser.add_argument("--out", default=os.path.join(ROOT, "eval", "tests", "fixtures", "sacrebleu.json"))
    parser.add_argument("--lines", type=int, default=40)
    args = parser.parse_args()

    path = os.path.join(args.data, "recserve", "wmt16.jsonl")
    refs = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            # Every 37th record, to spread the sample over the file.
            if i % 37 == 0:
                refs.append(json.loads(line)["reference"])
            if len(refs) == args.lines:
                break

    rng = random.Random(7)
    sets = []
    per_kind = {k: ([], []) for k in KINDS}
    all_h, all_r = [], []
    for i, ref in enumerate(refs):
        kind = KINDS[i % len(KINDS)]
        hyp = perturb(ref, rng, kind)
        per_kind[kind][0].append(hyp)
        per_kind[kind][1].append(ref)
        all_h.append(hyp)
        all_r.append(ref)
    sets.append({"name": "wmt16 references, mixed perturbations", **scores(all_h, all_r)})
    for kind, (h, r) in per_kind.items():
        sets.append({"name": f"wmt16 references, {kind}", **scores(h, r)})
    for name, h, r in EDGE_CASES:
        sets.append({"name": name, **scores([h], [r])})
    sets.append({
        "name": "edge cases as one corpus",
        **scores([h for _, h, _ in EDGE_CASES], [r for _, _, r in EDGE_CASES]),
    })

    tokenizer = BLEU().tokenizer
    tokenized = [{"input": s, "output": tokenizer(s.rstrip())} for _, h, r in EDGE_CASES for s in (h, r)]
    tokenized += [{"input": r, "output": tokenizer(r.rstrip())} for r in refs[:10]]

    bleu, chrf = BLEU(), CHRF()
    bleu.corpus_score(all_h, [all_r])
    chrf.corpus_score(all_h, [all_r])
    out = {
        "generator": "scripts/sacrebleu_fixture.py",
        "sacrebleu_version": sacrebleu.__version__,
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
        "tokenizer_13a": tokenized,
        "sets": sets,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(sets)} sets to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
