"""The hall of fame (distinct canonical formulas, best first) and the Pareto front of fitness vs formula size,
both read from the canonical-form cache: every formula the run ever evaluated, not only the last population."""

from __future__ import annotations

import json
import math


def hall_of_fame(cache: dict, n: int | None = None) -> list[tuple[str, dict]]:
    """Distinct rankings by (fitness, size, text); failures excluded. Formulas with the same masks, or the same
    fitness to the last bit (rank-equivalent up to float ties: log(|W|·X), sqrt(|W·X|), ... of Wanda), are listed
    once, by the smallest of them."""
    good = [(form, r) for form, r in cache.items() if math.isfinite(r["fitness"])]
    good.sort(key=lambda item: (item[1]["fitness"], item[1]["size"], item[0]))
    seen: set = set()
    distinct = []
    for form, result in good:
        keys = {("fitness", result["fitness"])}
        if result.get("mask_hash"):
            keys.add(("masks", result["mask_hash"]))
        if keys & seen:
            continue
        seen |= keys
        distinct.append((form, result))
    return distinct if n is None else distinct[:n]


def stages_of(form: str) -> str:
    """A recipe's stages (allocation, refinement, update) without its score; a plain formula is its own family."""
    try:
        recipe = json.loads(form)
    except ValueError:
        return form
    if not isinstance(recipe, dict):
        return form
    return json.dumps([recipe.get("allocation"), recipe.get("refine"), recipe.get("update")])


def diverse_best(cache: dict, n: int) -> list[tuple[str, dict]]:
    """The best of each distinct set of stages first, in fitness order, then the rest of the hall of fame: `n`
    candidates for a second opinion. The fast fitness can favour one kind of allocation as a whole (fisher
    over-rates sparing attention, recipe_fidelity.md), so its top n are often one allocation with n scores."""
    ranked = hall_of_fame(cache)
    families: set = set()
    first = []
    for form, result in ranked:
        family = stages_of(form)
        if family not in families:
            families.add(family)
            first.append((form, result))
    rest = [item for item in ranked if item not in first]
    return (first + rest)[:n]


def pareto_front(cache: dict, axis: str = "size") -> list[dict]:
    """Non-dominated (axis, fitness) points, the axis ascending: for each value of `axis` (`size`, the formula's
    nodes, or `prune_seconds`, the time the recipe took to prune), a candidate better than every cheaper one."""
    front, best_so_far = [], math.inf
    points = sorted((r.get(axis) or 0.0, r["fitness"], f) for f, r in cache.items() if math.isfinite(r["fitness"]))
    for value, fitness, form in points:
        if fitness < best_so_far:
            front.append({"canonical": form, axis: value, "fitness": fitness})
            best_so_far = fitness
    return front
