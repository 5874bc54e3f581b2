"""The hall of fame (distinct canonical formulas, best first) and the Pareto front of fitness vs formula size,
both read from the canonical-form cache: every formula the run ever evaluated, not only the last population."""

from __future__ import annotations

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


def pareto_front(cache: dict) -> list[dict]:
    """Non-dominated (size, fitness) points: for each size, a formula better than every smaller one."""
    front, best_so_far = [], math.inf
    points = sorted((r["size"], r["fitness"], f) for f, r in cache.items() if math.isfinite(r["fitness"]))
    for size, fitness, form in points:
        if fitness < best_so_far:
            front.append({"canonical": form, "size": size, "fitness": fitness})
            best_so_far = fitness
    return front
