"""Fidelity of the fast fitness types on recipes: do they rank allocations and updates the way perplexity does?

`fidelity.py` ranks score formulas under a uniform allocation, where every layer loses the same fraction and the
mean of relative layer errors is a fair sum. A recipe search also moves sparsity between layers; this benchmark
asks whether the fitness still orders what that search proposes. Recipes: Wanda × hand-made allocations (uniform,
OWL, depth offsets) × update (none, OBS), RIA uniform, plus random allocation trees drawn from the recipe presets'
gene space. Each is scored by the `layer` and `fisher` fitness (on the same quarter of the rows the presets use)
and by wikitext2 test perplexity after pruning with dense statistics (the search's protocol). Prints Spearman's rho
per fitness, overall and within each update choice. Rows stream to `benchmarks/results/recipe_fidelity.rows.jsonl`
(`--resume` keeps them); the table goes to `recipe_fidelity.md`.

    python benchmarks/recipe_fidelity.py [--random 6] [--sparsity 0.5] [--resume]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from evoprune.fitness.candidate import candidate_text
from evoprune.fitness.evaluator import Evaluator
from evoprune.fitness.spec import EvalSpec
from evoprune.prune.recipe import Recipe
from evoprune.search.config import load_config
from evoprune.search.genome import build_search

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
ROWS = RESULTS / "recipe_fidelity.rows.jsonl"
sys.path.insert(0, str(ROOT))
import fidelity  # noqa: E402  (one row store for both fidelity benchmarks)
from fidelity import spearman  # noqa: E402  (one rank correlation for both)

SCORES = ["wanda"]
OTHER_SCORES = ["ria"]  # uniform only: a score change beside the allocation changes
ALLOCATIONS = ["uniform", "owl", "depth:slope=0.1", "depth:slope=-0.1"]
FITNESSES = ("layer", "fisher", "model")
# what a recipe search under the layer fitness once returned as its best (perplexity 62.83 against Wanda+OBS's 54.15)
EVOLVED = ['{"allocation": "tree:delta=0.1;div(attn, outlier)", "refine": "none", '
           '"score": "colnorm(log(W**2*X**3*Abs(W)))", "update": "obs"}']


def recipes(count: int, seed: int) -> list[str]:
    """The hand-made grid plus `count` random allocation trees (score wanda, with and without OBS)."""
    out = [candidate_text(Recipe.parse(s, a, "none", u)) for s in SCORES for a in ALLOCATIONS for u in ("none", "obs")]
    out += [candidate_text(Recipe.parse(s, "uniform", "none", u)) for s in OTHER_SCORES for u in ("none", "obs")]
    out += [candidate_text(Recipe.from_dict(json.loads(r))) for r in EVOLVED]
    config = load_config(ROOT.parent / "search_spaces" / "quick.yaml")
    _tb, genome = build_search(config)
    random.seed(seed)
    trees: list[str] = []
    while len(trees) < count:
        allocation, _size = genome.allocation(SimpleNamespace(alloc=genome.new_alloc()))  # score plays no part
        if allocation != "uniform" and allocation not in trees:
            trees.append(allocation)
    for i, allocation in enumerate(trees):
        out.append(candidate_text(Recipe.parse("wanda", allocation, "none", "obs" if i % 2 else "none")))
    return out


def load_rows() -> dict[tuple[str, str], dict]:
    return fidelity.load_rows(ROWS, "recipe")


def record(rows: dict, recipe: str, measure: str, value: float, seconds: float) -> None:
    fidelity.record(rows, recipe, measure, value, seconds, ROWS, "recipe")


def label(recipe: str) -> str:
    r = Recipe.from_dict(json.loads(recipe)) if recipe.startswith("{") else Recipe(score=recipe)
    return " + ".join(str(part) for part in (r.score, r.allocation, r.update) if str(part) not in ("none",))


def rho_line(name: str, subset: list[str], rows: dict) -> str:
    cells = []
    for fitness in FITNESSES:
        both = [r for r in subset if (r, fitness) in rows and (r, "ppl") in rows]
        rho = spearman([rows[r, fitness]["value"] for r in both], [rows[r, "ppl"]["value"] for r in both])
        cells.append(f"{rho:.3f}")
    return f"| {name} | {len(subset)} | " + " | ".join(cells) + " |"


def report(all_recipes: list[str], rows: dict, sparsity: float) -> str:
    with_obs = [r for r in all_recipes if '"update": "obs"' in r]
    without = [r for r in all_recipes if r not in with_obs]
    lines = ["# Fidelity of the fast fitness types on recipes", "",
             f"Command: `python benchmarks/recipe_fidelity.py` (embedded model, CPU float32, calibration 32×256 "
             f"wikitext2 valid seed 0, {sparsity:g} unstructured with dense statistics, fitness on a fixed quarter "
             "of each layer's rows as in the recipe presets, perplexity on the first 16,384 wikitext2 test tokens "
             "in 512-token windows).", "",
             "`layer`: mean over layers of ‖(W−Ŵ)X‖²/‖WX‖². `fisher`: Σ F·‖(W−Ŵ)X‖² / Σ F·‖WX‖² over all "
             "rows of all layers, F the mean squared loss gradient at each output (`stats/sensitivity.py`).", "",
             "`model`: KL to the dense model on 8 calibration windows, every row pruned (what `reselect_top` "
             "uses: too slow to guide a CPU search, ~5 s a candidate, ~11 s with the update).", "",
             "| recipes | n | ρ layer | ρ fisher | ρ model |", "|---|---|---|---|---|",
             rho_line("all", all_recipes, rows), rho_line("no update", without, rows),
             rho_line("OBS update", with_obs, rows), "",
             "| recipe | perplexity | layer | fisher | model |", "|---|---|---|---|---|"]
    for r in sorted(all_recipes, key=lambda r: rows.get((r, "ppl"), {}).get("value", float("inf"))):
        cells = [f"{rows[r, f]['value']:.5g}" if (r, f) in rows else "–" for f in FITNESSES]
        lines.append(f"| `{label(r)}` | {rows[r, 'ppl']['value']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random", type=int, default=6, help="random allocation trees from the recipe gene space")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resume", action="store_true", help="keep rows already in recipe_fidelity.rows.jsonl")
    args = parser.parse_args()
    os.environ.setdefault("EVOPRUNE_DATA_DIR", str(ROOT.parents[1] / "shared" / "data"))
    torch.set_num_threads(args.threads)
    RESULTS.mkdir(exist_ok=True)
    if not args.resume:
        ROWS.unlink(missing_ok=True)
    rows = load_rows()
    base = dict(device="cpu", dtype="float32", leaves=("W", "X", "Hinv"), fitness_rows=0.25,
                sparsities=(args.sparsity,))
    all_recipes = recipes(args.random, args.seed)
    evaluators = {f: Evaluator(EvalSpec(**{**base, "fitness": f, **({"fitness_rows": 1.0} if f == "model" else {})}))
                  for f in FITNESSES}
    for recipe in all_recipes:
        if (recipe, "ppl") not in rows:
            start = time.perf_counter()
            ppl = evaluators["layer"].perplexity(recipe, args.sparsity)
            record(rows, recipe, "ppl", ppl, time.perf_counter() - start)
        for fitness, ev in evaluators.items():
            if (recipe, fitness) not in rows:
                result = ev.evaluate(recipe)
                record(rows, recipe, fitness, result["fitness"], result["seconds"])
        print(f"ppl {rows[recipe, 'ppl']['value']:8.2f}  " + "  ".join(
            f"{f} {rows[recipe, f]['value']:.5f}" for f in FITNESSES) + f"  {label(recipe)}", flush=True)
    text = report(all_recipes, rows, args.sparsity)
    (RESULTS / "recipe_fidelity.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
