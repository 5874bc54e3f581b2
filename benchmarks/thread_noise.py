"""How far does float rounding alone move the reconstruct track? SparseGPT and the evolved reconstruct recipes
(benchmarks/recipes/, exported from the discovery benchmark) pruned with the sequential protocol at 1 and 2 torch
threads: the same code and data, only the summation order of the matrix products changes. One run, one process.

Writes benchmarks/results/thread_noise.md (+ .rows.jsonl).

    python benchmarks/thread_noise.py                   # 16 prunes, ~45 min on an idle 2-core VM
    python benchmarks/thread_noise.py --only resolve    # the comparisons naming "resolve"; other rows kept
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
ROWS = RESULTS / "thread_noise.rows.jsonl"
# A row's setting (its "pattern" field): "unstructured" is 50 %, the name the rows measured first carry.
SETTINGS = {"unstructured": (0.5, "unstructured"), "70%": (0.7, "unstructured"), "2:4": (None, "2:4")}
# (hand-made rival, evolved recipe, setting): each reconstruct setting whose evolved recipe has a sweep; the
# re-solved recipes (`resolve=20`) against SparseGPT, then against SparseGPT's mask with the same re-solve;
# reconstruct-70-alloc-resolve.json is hand-assembled: the 70 % model-seeded search's allocation, re-solved
COMPARISONS = (("sparsegpt", "benchmarks/recipes/reconstruct-50.json", "unstructured"),
               ("sparsegpt", "benchmarks/recipes/reconstruct-2of4.json", "2:4"),
               ("sparsegpt", "benchmarks/recipes/reconstruct-2of4-resolve.json", "2:4"),
               ("benchmarks/recipes/sparsegpt-resolve.json", "benchmarks/recipes/reconstruct-2of4-resolve.json",
                "2:4"),
               ("benchmarks/recipes/sparsegpt-resolve.json", "benchmarks/recipes/reconstruct-70-resolve.json", "70%"),
               ("benchmarks/recipes/sparsegpt-resolve.json", "benchmarks/recipes/reconstruct-70-alloc-resolve.json",
                "70%"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--only", default=None, help="the comparisons naming this text; keeps the other rows")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    kept = [json.loads(x) for x in ROWS.read_text().splitlines()] if ROWS.is_file() else []
    if args.report_only:
        write(kept)
        return
    comparisons = [c for c in COMPARISONS if args.only is None or any(args.only in part for part in c)]
    if not comparisons:
        parser.error(f"no comparison names {args.only!r}")
    prunes = list(dict.fromkeys((name, c[2]) for c in comparisons for name in c[:2]))
    os.environ.setdefault("EVOPRUNE_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    import torch  # here, not at import: discovery.py imports this module's report helpers

    from evoprune.data.perplexity import perplexity
    from evoprune.data.protocol import PerplexitySpec, evaluation_windows
    from evoprune.data.tokens import CalibSpec
    from evoprune.jobs.prune import PruneSpec, prune_loaded, resolve_recipe, snapshot, with_file_stages
    from evoprune.model.loading import load_model

    loaded = load_model("smollm2-135m", "cpu", "float32")
    calib, evaluation = CalibSpec("wikitext2", 32, 256, 0), PerplexitySpec("wikitext2", 512, 16384)
    windows = evaluation_windows(loaded, evaluation)
    original = snapshot(loaded.model)
    RESULTS.mkdir(exist_ok=True)
    rows = [r for r in kept if args.only is not None and (r["method"], r["pattern"]) not in prunes]
    ROWS.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name, pattern in prunes:
            loaded.model.load_state_dict(original)
            start = time.perf_counter()
            method, recipe = resolve_recipe(name, calib.seqlen)
            sparsity, mask_pattern = SETTINGS[pattern]
            spec = PruneSpec(name, sparsity, mask_pattern, "row", "sequential")
            prune_loaded(loaded, method, with_file_stages(spec, recipe), calib)
            row = {"method": name, "pattern": pattern, "threads": threads,
                   "perplexity": perplexity(loaded.model, windows), "seconds": time.perf_counter() - start}
            print(json.dumps(row), flush=True)
            rows.append(row)
            with open(ROWS, "a") as fh:
                fh.write(json.dumps(row) + "\n")
    loaded.model.load_state_dict(original)
    write(rows)


def write(rows: list[dict]) -> None:
    threads = sorted({r["threads"] for r in rows})
    ppl = {(r["method"], r["pattern"], r["threads"]): r["perplexity"] for r in rows}
    lines = ["# Rounding noise of the reconstruct track: the same prune at 1 and 2 torch threads", "",
             "Produced by `python benchmarks/thread_noise.py` (one run, one process). SmolLM2-135M-Instruct "
             "(embedded), float32 on CPU, sequential protocol (32 x 256 wikitext2 validation tokens, seed 0; "
             "perplexity on the first 16,384 wikitext2 test tokens, 512-token windows), 50 % unstructured "
             "(`unstructured`), 70 % unstructured and 2:4. "
             "Only `torch.set_num_threads` changes between columns: the summation order of the matrix products, "
             "hence float rounding. A rounding difference flips a near-tie of a mask, the update carries it into "
             "the layer's other weights and the sequential protocol into every later block.", "",
             "| method | pattern | " + " | ".join(threads_text(t) for t in threads)
             + " | spread (max/min − 1) |",
             "|---|---|" + "---|" * len(threads) + "---|"]
    for name, pattern in dict.fromkeys((r["method"], r["pattern"]) for r in rows):
        values = [ppl.get((name, pattern, t)) for t in threads]
        cells = " | ".join("-" if v is None else f"{v:.2f}" for v in values)
        known = [v for v in values if v is not None]
        lines.append(f"| {name} | {pattern} | {cells} | {max(known) / min(known) - 1:.1%} |")
    lines += ["", "Evolved against its hand-made rival at the same pattern and thread count (negative: the evolved "
              "recipe wins):", ""]
    for rival, evolved, pattern, ratios in evolved_vs_rival(rows):
        lines.append(f"- {pattern}: `{short(evolved)}` against `{short(rival)}`: "
                     + ", ".join(f"{threads_text(t)}: {ratio - 1:+.1%}" for t, ratio in ratios.items()))
    (RESULTS / "thread_noise.md").write_text("\n".join(lines) + "\n")


def threads_text(threads: int) -> str:
    return f"{threads} thread{'s' * (threads > 1)}"


def short(method: str) -> str:
    return method.removeprefix("benchmarks/recipes/")


def evolved_vs_rival(rows: list[dict]) -> list[tuple[str, str, str, dict[int, float]]]:
    """Per comparison measured: (rival, evolved, pattern, {threads: evolved perplexity / rival's})."""
    ppl = {(r["method"], r["pattern"], r["threads"]): r["perplexity"] for r in rows}
    threads = sorted({r["threads"] for r in rows})
    out = []
    for rival, evolved, pattern in COMPARISONS:
        ratios = {t: ppl[(evolved, pattern, t)] / ppl[(rival, pattern, t)] for t in threads
                  if (evolved, pattern, t) in ppl and (rival, pattern, t) in ppl}
        if ratios:
            out.append((rival, evolved, pattern, ratios))
    return out


if __name__ == "__main__":
    main()
