"""The generation loop: evaluate (through `map_fn`, never Ray directly), log, checkpoint, vary. Reads like DEAP's
eaSimple with elitism, plus a canonical-form cache and a checkpoint after every generation."""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from deap import algorithms, tools

from evoprune.errors import EvopruneError
from evoprune.formula import parse_formula
from evoprune.prune.metrics import BASELINE_FORMULAS
from evoprune.prune.sweep import SPARSEGPT_SCORE
from evoprune.prune.update import parse_update
from evoprune.search import run_dir
from evoprune.search.config import SearchConfig, pin_run_defining
from evoprune.search.evaluation import MapFn, evaluate_population
from evoprune.search.genome import FormulaGenome, build_search
from evoprune.search.primitives import NotExpressible, sympy_to_tree
from evoprune.search.ranking import hall_of_fame
from evoprune.search.rng import rng_state, seed_all, set_rng_state

HALL_OF_FAME = 10


def initial_population(config: SearchConfig, toolbox, genome: FormulaGenome) -> list:
    """Ramped half-and-half from scratch; with `seed_baselines`, the expressible built-ins replace the first few.
    A recipe genome seeds each built-in score with a uniform allocation and every refine/update choice (the
    hand-made recipes a search must beat), at most half the population so that the rest is explored."""
    population = toolbox.population(n=config.population)
    if config.seed_baselines:
        trees = []
        for text in BASELINE_FORMULAS.values():
            try:
                trees.append(sympy_to_tree(parse_formula(text), genome.pset))
            except NotExpressible:
                continue  # the configured primitives or leaves cannot write this baseline
        if genome.multi:
            seeds = [genome.seeded(tree, refine, update) for update in config.update_choices
                     for refine in config.refine_choices for tree in trees]
            sweep = next((u for u in config.update_choices if parse_update(u).name == "sweep"), None)
            if sweep is not None:  # SparseGPT itself is a recipe of this space: its saliency in the sweep
                try:
                    seeds.insert(0, genome.seeded(sympy_to_tree(parse_formula(SPARSEGPT_SCORE), genome.pset),
                                                  "none", sweep))
                except NotExpressible:
                    pass
            seeds = seeds[: max(1, config.population // 2)]
        else:
            seeds = [genome.individual(tree) for tree in trees]
        population[: len(seeds)] = seeds[: config.population]
    return population


def _distinct(offspring: list, seen: set, toolbox, text, retries: int) -> list:
    """An offspring identical to one already kept is mutated again (up to `retries` times): small populations
    otherwise collapse onto a few tiny trees."""
    for i, ind in enumerate(offspring):
        for _ in range(retries):
            if text(ind) not in seen:
                break
            (ind,) = toolbox.mutate(toolbox.clone(ind))
            del ind.fitness.values
        offspring[i] = ind
        seen.add(text(ind))
    return offspring


def next_generation(population: list, config: SearchConfig, toolbox, retries: int = 3, text=str) -> list:
    """Elites + varied tournament winners (distinct from each other where a few re-mutations make them so)."""
    elite = [toolbox.clone(ind) for ind in tools.selBest(population, config.elitism)]
    offspring = toolbox.select(population, len(population) - config.elitism)
    offspring = algorithms.varAnd(offspring, toolbox, config.cx_prob, config.mut_prob)
    return elite + _distinct(offspring, {text(ind) for ind in elite}, toolbox, text, retries)


def nsga2_offspring(population: list, config: SearchConfig, toolbox, text, retries: int = 3) -> list:
    """NSGA-II's offspring: dominance-and-crowding tournaments (selTournamentDCD) over the current front order,
    varied, distinct from the parents. `population` must carry crowding distances (selNSGA2 sets them)."""
    parents = tools.selTournamentDCD(population, len(population))
    offspring = algorithms.varAnd([toolbox.clone(ind) for ind in parents], toolbox, config.cx_prob, config.mut_prob)
    return _distinct(offspring, {text(ind) for ind in population}, toolbox, text, retries)


def generation_stats(generation: int, rows: list[dict], seconds: float,
                     population: list[float] | None = None) -> dict:
    """Counts over the generation's candidates (`rows`); best and median over `population`'s fitness when given
    (NSGA-II: the survivors of parents and offspring, so the best never rises), else over the candidates."""
    finite = [r["fitness"] for r in rows if math.isfinite(r["fitness"])]
    ranked = finite if population is None else [f for f in population if math.isfinite(f)]
    return {"generation": generation, "best": min(ranked, default=None),
            "median": statistics.median(ranked) if ranked else None,
            "evaluations": sum(r["evaluated"] for r in rows), "cache_hits": sum(r["cached"] for r in rows),
            "candidates": len(rows), "failures": len(rows) - len(finite), "seconds": seconds}


# What DEAP, the RNGs and the config reader raise on values of the wrong shape inside a checkpoint.
log = logging.getLogger(__name__)  # the CLI shows these lines; library code never prints
_RESTORE_ERRORS = (NotExpressible, KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError)


def _malformed(out: Path, exc: Exception) -> EvopruneError:
    return EvopruneError(f"checkpoint {out / run_dir.CHECKPOINT} is malformed: {type(exc).__name__}: "
                         f"{str(exc)[:200]}")


def _resume_state(config: SearchConfig, out: Path) -> tuple[SearchConfig, dict | None]:
    """The last checkpoint (None if there is none), with the run-defining keys of `config` pinned to it."""
    state = run_dir.load_checkpoint(out)
    if state is None:
        return config, None
    missing = [key for key in ("generation", "population", "cache", "history", "rng", "config") if key not in state]
    if missing:
        raise EvopruneError(f"checkpoint {out / run_dir.CHECKPOINT} is malformed: no {missing[0]!r}")
    try:
        config, changed = pin_run_defining(config, state["config"])
    except _RESTORE_ERRORS as exc:
        raise _malformed(out, exc) from None
    if changed:
        log.warning("resume keeps the checkpoint's %s", ", ".join(changed))
    return config, state


def restore_population(state: dict, genome: FormulaGenome, out: Path) -> list:
    """The checkpoint's RNG states and population; a damaged or crafted checkpoint is one error, not a traceback
    (its structure was checked on load; these are the values DEAP and the RNGs themselves refuse)."""
    try:
        set_rng_state(state["rng"])
        return [genome.parse(s) for s in state["population"]]
    except _RESTORE_ERRORS as exc:
        raise _malformed(out, exc) from None


def _step(population: list, generation: int, config: SearchConfig, toolbox, genome: FormulaGenome, cache: dict,
          map_fn: MapFn) -> tuple[list, list[dict]]:
    """One generation: (new population, log rows of the candidates it evaluated)."""
    if generation == 0:
        return population, evaluate_population(population, generation, genome, cache, map_fn)
    if config.selection != "nsga2":
        population = next_generation(population, config, toolbox, text=genome.text)
        return population, evaluate_population(population, generation, genome, cache, map_fn)
    # NSGA-II (mu + lambda): parents ranked by fronts and crowding (also sets the distances DCD reads; the same
    # call on a fresh or a resumed population, so a resume continues identically), offspring, then the best
    # len(population) of parents and offspring together.
    parents = tools.selNSGA2(population, len(population))
    offspring = nsga2_offspring(parents, config, toolbox, genome.text)
    rows = evaluate_population(offspring, generation, genome, cache, map_fn)
    return tools.selNSGA2(parents + offspring, len(population)), rows


def run_search(config: SearchConfig, out: Path, map_fn: MapFn, resume: bool = False,
               on_generation: Callable[[dict, dict], None] | None = None, stop_after: int | None = None) -> dict:
    """Run (or resume) a search in the existing directory `out`; returns the final state (population as strings,
    cache, hall of fame, history, RNG states). `stop_after=k` stops after generation k (to test resume)."""
    out = Path(out)
    config, state = _resume_state(config, out) if resume else (config, None)
    toolbox, genome = build_search(config)
    if state is None:
        seed_all(config.seed)
        population = initial_population(config, toolbox, genome)
        state = {"generation": -1, "cache": {}, "history": [], "population": []}
        if resume:  # stopped before the first checkpoint: drop generation 0's partial log, start it again
            run_dir.truncate_candidates(out, -1)
    else:
        population = restore_population(state, genome, out)
        evaluate_population(population, state["generation"], genome, state["cache"], map_fn)  # fitness from cache
        run_dir.truncate_candidates(out, state["generation"])
    for generation in range(state["generation"] + 1, config.generations):
        start = time.perf_counter()
        population, rows = _step(population, generation, config, toolbox, genome, state["cache"], map_fn)
        run_dir.append_candidates(out, rows)
        survivors = None
        if config.selection == "nsga2":
            survivors = [state["cache"][genome.key(ind)[0]]["fitness"] for ind in population]
        state["history"].append(generation_stats(generation, rows, time.perf_counter() - start, survivors))
        state.update(generation=generation, population=[genome.text(ind) for ind in population], rng=rng_state(),
                     config=config.to_dict(), hall_of_fame=[f for f, _ in hall_of_fame(state["cache"], HALL_OF_FAME)])
        run_dir.save_checkpoint(out, state)
        if on_generation is not None:
            on_generation(state["history"][-1], state["cache"])
        if stop_after is not None and generation >= stop_after:
            break
    return state
