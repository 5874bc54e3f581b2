"""Recipes on the embedded model: what allocation (OWL, BESA), refinement (swaps) and the weight update (obs) do
around Wanda's score, beside SparseGPT, at 50 %, 60 %, 70 % unstructured and 2:4, every row from one run.

Sequential protocol (as papers and `evoprune baselines`): 32 x 256 wikitext2 validation tokens (seed 0),
perplexity on the first 16,384 wikitext2 test tokens in 512-token windows. Writes benchmarks/results/recipes.md;
every row is appended to results/recipes.rows.jsonl as soon as it is measured (`--resume` keeps them).

    python benchmarks/recipes.py                   # ~1 h on 2 idle CPU cores
    python benchmarks/recipes.py --resume          # after an interruption
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from evoprune.data.perplexity import perplexity
from evoprune.data.protocol import PerplexitySpec, evaluation_windows
from evoprune.data.tokens import CalibSpec
from evoprune.jobs.baselines import run_baselines
from evoprune.model.loading import load_model
from evoprune.prune.recipe import Recipe

RESULTS = Path(__file__).parent / "results"
ROWS = RESULTS / "recipes.rows.jsonl"
SETTINGS = [("unstructured", 0.5), ("unstructured", 0.7), ("2:4", None), ("unstructured", 0.6)]  # run order
DISPLAY = [("unstructured", 0.5), ("unstructured", 0.6), ("unstructured", 0.7), ("2:4", None)]  # table order
RECIPES = [  # (label, recipe); allocation rows are skipped under 2:4, where the pattern fixes every layer
    ("Wanda", Recipe.parse("wanda")),
    ("Wanda+OWL", Recipe.parse("wanda", "owl")),
    ("Wanda+BESA", Recipe.parse("wanda", "besa")),
    ("Wanda+swaps", Recipe.parse("wanda", refine="swaps")),
    ("Wanda+obs", Recipe.parse("wanda", update="obs")),
    ("Wanda+OWL+swaps+obs", Recipe.parse("wanda", "owl", "swaps", "obs")),
    ("SparseGPT", Recipe.parse("sparsegpt")),
]
REFERENCE = {  # ../shared/REFERENCE.md (independent implementation, same protocol)
    ("Wanda", "unstructured", 0.5): 60.77, ("Wanda", "unstructured", 0.7): 948.7, ("Wanda", "2:4", None): 170.1,
    ("Wanda+OWL", "unstructured", 0.5): 61.44, ("Wanda+OWL", "unstructured", 0.7): 706.5,
    ("Wanda+obs", "unstructured", 0.5): 54.39, ("Wanda+obs", "unstructured", 0.7): 286.3,
    ("Wanda+obs", "2:4", None): 100.6, ("SparseGPT", "unstructured", 0.5): 52.26,
    ("SparseGPT", "unstructured", 0.7): 209.8, ("SparseGPT", "2:4", None): 85.87,
}


def setting_name(pattern: str, sparsity: float | None) -> str:
    return pattern if sparsity is None else f"{sparsity:.0%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-eval-tokens", type=int, default=16384)
    parser.add_argument("--resume", action="store_true", help="keep the rows already in recipes.rows.jsonl")
    parser.add_argument("--only", nargs="*", default=None, help="labels to run (default: all)")
    parser.add_argument("--report-only", action="store_true", help="rewrite recipes.md from the rows file")
    parser.add_argument("--note", default="", help="a paragraph on how this run went (machine load, resumes)")
    args = parser.parse_args()
    os.environ.setdefault("EVOPRUNE_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    RESULTS.mkdir(exist_ok=True)
    rows = [json.loads(x) for x in ROWS.read_text().splitlines()] if (args.resume or args.report_only) \
        and ROWS.is_file() else []
    if not (args.resume or args.report_only):
        ROWS.write_text("")
    if not args.report_only:
        measure(args, rows)
    text = report(rows, args.threads, args.note)
    (RESULTS / "recipes.md").write_text(text)
    print(text)


def measure(args, rows: list[dict]) -> None:
    torch.set_num_threads(args.threads)
    loaded = load_model("smollm2-135m", "cpu", "float32")
    calib, evaluation = CalibSpec("wikitext2", 32, 256, 0), PerplexitySpec("wikitext2", 512, args.max_eval_tokens)
    done = {(r["label"], r["pattern"], r["target"]) for r in rows}

    def record(row: dict) -> None:
        rows.append(row)
        with ROWS.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(f"{row['label']:<22} {row['setting']:<13} ppl {row['perplexity']:10.2f}  prune {row['seconds']:7.1f}s",
              flush=True)

    if ("dense", "-", None) not in done:
        start = time.perf_counter()
        ppl = perplexity(loaded.model, evaluation_windows(loaded, evaluation))
        record({"label": "dense", "setting": "dense", "pattern": "-", "target": None, "perplexity": ppl,
                "seconds": 0.0, "eval_seconds": time.perf_counter() - start, "sparsity": 0.0})
    for pattern, sparsity in SETTINGS:
        todo = [(label, r) for label, r in RECIPES if (label, pattern, sparsity) not in done
                and (args.only is None or label in args.only)
                and not (pattern != "unstructured" and r.allocation.name != "uniform")]
        if not todo:
            continue
        labels = {str(r): label for label, r in todo}
        run_baselines(loaded, sparsity or 0.5, [pattern], calib, evaluation, [r for _, r in todo],
                      with_dense=False, on_row=lambda r, p=pattern, s=sparsity, names=labels: record(
                          {**r, "label": names[r["method"]], "setting": setting_name(p, s), "target": s}))


def report(rows: list[dict], threads: int, note: str = "") -> str:
    by_key = {(r["label"], r["setting"]): r for r in rows}
    settings = [setting_name(p, s) for p, s in DISPLAY]
    dense = by_key.get(("dense", "dense"))
    lines = ["# Recipes on the embedded model: allocation, refinement and weight update around Wanda", "",
             "Produced by `python benchmarks/recipes.py` (every row from one run, in order, on one machine). "
             "SmolLM2-135M-Instruct (Q4_1 dequantized to fp32), sequential protocol, calibration 32 x 256 tokens "
             "of wikitext2 valid (seed 0), perplexity on the first 16,384 tokens of wikitext2 test (512-token "
             f"windows), {threads} CPU threads. Allocations do not apply under 2:4 (the pattern fixes every layer). "
             "Reference values in brackets: ../shared/REFERENCE.md (independent implementation, same protocol).",
             "", note, "", f"Dense perplexity: {dense['perplexity']:.2f}." if dense else "", "",
             "## Perplexity (lower is better)", "", "| recipe | " + " | ".join(settings) + " |",
             "|---|" + "---|" * len(settings)]
    for label, _ in RECIPES:
        cells = []
        for (pattern, sparsity), name in zip(DISPLAY, settings, strict=True):
            row = by_key.get((label, name))
            ref = REFERENCE.get((label, pattern, sparsity))
            cells.append("n/a" if row is None else f"{row['perplexity']:.2f}" + (f" [{ref}]" if ref else ""))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "## Prune seconds (same run; ratio to Wanda's in brackets)", "",
              "| recipe | " + " | ".join(settings) + " |", "|---|" + "---|" * len(settings)]
    for label, _ in RECIPES:
        cells = []
        for name in settings:
            row, base = by_key.get((label, name)), by_key.get(("Wanda", name))
            ratio = f" [{row['seconds'] / base['seconds']:.1f}x]" if row and base and base["seconds"] else ""
            cells.append("n/a" if row is None else f"{row['seconds']:.1f}{ratio}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    wanda = {name: by_key.get(("Wanda", name)) for name in settings}
    lines += ["", "## Reading", ""]
    for label in ("Wanda+swaps", "Wanda+obs", "Wanda+OWL", "Wanda+BESA", "SparseGPT"):
        ratios = [f"{name} {by_key[(label, name)]['perplexity'] / wanda[name]['perplexity']:.3f}"
                  for name in settings if (label, name) in by_key and wanda[name]]
        if ratios:
            lines.append(f"- {label} / Wanda perplexity: " + ", ".join(ratios) + ".")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
