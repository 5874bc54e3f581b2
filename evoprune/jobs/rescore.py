"""The final table's perplexity: a search's best recipes and the hand-made ones, re-scored on held-out text.

`dense`: pruned from the evaluator's cached dense statistics (what the fitness saw; fast). `sequential`: the
protocol papers and `evoprune baselines` use (block by block, each block's statistics from the already pruned
blocks before it; SparseGPT too), on the evaluator's loaded model, restored after each measurement.
"""

from __future__ import annotations

from collections.abc import Callable

from evoprune.errors import EvopruneError
from evoprune.fitness.candidate import parse_candidate
from evoprune.fitness.evaluator import Evaluator
from evoprune.jobs.prune import PruneSpec, prune_loaded, resolve_method
from evoprune.prune.masks import Pattern

RESCORE_MODES = ("dense", "sequential")


def rescorer(evaluator: Evaluator, mode: str, sparsity: float, pattern: Pattern) -> Callable[[str], float]:
    """candidate string (formula, built-in name, sparsegpt, recipe JSON) -> perplexity at one setting."""
    if mode not in RESCORE_MODES:
        raise EvopruneError(f"unknown rescore_mode {mode!r} (use {', '.join(RESCORE_MODES)})")
    sparsity_arg = None if pattern.structured else sparsity
    if mode == "dense":
        return lambda candidate: evaluator.perplexity(candidate, sparsity=sparsity_arg or 0.5, pattern=str(pattern))

    def sequential(candidate: str) -> float:
        recipe = parse_candidate(candidate)
        spec = PruneSpec(recipe.score, sparsity_arg, str(pattern), evaluator.spec.group, "sequential",
                         str(recipe.allocation), str(recipe.refine), str(recipe.update))
        method = resolve_method(recipe.score, evaluator.spec.seqlen)
        evaluator.restore()
        try:
            prune_loaded(evaluator.loaded, method, spec, evaluator.calib)
            return evaluator.model_perplexity()
        finally:
            evaluator.restore()

    return sequential
