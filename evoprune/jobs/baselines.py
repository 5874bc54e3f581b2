"""`evoprune baselines`: dense and every built-in method, per pattern, in one table (perplexity, sparsity, s)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from evoprune.data.perplexity import perplexity
from evoprune.data.protocol import PerplexitySpec, evaluation_windows, protocol_record
from evoprune.data.tokens import CalibSpec
from evoprune.jobs.prune import PruneSpec, prune_loaded, resolve_method, snapshot
from evoprune.model.loading import LoadedModel
from evoprune.prune.masks import check_sparsity, parse_pattern
from evoprune.prune.metrics import BUILTIN_METRICS
from evoprune.prune.recipe import Recipe

Progress = Callable[[str, int, int], None]


def baseline_recipes(methods: Sequence[str], allocation: str = "uniform", refine: str = "none",
                     update: str = "none") -> list[Recipe]:
    """Every method as itself, plus (when any stage is given) every score method with those stages; SparseGPT
    chooses its own mask and update, so it gets no stage row."""
    recipes = [Recipe.parse(m) for m in methods]
    staged = Recipe.parse("wanda", allocation, refine, update)
    if not staged.plain:
        recipes += [Recipe(m, staged.allocation, staged.refine, staged.update) for m in methods if m != "sparsegpt"]
    return recipes


def run_baselines(loaded: LoadedModel, sparsity: float, patterns: Sequence[str], calib: CalibSpec,
                  evaluation: PerplexitySpec, recipes: Sequence[Recipe] | None = None, mode: str = "sequential",
                  group: str = "row", progress: Progress | None = None,
                  on_row: Callable[[dict], None] | None = None, with_dense: bool = True) -> dict:
    """Rows `{"method", "pattern", "sparsity", "perplexity", "seconds", ...}`; dense first. `on_row` streams.
    `method` is the recipe's text (`wanda+owl+obs`); `recipe` its JSON form."""
    recipes = list(recipes or baseline_recipes(BUILTIN_METRICS))
    methods = {r.score: resolve_method(r.score, calib.seqlen) for r in recipes}
    runs = []
    for pattern in patterns:  # validate everything before the first slow step
        structured = parse_pattern(pattern).structured
        for recipe in recipes:
            if structured and recipe.allocation.name != "uniform":
                continue  # a per-layer allocation has no meaning under N:M: no row, not an error
            spec = PruneSpec(recipe.score, None if structured else sparsity, pattern, group, mode,
                             str(recipe.allocation), str(recipe.refine), str(recipe.update))
            spec.validate(methods[recipe.score])
            runs.append((recipe, spec))
    windows = evaluation_windows(loaded, evaluation)
    ppl_progress = (lambda k: progress("perplexity", k, len(windows))) if progress else None
    rows = []

    def emit(row: dict) -> None:
        rows.append(row)
        if on_row is not None:
            on_row(row)

    if with_dense:
        start = time.perf_counter()
        dense = perplexity(loaded.model, windows, progress=ppl_progress)
        emit({"method": "dense", "pattern": "-", "sparsity": 0.0, "target_sparsity": 0.0, "perplexity": dense,
              "seconds": 0.0, "eval_seconds": time.perf_counter() - start})
    original = snapshot(loaded.model)
    for recipe, spec in runs:
        loaded.model.load_state_dict(original)
        method = methods[recipe.score]
        start = time.perf_counter()
        reports = prune_loaded(loaded, method, spec, calib, progress=progress)
        seconds = time.perf_counter() - start
        achieved = sum(r.pruned for r in reports) / sum(r.total for r in reports)
        start = time.perf_counter()
        ppl = perplexity(loaded.model, windows, progress=ppl_progress)
        emit({"method": str(recipe), "recipe": recipe.to_dict(), "pattern": spec.pattern, "sparsity": achieved,
              "target_sparsity": check_sparsity(spec.sparsity, parse_pattern(spec.pattern)),
              "perplexity": ppl, "seconds": seconds, "eval_seconds": time.perf_counter() - start,
              "mode": "sequential" if method.is_sparsegpt else mode, "group": group})
    loaded.model.load_state_dict(original)
    return {"protocol": protocol_record(loaded, calib, evaluation), "rows": rows}
