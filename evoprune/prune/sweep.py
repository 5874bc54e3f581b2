"""Update-aware masks (the `sweep` update): the mask is chosen inside the OBS column sweep, by a score of the
weights as the sweep has updated them so far — SparseGPT's rule, with any score in place of its W²/[H⁻¹]ⱼⱼ.

With a fixed mask (`update: obs`) a weight is pruned for what it was before any compensation; here, when the sweep
reaches a step of columns (128 unstructured, one N:M group of M columns), it scores those columns as they are now
and prunes the lowest. Inside the sweep the score's leaves are sliced to the step's columns: W is the updated
weight, X and G their columns, and Hinv is the sweep's own [H⁻¹]ⱼⱼ of the columns not yet swept (the squared
diagonal of the inverse Hessian's Cholesky factor, the quantity the OBS error divides by), so `W**2/Hinv` is
SparseGPT's saliency. Operators that read a whole row (rownorm) see the step's columns.

Unstructured: a layer's exact pruned count is apportioned over the steps by their widths and each step prunes its
count with one threshold over the step (SparseGPT's comparison group); N:M: M−N in every group. Given the final
mask, the weights are those of `update: obs` with that mask (the same sweep), so a mask hash still keys them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from itertools import pairwise

import torch

from evoprune.errors import EvopruneError
from evoprune.prune.masks import Pattern, select_mask, select_mask_counts
from evoprune.prune.sparsegpt import factored_sweep, inverse_factor
from evoprune.prune.stages import StageSpec
from evoprune.prune.update import OBS_BLOCKSIZE, OBS_DAMP, resolved

SPARSEGPT_SCORE = "W**2/Hinv"  # with `update: sweep` and a uniform allocation: SparseGPT's masks (tested)
Scorer = Callable[[Mapping[str, torch.Tensor]], torch.Tensor]
# (scorer, leaves of the step) -> scores shaped like the step's W; raises on scores that cannot rank
CheckedScores = Callable[[Scorer, Mapping[str, torch.Tensor]], torch.Tensor]


def step_counts(count: int, cols: int, step: int) -> list[int]:
    """`count` pruned weights apportioned over column steps by their widths, summing to exactly `count`."""
    return [round(count * b / cols) - round(count * a / cols) for a, b in pairwise([*range(0, cols, step), cols])]


def step_leaves(leaves: Mapping[str, torch.Tensor], weight: torch.Tensor, diag: torch.Tensor, j1: int,
                j2: int) -> dict[str, torch.Tensor]:
    """The score's leaves for columns [j1, j2) as the sweep sees them (see the module docstring)."""
    cols = leaves["W"].shape[1]
    out = {name: value[..., j1:j2] if value.shape[-1] == cols else value for name, value in leaves.items()}
    out["W"] = weight
    out["Hinv"] = diag.pow(2).unsqueeze(0)  # the sweep has it whether or not the layer's leaves do
    return out


def _plain_scores(scorer: Scorer, leaves: Mapping[str, torch.Tensor]) -> torch.Tensor:
    scores = torch.as_tensor(scorer(leaves), dtype=torch.float32, device=leaves["W"].device)
    scores = scores.expand(leaves["W"].shape)
    if not torch.isfinite(scores).all():
        raise EvopruneError("the score gives non-finite values inside the sweep")
    return scores


@torch.no_grad()
def sweep_prune(leaves: Mapping[str, torch.Tensor], scorer: Scorer, factor: torch.Tensor, dead: torch.Tensor,
                count: int | None, pattern: Pattern, blocksize: int = OBS_BLOCKSIZE, step_groups: int = 1,
                checked: CheckedScores = _plain_scores) -> tuple[torch.Tensor, torch.Tensor]:
    """(updated pruned weight, keep-mask) of one layer. `leaves` as `method.layer_leaves` gives them (W [out, in]
    first of all); `factor, dead` from `sparsegpt.inverse_factor`; `count` the layer's exact pruned count (None
    under an N:M pattern); `step_groups` N:M groups chosen at once (1: each group on the weights updated up to it,
    as SparseGPT; more: fewer, coarser steps, several times faster on a CPU)."""
    weight = leaves["W"]
    cols = weight.shape[1]

    def scores(j1: int, j2: int, w: torch.Tensor, diag: torch.Tensor) -> torch.Tensor:
        # the full check (constant scores, failures) on the first step; finiteness on every one
        check = checked if j1 == 0 else _plain_scores
        return check(scorer, step_leaves(leaves, w, diag, j1, j2))

    if pattern.structured:
        if cols % pattern.m:
            raise EvopruneError(f"pattern {pattern}: input width {cols} is not divisible by {pattern.m}")
        step = pattern.m * max(1, step_groups)
        lazy = max(step, blocksize - blocksize % step)

        def step_mask(j1, j2, w, diag):
            return select_mask(scores(j1, j2, w, diag), pattern.sparsity, pattern)
    else:
        if count is None:
            raise EvopruneError("an unstructured sweep needs the layer's pruned count")
        step = lazy = blocksize
        counts = iter(step_counts(count, cols, step))

        def step_mask(j1, j2, w, diag):
            return select_mask_counts(scores(j1, j2, w, diag), next(counts), "layer")
    return factored_sweep(weight, factor, dead, step_mask, lazy, step, min(32, step))


def sweep_layer(spec: StageSpec, leaves: Mapping[str, torch.Tensor], scorer: Scorer, hessian: torch.Tensor,
                count: int | None, pattern: Pattern) -> tuple[torch.Tensor, torch.Tensor]:
    """`sweep_prune` from the layer's Gram matrix (the pruning job's path; a fitness caches the factor)."""
    factor, dead = inverse_factor(hessian, spec.get("damp", OBS_DAMP))
    weight, mask = sweep_prune(leaves, scorer, factor, dead, count, pattern, *sweep_settings(spec))
    return resolved(spec, leaves["W"], weight, mask, hessian), mask


def sweep_settings(spec: StageSpec) -> tuple[int, int]:
    """(lazy block size, N:M groups a step) of a `sweep` stage."""
    return int(spec.get("blocksize", OBS_BLOCKSIZE)), int(spec.get("groups", 1))
