"""Perplexity and wall time of every built-in baseline on the embedded model, at 50 % unstructured and 2:4.

Writes benchmarks/results/baselines.md (and .json). The reference column is the independent implementation in
../shared/REFERENCE.md, same protocol; ratios are ours / reference. Extra rows reproduce the reference's variants:
magnitude with one threshold per matrix (`group=layer`) and Wanda from dense statistics.

    python benchmarks/baselines.py            # ~15 min on 2 CPU threads
    python benchmarks/baselines.py --resume   # after an interruption: keep the rows already measured

Every row is appended to results/baselines.rows.jsonl as soon as it is measured.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from evoprune.data.protocol import PerplexitySpec
from evoprune.data.tokens import CalibSpec
from evoprune.jobs.baselines import baseline_recipes, run_baselines
from evoprune.model.loading import load_model
from evoprune.prune.metrics import BUILTIN_METRICS

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
ROWS = RESULTS / "baselines.rows.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-eval-tokens", type=int, default=16384)
    parser.add_argument("--resume", action="store_true", help="skip rows already in baselines.rows.jsonl")
    parser.add_argument("--report-only", action="store_true", help="rewrite baselines.md from the rows file")
    args = parser.parse_args()
    if args.report_only:
        write(sorted([json.loads(x) for x in ROWS.read_text().splitlines()], key=ORDER), None)
        return
    os.environ.setdefault("EVOPRUNE_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    torch.set_num_threads(args.threads)
    loaded = load_model("smollm2-135m", "cpu", "float32")
    calib, evaluation = CalibSpec("wikitext2", 32, 256, 0), PerplexitySpec("wikitext2", 512, args.max_eval_tokens)
    runs = [
        dict(patterns=["unstructured", "2:4"], mode="sequential", group="row"),
        dict(patterns=["unstructured"], mode="sequential", group="layer", methods=["magnitude"]),
        dict(patterns=["unstructured", "2:4"], mode="dense", group="row", methods=["wanda", "pruner-zero"]),
    ]
    RESULTS.mkdir(exist_ok=True)
    rows = [json.loads(line) for line in ROWS.read_text().splitlines()] if args.resume and ROWS.is_file() else []
    if not args.resume:
        ROWS.write_text("")
    done = {row_key(r) for r in rows}
    protocol = None
    for run in runs:
        for pattern in run["patterns"]:
            methods = [m for m in run.get("methods", BUILTIN_METRICS)
                       if (m, pattern, run["group"], "sequential" if m == "sparsegpt" else run["mode"]) not in done]
            if not methods and ("dense", "-", "row", "sequential") in done:
                continue
            result = run_baselines(loaded, 0.5, [pattern], calib, evaluation, baseline_recipes(methods),
                                   run["mode"], run["group"], on_row=lambda r: record(r, rows, done))
            protocol = result["protocol"]
    write(sorted(rows, key=ORDER), protocol)


def row_key(r: dict) -> tuple:
    return (r["method"], r["pattern"], r.get("group", "row"), r.get("mode", "sequential"))


def record(row: dict, rows: list[dict], done: set) -> None:
    print(row, flush=True)
    if row_key(row) in done:
        return
    done.add(row_key(row))
    rows.append(row)
    with open(ROWS, "a") as fh:
        fh.write(json.dumps(row) + "\n")


def ORDER(r: dict) -> tuple:  # noqa: N802 - a sort key: table order independent of measurement order
    patterns = {"-": 0, "unstructured": 1, "2:4": 2}
    methods = {m: i for i, m in enumerate(("dense", *BUILTIN_METRICS))}
    return (r.get("mode", "sequential") != "sequential" or r.get("group", "row") != "row",
            patterns[r["pattern"]], methods[r["method"]], r.get("group", "row"), r.get("mode", "sequential"))


def write(rows: list[dict], protocol: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    if protocol is not None:
        (RESULTS / "baselines.json").write_text(json.dumps({"protocol": protocol, "rows": rows}, indent=2) + "\n")
    missing = [f"{m} {p}" for p in ("unstructured", "2:4") for m in BUILTIN_METRICS
               if (m, p, "row", "sequential") not in {row_key(r) for r in rows}]
    lines = ["# Baselines on the embedded model (SmolLM2-135M-Instruct, Q4_1 dequantized to fp32)", "",
             "Produced by `python benchmarks/baselines.py`. Calibration: 32 x 256 tokens of wikitext2 valid, seed 0.",
             "Evaluation: first 16,384 tokens of wikitext2 test, 512-token windows. 2 CPU threads.",
             "Reference: ../shared/REFERENCE.md (independent implementation, same protocol).",
             "Wall times (prune s, eval s) were taken on a 2-core VM shared with other jobs: upper bounds, not",
             "figures to compare across rows; perplexities do not depend on load.", "",
             "| method | pattern | group | stats | sparsity | perplexity | reference | ratio | prune s | eval s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        key = (r["method"], r["pattern"], r.get("group", "row"), r.get("mode", "sequential"))
        ref = REFERENCE.get(key)
        ratio = f"{r['perplexity'] / ref:.3f}" if ref else "-"
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {r['sparsity']:.4f} | {r['perplexity']:.2f} "
                     f"| {ref if ref else '-'} | {ratio} | {r['seconds']:.1f} | {r['eval_seconds']:.1f} |")
    if missing:
        lines += ["", f"Not yet measured (run `python benchmarks/baselines.py --resume`): {', '.join(missing)}."]
    (RESULTS / "baselines.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
