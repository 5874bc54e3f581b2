"""Fidelity of the fast fitness types: do they rank pruning metrics the way wikitext2 perplexity does?

Every metric (the built-in baselines, hand-written formulas, and random trees from `search_spaces/default.yaml`'s
space) prunes the embedded model to 50 % unstructured with dense calibration statistics (the search's protocol) and
is scored by each fitness type and by perplexity on the wikitext2 test split. Prints Spearman's rho between each
fitness and perplexity, and the seconds per candidate of each fitness. Rows stream to
`benchmarks/results/fidelity.rows.jsonl` (`--resume` skips measured ones); the table goes to `fidelity.md`.

    python benchmarks/fidelity.py [--random 14] [--fitness layer block model] [--resume]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from evoprune.fitness.evaluator import Evaluator
from evoprune.fitness.spec import FITNESS_TYPES, EvalSpec
from evoprune.prune.metrics import BUILTIN_METRICS
from evoprune.search.config import load_config
from evoprune.search.evaluation import canonical_of
from evoprune.search.toolbox import build_toolbox

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
ROWS = RESULTS / "fidelity.rows.jsonl"
# Hand-written metrics spanning good to poor: OptiShear-style exponents, an OBS-style Hessian score (SparseGPT's
# selection without its update), row/column normalisations, and gradient mixtures.
HAND = ["abs(W)*X**0.5", "abs(W)*X**2", "abs(W)*X**0.25", "W**2/Hinv**2", "abs(W)/sqrt(Hinv)",
        "abs(W)*X + abs(G)", "rownorm(abs(W)) + colnorm(abs(W))", "abs(W)*mms(G)", "abs(G)", "X*sqrt(abs(W))",
        "abs(W)*X*abs(G)"]


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rho with average ranks for ties."""
    def ranks(values: list[float]) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        order = values.argsort(kind="stable")
        out = np.empty(len(values))
        out[order] = np.arange(len(values), dtype=np.float64)
        for value in np.unique(values):  # average the ranks of equal values
            tied = values == value
            out[tied] = out[tied].mean()
        return out
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def random_formulas(count: int, seed: int, evaluator: Evaluator, taken: set[str]) -> list[str]:
    """Random trees of the default space, each ranking weights differently from every metric already taken."""
    config = load_config(ROOT.parent / "search_spaces" / "default.yaml")
    toolbox, pset = build_toolbox(config)
    random.seed(seed)
    hashes = {evaluator.evaluate(f)["mask_hash"] for f in taken}
    out: list[str] = []
    while len(out) < count:
        form, _size, reason = canonical_of(toolbox.individual(), pset)
        if reason or form in taken or form in out:
            continue
        result = evaluator.evaluate(form)
        if result["reason"] is None and result["mask_hash"] not in hashes:
            hashes.add(result["mask_hash"])
            out.append(form)
    return out


def load_rows(path: Path = ROWS, key: str = "formula") -> dict[tuple[str, str], dict]:
    """Measured rows of a streamed `.rows.jsonl`, keyed by (candidate, measure); `key` names the candidate field."""
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(r[key], r["measure"]): r for r in rows}


def record(rows: dict, formula: str, measure: str, value: float, seconds: float, path: Path = ROWS,
           key: str = "formula") -> None:
    """One measured row into `rows` and appended to `path` at once (a killed run keeps what it measured)."""
    row = {key: formula, "measure": measure, "value": value, "seconds": seconds}
    rows[(formula, measure)] = row
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")


