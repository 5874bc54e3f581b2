"""Perplexity and wall time of every built-in baseline on the embedded model, at 50 % unstructured and 2:4.

Writes benchmarks/results/baselines.md (and .json). The reference column is the independent implementation in
../shared/REFERENCE.md, same protocol; ratios are ours / reference. Extra rows reproduce the reference's variants:
magnitude with one threshold per matrix (`group=layer`) and Wanda from dense statistics.

    python benchmarks/baselines.py            # ~15 min on 2 CPU threads
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from evoprune.data.tokens import CalibSpec
from evoprune.jobs.baselines import run_baselines
from evoprune.jobs.protocol import EvalSpec
from evoprune.model.loading import load_model

# REFERENCE.md, 50 %: (method, pattern, group, mode) -> perplexity
REFERENCE = {
    ("dense", "-", "row", "sequential"): 28.82,
    ("magnitude", "unstructured", "layer", "sequential"): 462.7,
    ("wanda", "unstructured", "row", "sequential"): 60.77,
    ("wanda", "unstructured", "row", "dense"): 60.78,
    ("ria", "unstructured", "row", "sequential"): 64.65,
    ("sparsegpt", "unstructured", "row", "sequential"): 52.26,
    ("pruner-zero", "unstructured", "row", "dense"): 67.47,
    ("magnitude", "2:4", "row", "sequential"): 1237,
    ("wanda", "2:4", "row", "sequential"): 170.1,
    ("wanda", "2:4", "row", "dense"): 182.6,
    ("ria", "2:4", "row", "sequential"): 190.2,
    ("sparsegpt", "2:4", "row", "sequential"): 85.87,
}
RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-eval-tokens", type=int, default=16384)
    args = parser.parse_args()
    os.environ.setdefault("EVOPRUNE_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    torch.set_num_threads(args.threads)
    loaded = load_model("smollm2-135m", "cpu", "float32")
    calib, evaluation = CalibSpec("wikitext2", 32, 256, 0), EvalSpec("wikitext2", 512, args.max_eval_tokens)
    runs = [
        dict(patterns=["unstructured", "2:4"], mode="sequential", group="row"),
        dict(patterns=["unstructured"], mode="sequential", group="layer", methods=["magnitude"]),
        dict(patterns=["unstructured", "2:4"], mode="dense", group="row", methods=["wanda", "pruner-zero"]),
    ]
    rows, protocol = [], None
    for i, run in enumerate(runs):
        result = run_baselines(loaded, 0.5, calib=calib, evaluation=evaluation, on_row=print, **run)
        protocol = result["protocol"]
        rows += [r for r in result["rows"] if i == 0 or r["method"] != "dense"]
    write(rows, protocol)


def write(rows: list[dict], protocol: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "baselines.json").write_text(json.dumps({"protocol": protocol, "rows": rows}, indent=2) + "\n")
    lines = ["# Baselines on the embedded model (SmolLM2-135M-Instruct, Q4_1 dequantized to fp32)", "",
             "Produced by `python benchmarks/baselines.py`. Calibration: 32 x 256 tokens of wikitext2 valid, seed 0.",
             "Evaluation: first 16,384 tokens of wikitext2 test, 512-token windows. 2 CPU threads.",
             "Reference: ../shared/REFERENCE.md (independent implementation, same protocol).", "",
             "| method | pattern | group | stats | sparsity | perplexity | reference | ratio | prune s | eval s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        key = (r["method"], r["pattern"], r.get("group", "row"), r.get("mode", "sequential"))
        ref = REFERENCE.get(key)
        ratio = f"{r['perplexity'] / ref:.3f}" if ref else "-"
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {r['sparsity']:.4f} | {r['perplexity']:.2f} "
                     f"| {ref if ref else '-'} | {ratio} | {r['seconds']:.1f} | {r['eval_seconds']:.1f} |")
    (RESULTS / "baselines.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
