#!/usr/bin/env python3
"""Writes offload/tests/fixtures/numpy_quantiles.json: NumPy's own np.quantile over sliding windows.

The offload crate's SlidingWindow::quantile must equal NumPy's default np.quantile (method
"linear") bit for bit; offload/tests/window_props.rs replays every case of this file and compares
with ==. Run by a developer (needs numpy: `pip install numpy`); the output is committed, so the
tests never need Python or NumPy.

    python3 scripts/numpy_quantile_fixture.py

The file lists cases {"name", "capacity", "stream", "betas", "expected"}: `stream` is pushed one
value at a time into a window of `capacity`, and after push i, expected[i][j] is
np.quantile(last `capacity` values, betas[j]), or null while the window holds fewer than two
values. Python's json writes floats with repr, which round-trips exactly.
"""

import json
import pathlib
import sys

import numpy as np

OUT = pathlib.Path(__file__).resolve().parent.parent / "offload/tests/fixtures/numpy_quantiles.json"
BETAS = [0.0, 0.1, 0.123, 0.25, 0.3, 0.5, 0.7, 0.9, 0.987654321, 1.0, 1 / 3]
SEED = 20250516


def case(name, capacity, stream):
    stream = [float(x) for x in stream]
    expected = []
    for i in range(len(stream)):
        window = np.array(stream[max(0, i + 1 - capacity) : i + 1], dtype=np.float64)
        if len(window) < 2:
            expected.append(None)
        else:
            expected.append([float(np.quantile(window, b)) for b in BETAS])
    return {
        "name": name,
        "capacity": capacity,
        "stream": stream,
        "betas": BETAS,
        "expected": expected,
    }


def main():
    rng = np.random.default_rng(SEED)
    cases = [
        # Confidences as a tier sees them: max-softmax probabilities in [0, 1].
        case("uniform_k7", 7, rng.random(40)),
        # Heavy duplication: a few distinct values, so ties straddle the interpolation point.
        case("few_values_k5", 5, rng.choice([0.1, 0.2, 0.25, 0.5, 0.9], size=40)),
        case("few_values_k16", 16, rng.choice([0.0, 0.3, 0.3, 1.0], size=60)),
        # Perplexity confidences 1/(1+PPL), in (0, 0.5].
        case("perplexity_k12", 12, 1.0 / (1.0 + np.exp(rng.exponential(2.0, size=50)))),
        # Wide range and mixed signs (the window accepts any finite value).
        case("wide_k9", 9, rng.normal(0.0, 1.0, size=40) * 10.0 ** rng.integers(-8, 9, size=40)),
        # A window of two: every quantile interpolates between the only two values.
        case("pairs_k2", 2, np.round(rng.random(25), 3)),
        # A window of one: never a threshold.
        case("single_k1", 1, rng.random(6)),
        # A capacity larger than the stream: the window never wraps.
        case("no_wrap_k64", 64, rng.random(30)),
        # A long stream through a larger window with duplicates from rounding.
        case("rounded_k33", 33, np.round(rng.random(100), 2)),
    ]
    document = {
        "generator": "scripts/numpy_quantile_fixture.py",
        "numpy": np.__version__,
        "seed": SEED,
        "cases": cases,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, separators=(",", ":")) + "\n"
    OUT.write_text(text)
    print(f"wrote {OUT} ({len(text)} bytes, {len(cases)} cases)", file=sys.stderr)


if __name__ == "__main__":
    main()
