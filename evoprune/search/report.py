"""The end of a run: best.json (best first, the top few re-scored by perplexity, beside the built-in baselines
under the same protocol), the Pareto front, the fitness history and the cache hit rates."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from evoprune.fitness.candidate import candidate_text, parse_candidate
from evoprune.formula import formula_leaves, parse_formula, to_latex, to_text
from evoprune.prune.metrics import BASELINE_FORMULAS, BUILTIN_METRICS
from evoprune.prune.recipe import Recipe
from evoprune.prune.sweep import SPARSEGPT_SCORE
from evoprune.prune.update import parse_update
from evoprune.search import run_dir
from evoprune.search.ranking import hall_of_fame, pareto_front

BEST_KEPT = 10
PerplexityFn = Callable[[str], float]


def _perplexity(fn: PerplexityFn | None, formula: str) -> tuple[float | None, str | None]:
    if fn is None:
        return None, None
    try:
        return float(fn(formula)), None
    except Exception as exc:  # noqa: BLE001 -- one formula that cannot be re-scored must not lose the run's result
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"


def recipe_text(recipe: Recipe) -> str:
    """One line: the score's unicode text, then the stages that are not off (`|W|·X + tree:...;depth + obs`)."""
    stages = [str(s) for s in (recipe.allocation, recipe.refine, recipe.update) if s.name not in ("uniform", "none")]
    score = recipe.score if recipe.score in BUILTIN_METRICS else to_text(parse_formula(recipe.score))
    return " + ".join([score, *stages])


def best_rows(state: dict, rescore_top: int, perplexity_fn: PerplexityFn | None,
              second: dict[str, float] | None = None) -> list[dict]:
    """Best first. `canonical` is the cache key the evaluators scored (a formula, or a recipe's canonical JSON);
    `formula` the score formula, `recipe` the whole recipe (stages `uniform`/`none` for a bare formula).
    `second`: candidate -> a second opinion (the model fitness, lower is better): those candidates come first, in
    its order (`reselect_top`), the rest after them in fitness order."""
    second = second or {}
    fame = hall_of_fame(state["cache"], BEST_KEPT)
    fame = (sorted((f for f in fame if f[0] in second), key=lambda f: second[f[0]])
            + [f for f in fame if f[0] not in second])
    rows = []
    for i, (form, result) in enumerate(fame):
        ppl, error = _perplexity(perplexity_fn if i < rescore_top else None, form)
        recipe = parse_candidate(form)
        expr = parse_formula(recipe.score)
        rows.append({"formula": recipe.score, "canonical": form, "recipe": recipe.to_dict(),
                     "fitness": result["fitness"], "size": result["size"], "model_fitness": second.get(form),
                     "prune_seconds": result.get("prune_seconds"),
                     "perplexity": ppl,
                     "perplexity_error": error, "text": recipe_text(recipe), "latex": to_latex(expr)})
    return rows


def hand_made_recipes(refine_choices: tuple[str, ...], update_choices: tuple[str, ...],
                      allocation_tree: bool) -> dict[str, str]:
    """The published recipes a recipe search competes with, by the genes it has: Wanda with OWL (allocation),
    swaps (refinement), the OBS update, all of them, and SparseGPT (its own update-aware mask) when updates are on;
    when an update choice re-solves the kept weights (`resolve=N`), SparseGPT's mask with the same re-solve too, so
    that a recipe gaining from the re-solve alone does not count as discovered."""
    refine = next((r for r in refine_choices if r != "none"), None)
    update = next((u for u in update_choices if u != "none"), None)
    out = {}
    if allocation_tree:
        out["wanda+owl"] = Recipe.parse("wanda", "owl")
    if refine:
        out["wanda+swaps"] = Recipe.parse("wanda", refine=refine)
    if update:
        out["wanda+obs"] = Recipe.parse("wanda", update=update)
    if update and (refine or allocation_tree):
        out["wanda+all"] = Recipe.parse("wanda", "owl" if allocation_tree else "uniform", refine or "none", update)
    texts = {name: candidate_text(r) for name, r in out.items()}
    if update:
        texts["sparsegpt"] = "sparsegpt"
        steps = max(parse_update(u).get("resolve", 0) for u in update_choices)
        if steps:
            texts["sparsegpt+resolve"] = candidate_text(Recipe.parse(SPARSEGPT_SCORE,
                                                                     update=f"sweep:resolve={steps:g}"))
    return texts


def baseline_rows(available_leaves: tuple[str, ...], perplexity_fn: PerplexityFn | None,
                  recipes: dict[str, str] | None = None, only: tuple[str, ...] | None = None) -> list[dict]:
    """Every built-in baseline the evaluator's leaves can compute, and the hand-made `recipes` (name -> candidate
    string), re-scored exactly like the best formulas; `only` keeps the named ones (a CPU budget)."""
    rows = []
    for name, text in BASELINE_FORMULAS.items():
        if perplexity_fn is None or not formula_leaves(parse_formula(text)) <= set(available_leaves):
            continue
        if only is not None and name not in only:
            continue
        ppl, error = _perplexity(perplexity_fn, text)
        rows.append({"method": name, "formula": text, "perplexity": ppl, "perplexity_error": error})
    for name, text in (recipes or {}).items():
        if perplexity_fn is None or (only is not None and name not in only):
            continue
        ppl, error = _perplexity(perplexity_fn, text)
        rows.append({"method": name, "formula": text, "perplexity": ppl, "perplexity_error": error})
    return rows


def cache_summary(state: dict) -> dict:
    """Canonical-cache hits: candidates that needed no evaluation; mask-hash hits: evaluations the evaluator
    answered from an identical set of masks (a rank-equivalent formula seen before)."""
    candidates = sum(h["candidates"] for h in state["history"])
    evaluations = sum(h["evaluations"] for h in state["history"])
    mask_hits = sum(1 for r in state["cache"].values() if r.get("cached"))
    return {"candidates": candidates, "unique_formulas": len(state["cache"]), "evaluations": evaluations,
            "canonical_hit_rate": 1 - evaluations / candidates if candidates else 0.0,
            "mask_hash_hits": mask_hits, "mask_hash_hit_rate": mask_hits / evaluations if evaluations else 0.0,
            "failures": sum(1 for r in state["cache"].values() if not math.isfinite(r["fitness"]))}


def finish_run(out: Path, state: dict, rescore_top: int, available_leaves: tuple[str, ...], protocol: dict,
               perplexity_fn: PerplexityFn | None, recipes: dict[str, str] | None = None,
               only: tuple[str, ...] | None = None, second: dict[str, float] | None = None) -> dict:
    """Write best.json and return its payload. `available_leaves`: what the evaluator computes (for baselines);
    `recipes`: hand-made recipes re-scored beside them (`hand_made_recipes`); `only`: the baselines kept;
    `second`: the model fitness of the reselected candidates (`best_rows`)."""
    payload = {"best": best_rows(state, rescore_top, perplexity_fn, second),
               "baselines": baseline_rows(available_leaves, perplexity_fn, recipes, only),
               "pareto": pareto_front(state["cache"]), "pareto_seconds": pareto_front(state["cache"], "prune_seconds"),
               "history": state["history"], "protocol": protocol,
               "cache": cache_summary(state)}
    run_dir.write_best(out, payload)
    return payload
