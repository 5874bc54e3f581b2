"""`evoprune search | resume`: wire config -> evaluation pool -> GP loop -> best.json."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from evoprune.errors import EvopruneError
from evoprune.fitness.evaluator import CandidateFailure, Evaluator, settings_of
from evoprune.jobs.inputs import check_search_inputs
from evoprune.jobs.rescore import rescorer
from evoprune.paths import StagedDir
from evoprune.search import run_dir
from evoprune.search.config import FREE_EVALUATION_KEYS, RUN_DEFINING, SearchConfig, config_from_dict, with_overrides
from evoprune.search.loop import run_search
from evoprune.search.ranking import diverse_best
from evoprune.search.report import finish_run, hand_made_recipes

log = logging.getLogger(__name__)  # the CLI shows these lines; library code never prints


def _announced(perplexity: Callable[[str], float]) -> Callable[[str], float]:
    """Re-scoring takes ~30 s a formula on a CPU: say what is being measured instead of going quiet."""
    def measured(formula: str) -> float:
        start = time.perf_counter()
        value = perplexity(formula)
        log.info("perplexity %.2f in %.0f s: %s", value, time.perf_counter() - start, formula)
        return value
    return measured


def search_job(config: SearchConfig, out: Path, force: bool = False, resume: bool = False,
               workers: int | None = None, address: str | None = None,
               on_generation: Callable[[dict, dict], None] | None = None) -> dict:
    """Run (or resume) a search; `on_generation(stats, cache)` after every generation (the CLI's dashboard)."""
    from evoprune.distributed import build_evaluator, open_pool

    check_search_inputs(config.evaluation)  # data, model, sizes: refused before `out` is touched
    staged = None
    if not resume:  # a new run is set up beside `out` and takes it over once its evaluator is up
        staged = StagedDir(out, force, "run directory", f", or `evoprune resume {out}`")
        run_dir.write_config(staged.path, config.to_dict())
    with ExitStack() as stack:
        try:
            spec, factory = evaluator_of(config)
            pool = stack.enter_context(open_pool(spec, evaluator_factory=factory, workers=workers, address=address))
        except BaseException:  # the model or data failed to load: the old directory (if any) stays as it was
            if staged is not None:
                staged.discard()
            raise
        if staged is not None:
            staged.commit()
        state = run_search(config, out, pool.map, resume=resume, on_generation=on_generation)
        evaluator = getattr(pool, "evaluator", None)
        if evaluator is None and (config.rescore_top > 0 or config.reselect_top > 0):
            evaluator = build_evaluator(factory, spec)  # Ray pool: the driver needs its own model to re-score
        second = reselect(evaluator, state, config.reselect_top)
        perplexity, recipes = None, None
        if config.rescore_top > 0:
            sparsity, pattern = settings_of(config.evaluation)[0]  # the table's setting: the first one scored
            perplexity = _announced(rescorer(evaluator, config.rescore_mode, sparsity, pattern))
            # a structured search's rows: the built-in scores summed over units, at its ratio
            recipes = ({} if config.structured is not None
                       else hand_made_recipes(config.refine_choices, config.update_choices, config.allocation_tree))
            if config.rescore_mode == "dense":  # SparseGPT chooses its own mask: only the pruning job runs it
                recipes.pop("sparsegpt", None)
        only = config.baselines
        if only is not None and "sparsegpt" in only and recipes and "sparsegpt+resolve" in recipes:
            only = (*only, "sparsegpt+resolve")  # SparseGPT's rival once updates re-solve (`hand_made_recipes`)
        protocol = evaluator.protocol() if evaluator is not None else {}
        if perplexity is not None and config.structured is None:
            protocol = {**protocol, "rescore_mode": config.rescore_mode,
                        "rescore_setting": {"sparsity": sparsity, "pattern": str(pattern)}}
        if second:
            protocol = {**protocol, "reselect": {"top": config.reselect_top, "fitness": "model",
                                                 "fitness_samples": config.evaluation.fitness_samples}}
        return finish_run(out, state, config.rescore_top, config.evaluation.leaves, protocol, perplexity, recipes,
                          only, second)


def evaluator_of(config: SearchConfig) -> tuple[object, str]:
    """(spec, factory) of the evaluators a search runs: the unstructured `Evaluator`, or the structured one."""
    from evoprune.distributed import DEFAULT_FACTORY
    from evoprune.fitness.structured_evaluator import FACTORY
    from evoprune.fitness.structured_spec import StructuredSearchSpec

    if config.structured is None:
        return config.evaluation, DEFAULT_FACTORY
    return StructuredSearchSpec(config.evaluation, config.structured), FACTORY


def reselect(evaluator: Evaluator | None, state: dict, top: int) -> dict[str, float]:
    """The model fitness (KL to dense on calibration windows) of `top` candidates, the best of each distinct set of
    stages first: a cheap fitness guides the search, a faithful one picks among its best
    (benchmarks/results/recipe_fidelity.md)."""
    if evaluator is None or top <= 0:
        return {}
    out = {}
    for form, _result in diverse_best(state["cache"], top):
        start = time.perf_counter()
        try:
            out[form] = evaluator.model_fitness(form)
        except (CandidateFailure, EvopruneError) as exc:  # listed after the reselected ones, in fitness order
            log.warning("model fitness failed (%s): %s", str(exc).splitlines()[0][:200], form)
            continue
        log.info("model fitness %.5f in %.0f s: %s", out[form], time.perf_counter() - start, form)
    return out


def resume_config(out: Path, overrides: dict) -> SearchConfig:
    """The run's own config; keys that define the run cannot be overridden (the checkpoint pins them anyway). A run
    stopped before its first checkpoint (only config.yaml) starts again from generation 0 with that config."""
    fresh = run_dir.load_checkpoint(out) is None
    for key, value in overrides.items():
        free = key == "evaluation" and isinstance(value, dict) and set(value) <= set(FREE_EVALUATION_KEYS)
        if key in RUN_DEFINING and value is not None and not free:
            raise EvopruneError(f"{key} defines the run and cannot change on resume")
    config = with_overrides(config_from_dict(run_dir.read_config(out)), overrides)
    if fresh:
        log.warning("%s has no checkpoint yet: starting it from generation 0", out)
    run_dir.write_config(out, config.to_dict())
    return config
