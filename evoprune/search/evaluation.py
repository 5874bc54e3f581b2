"""Scoring a population: tree -> sympy -> canonical string; each canonical form goes to `map_fn` once per run
(the driver's cache); only strings cross to the evaluators. A tree that cannot even become a formula, or a result
that is NaN or missing, is a failure with fitness inf (the worst), never an exception."""

from __future__ import annotations

import math
from collections.abc import Callable

from evoprune.formula import canonical_string, formula_size
from evoprune.search.primitives import tree_to_sympy

MapFn = Callable[[list[str]], list[dict]]


def canonical_of(tree, pset) -> tuple[str, int | None, str | None]:
    """(canonical text, size, failure reason). A tree sympy cannot build gets its DEAP text as its key."""
    try:
        expr = tree_to_sympy(tree, pset)
        return canonical_string(expr), formula_size(expr), None
    except Exception as exc:  # noqa: BLE001 -- any failure here is the candidate's, not the run's
        return f"tree:{tree}", None, f"sympy: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"


def _clean(result: dict | None, size: int | None) -> dict:
    """The cached record of one evaluation; a NaN, missing or malformed fitness becomes inf with a reason."""
    result = result if isinstance(result, dict) else {}
    fitness, reason = result.get("fitness"), result.get("reason")
    if not isinstance(fitness, (int, float)) or math.isnan(fitness):
        fitness, reason = math.inf, reason or f"evaluator returned fitness {fitness!r}"
    return {"fitness": float(fitness), "reason": reason, "seconds": float(result.get("seconds") or 0.0),
            "prune_seconds": float(result.get("prune_seconds") or 0.0), "mask_hash": result.get("mask_hash"),
            "cached": bool(result.get("cached")), "size": size}


def evaluate_population(population: list, generation: int, genome, cache: dict, map_fn: MapFn) -> list[dict]:
    """Set every individual's fitness; return one log row per individual (candidates.jsonl). `genome` keys the
    individuals (`genome.py`); a bare primitive set keys formula trees."""
    key = getattr(genome, "key", lambda ind: canonical_of(ind, genome))
    text = getattr(genome, "text", str)
    values = getattr(genome, "fitness_values", lambda result: (result["fitness"],))
    keyed = [key(ind) for ind in population]
    todo: dict[str, int | None] = {}
    for form, size, reason in keyed:
        if form in cache or form in todo:
            continue
        if reason is not None:
            cache[form] = {**_clean(None, size), "reason": reason}
        else:
            todo[form] = size
    results = map_fn(list(todo)) if todo else []
    if not isinstance(results, list) or len(results) != len(todo):  # a broken map_fn fails the batch, not the run
        reason = f"map_fn returned {type(results).__name__} of {len(results)} for {len(todo)} formulas"
        results = [{"reason": reason}] * len(todo)
    for (form, size), result in zip(todo.items(), results, strict=True):
        cache[form] = _clean(result, size)
    rows, fresh = [], set(todo)
    for ind, (form, _, _) in zip(population, keyed, strict=True):
        result = cache[form]
        ind.fitness.values = values(result)
        new = form in fresh
        fresh.discard(form)
        rows.append({"generation": generation, "formula": text(ind), "canonical": form,
                     "fitness": result["fitness"], "reason": result["reason"],
                     "seconds": result["seconds"] if new else 0.0, "cached": (not new) or result["cached"],
                     "evaluated": new})
    return rows
