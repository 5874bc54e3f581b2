"""The generation loop: evaluate (through `map_fn`, never Ray directly), log, checkpoint, vary. Reads like DEAP's
eaSimple with elitism, plus a canonical-form cache and a checkpoint after every generation."""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from deap import algorithms, creator, tools

from evoprune.formula import canonical_string, formula_size, parse_formula
from evoprune.search import run_dir
from evoprune.search.config import SearchConfig
from evoprune.search.primitives import NotExpressible, sympy_to_tree, tree_from_string, tree_to_sympy
from evoprune.search.toolbox import build_toolbox

MapFn = Callable[[list[str]], list[dict]]
BASELINE_FORMULAS = {"magnitude": "abs(W)", "wanda": "abs(W)*X", "ria": "(rownorm(abs(W)) + colnorm(abs(W)))*X**0.5",
                     "pruner-zero": "W**2*mms(G)"}


def _rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _set_rng(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def initial_population(config: SearchConfig, toolbox, pset) -> list:
    population = toolbox.population(n=config.population)
    if config.seed_baselines:
        seeds = []
        for text in BASELINE_FORMULAS.values():
            try:
                seeds.append(creator.EvoIndividual(sympy_to_tree(parse_formula(text), pset)))
            except (NotExpressible, KeyError, TypeError):
                continue  # the configured primitives cannot write this baseline
        population[: len(seeds)] = seeds
    return population


def evaluate(population: list, generation: int, pset, cache: dict, map_fn: MapFn) -> list[dict]:
    """Fitness for every individual; each canonical form is evaluated once per run."""
    canon = [canonical_string(tree_to_sympy(ind, pset)) for ind in population]
    todo = list(dict.fromkeys(c for c in canon if c not in cache))
    for form, result in zip(todo, map_fn(todo), strict=True):
        cache[form] = {k: result.get(k) for k in ("fitness", "reason", "seconds", "mask_hash", "cached")}
    rows, fresh = [], set(todo)
    for ind, form in zip(population, canon, strict=True):
        result = cache[form]
        ind.fitness.values = (result["fitness"],)
        new = form in fresh
        fresh.discard(form)
        rows.append({"generation": generation, "formula": str(ind), "canonical": form,
                     "fitness": result["fitness"], "reason": result["reason"],
                     "seconds": result["seconds"] if new else 0.0, "cached": (not new) or bool(result["cached"])})
    return rows


def next_generation(population: list, config: SearchConfig, toolbox, retries: int = 3) -> list:
    """Elites + varied tournament winners. An offspring identical to one already in the new generation is
    mutated again (up to `retries` times): small populations otherwise collapse onto a few tiny trees."""
    elite = [toolbox.clone(ind) for ind in tools.selBest(population, config.elitism)]
    offspring = toolbox.select(population, len(population) - config.elitism)
    offspring = algorithms.varAnd(offspring, toolbox, config.cx_prob, config.mut_prob)
    seen = {str(ind) for ind in elite}
    for i, ind in enumerate(offspring):
        for _ in range(retries):
            if str(ind) not in seen:
                break
            (ind,) = toolbox.mutate(toolbox.clone(ind))
            del ind.fitness.values
        offspring[i] = ind
        seen.add(str(ind))
    return elite + offspring


def generation_stats(generation: int, rows: list[dict], seconds: float) -> dict:
    finite = [r["fitness"] for r in rows if math.isfinite(r["fitness"])]
    evaluated = [r for r in rows if r["seconds"] > 0]
    return {"generation": generation, "best": min(finite, default=None),
            "median": statistics.median(finite) if finite else None,
            "evaluations": len(evaluated), "cache_hits": sum(r["cached"] for r in rows),
            "candidates": len(rows), "failures": len(rows) - len(finite), "seconds": seconds}


def run_search(config: SearchConfig, out: Path, map_fn: MapFn, resume: bool = False,
               on_generation: Callable[[dict, dict], None] | None = None,
               stop_after: int | None = None) -> dict:
    """Run (or resume) a search in `out`; returns the final state. `stop_after=k` stops after generation k
    (used to test resume)."""
    toolbox, pset = build_toolbox(config)
    state = run_dir.load_checkpoint(out) if resume else None
    if state is None:
        _seed_all(config.seed)
        population = initial_population(config, toolbox, pset)
        state = {"generation": -1, "cache": {}, "history": [], "population": []}
    else:
        _set_rng(state["rng"])
        population = [creator.EvoIndividual(tree_from_string(s, pset)) for s in state["population"]]
        evaluate(population, state["generation"], pset, state["cache"], map_fn)  # fitness from the cache
        run_dir.truncate_candidates(out, state["generation"])
    for generation in range(state["generation"] + 1, config.generations):
        start = time.perf_counter()
        if generation > 0:
            population = next_generation(population, config, toolbox)
        rows = evaluate(population, generation, pset, state["cache"], map_fn)
        run_dir.append_candidates(out, rows)
        state["history"].append(generation_stats(generation, rows, time.perf_counter() - start))
        state.update(generation=generation, population=[str(ind) for ind in population], rng=_rng_state())
        run_dir.save_checkpoint(out, state)
        if on_generation is not None:
            on_generation(state["history"][-1], state["cache"])
        if stop_after is not None and generation >= stop_after:
            break
    return state


def ranked(cache: dict) -> list[tuple[str, dict]]:
    """Distinct canonical formulas by fitness (the hall of fame), failures excluded."""
    good = [(form, r) for form, r in cache.items() if math.isfinite(r["fitness"])]
    return sorted(good, key=lambda item: (item[1]["fitness"], formula_size(parse_formula(item[0])), item[0]))


def pareto_front(cache: dict) -> list[dict]:
    """Non-dominated (fitness, size) pairs: the smallest formula for each level of fitness."""
    front, best_so_far = [], math.inf
    points = sorted((formula_size(parse_formula(f)), r["fitness"], f) for f, r in cache.items()
                    if math.isfinite(r["fitness"]))
    for size, fitness, form in points:
        if fitness < best_so_far:
            front.append({"canonical": form, "size": size, "fitness": fitness})
            best_so_far = fitness
    return front