def report(formulas: list[str], rows: dict, fitness_types: list[str]) -> str:
    lines = ["# Fidelity of the fast fitness types", "",
             "Command: `python benchmarks/fidelity.py` (embedded model, CPU float32, calibration 32×256 wikitext2 "
             "valid seed 0, 8 calibration windows for block/model fitness, 50 % unstructured with dense "
             "statistics, perplexity on the first 16,384 wikitext2 test tokens in 512-token windows).", "",
             "ρ over all metrics mixes useful and catastrophic metrics (random trees often reach perplexity 1e6+); the "
             "second ρ keeps only the metrics a search must order finely (perplexity < 200).", "",
             "| fitness | Spearman ρ vs perplexity | metrics | ρ, perplexity < 200 | metrics | median s / candidate |",
             "|---|---|---|---|---|---|"]
    for fitness in fitness_types:
        both = [f for f in formulas if (f, fitness) in rows and (f, "ppl") in rows]
        if len(both) < 3:
            continue
        rho = spearman([rows[f, fitness]["value"] for f in both], [rows[f, "ppl"]["value"] for f in both])
        good = [f for f in both if rows[f, "ppl"]["value"] < 200]
        rho_good = spearman([rows[f, fitness]["value"] for f in good], [rows[f, "ppl"]["value"] for f in good])
        secs = statistics.median(rows[f, fitness]["seconds"] for f in both)
        lines.append(f"| {fitness} | {rho:.3f} | {len(both)} | {rho_good:.3f} | {len(good)} | {secs:.2f} |")
    lines += ["", "| metric | perplexity | " + " | ".join(fitness_types) + " |",
              "|---|---|" + "---|" * len(fitness_types)]
    for f in sorted(formulas, key=lambda f: rows.get((f, "ppl"), {}).get("value", float("inf"))):
        ppl = rows.get((f, "ppl"), {}).get("value")
        cells = [f"{rows[f, t]['value']:.5g}" if (f, t) in rows else "–" for t in fitness_types]
        lines.append(f"| `{f}` | " + (f"{ppl:.2f}" if ppl is not None else "–") + " | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random", type=int, default=14, help="random trees added to the baselines and hand set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fitness", nargs="+", default=list(FITNESS_TYPES), choices=FITNESS_TYPES)
    parser.add_argument("--layer-rows", type=float, nargs="*", default=[0.25],
                        help="also score the layer fitness on this fraction of rows (EvalSpec.fitness_rows)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resume", action="store_true", help="keep rows already in fidelity.rows.jsonl")
    args = parser.parse_args()
    os.environ.setdefault("EVOPRUNE_DATA_DIR", str(ROOT.parents[1] / "shared" / "data"))
    torch.set_num_threads(args.threads)
    RESULTS.mkdir(exist_ok=True)
    if not args.resume:
        ROWS.unlink(missing_ok=True)
    rows = load_rows()
    base = EvalSpec(device="cpu", dtype="float32", leaves=("W", "X", "G", "Hinv"))
    builtins = [m for m in BUILTIN_METRICS if m != "sparsegpt"]  # SparseGPT updates weights: not a score
    formulas_file = RESULTS / "fidelity.formulas.json"
    layer = Evaluator(EvalSpec(**{**vars(base), "fitness": "layer"}))
    if args.resume and formulas_file.is_file():
        formulas = json.loads(formulas_file.read_text())
    else:
        formulas = builtins + HAND
        formulas += random_formulas(args.random, args.seed, layer, set(formulas))
        formulas_file.write_text(json.dumps(formulas, indent=1) + "\n")
    print(f"{len(formulas)} metrics", flush=True)
    for formula in formulas:
        if (formula, "ppl") not in rows:
            start = time.perf_counter()
            ppl = layer.perplexity(formula)
            record(rows, formula, "ppl", ppl, time.perf_counter() - start)
            print(f"  ppl {ppl:.2f}  {formula}", flush=True)
    measures = {fitness: {"fitness": fitness} for fitness in args.fitness}
    measures.update({f"layer@{r:g}": {"fitness": "layer", "fitness_rows": r} for r in args.layer_rows})
    for fitness, settings in measures.items():
        if all((f, fitness) in rows for f in formulas):
            continue
        ev = layer if fitness == "layer" else Evaluator(EvalSpec(**{**vars(base), **settings}))
        for formula in formulas:
            if (formula, fitness) not in rows:
                ev.mask_cache.clear()  # time a real evaluation, not a cache hit
                result = ev.evaluate(formula)
                record(rows, formula, fitness, result["fitness"], result["seconds"])
                print(f"{fitness:>5} {result['fitness']:.5g} {result['seconds']:.1f}s  {formula}", flush=True)
        del ev
    text = report(formulas, rows, list(measures))
    (RESULTS / "fidelity.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
