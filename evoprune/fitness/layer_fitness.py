"""The layer fitness, pure: a recipe's relative output error per layer, Σ‖(W−Ŵ)X‖²/‖WX‖², from each layer's
leaves and Gram matrix H = XᵀX/T. No model is needed, so the same class serves the Evaluator, tests and
synthetic runs.

`rows` < 1 scores a fixed random subset of each layer's output rows (drawn with the seed): rows prune, refine and
update independently and the error is a sum over rows, so the subset is an unbiased, cheaper estimate. Scores are
still computed on the whole matrix, since operators such as colnorm or mms read all of it.

With `sensitivity` (per layer and output row, the loss's (∂loss/∂y)², `stats.sensitivity`) the error is instead
one ratio over the whole model, Σ F_c·e_c / Σ F_c·E_c with e_c, E_c the pruned and dense row errors: a second-order
estimate of the loss increase, in which layers count by what they cost the loss (the `fisher` fitness).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

import torch

from evoprune.errors import EvopruneError
from evoprune.fitness.errors import output_energy, row_errors, weight_error
from evoprune.prune.apply import LayerTarget, layer_mask, target_count
from evoprune.prune.masks import Pattern, select_mask_counts, spread_count
from evoprune.prune.recipe import Recipe
from evoprune.prune.refine import refine_mask
from evoprune.prune.sparsegpt import inverse_factor
from evoprune.prune.stages import StageSpec
from evoprune.prune.sweep import sweep_prune, sweep_settings
from evoprune.prune.update import OBS_BLOCKSIZE, OBS_DAMP, obs_update_factored, resolved, update_weight

Scorer = Callable[[Mapping[str, torch.Tensor]], torch.Tensor]
Leaves = dict[str, dict[str, torch.Tensor]]


class CandidateFailure(Exception):
    """A candidate that cannot rank weights (NaN, inf, constant, wrong shape, missing leaf): worst fitness."""


def row_subsets(leaves: Leaves, fraction: float, seed: int) -> dict[str, torch.Tensor]:
    """Per layer, the sorted output rows scored: a fixed random subset drawn with the seed ({} for all rows)."""
    if fraction >= 1:
        return {}
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key in sorted(leaves):
        rows = leaves[key]["W"].shape[0]
        keep = max(1, round(fraction * rows))
        out[key] = torch.randperm(rows, generator=gen)[:keep].sort().values.to(leaves[key]["W"].device)
    return out


def checked_scores(scorer: Scorer, leaves: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    """The scores of one layer, shaped like W; a candidate that cannot rank weights raises CandidateFailure."""
    shape = leaves["W"].shape
    try:
        scores = scorer(leaves)
        scores = torch.as_tensor(scores, dtype=torch.float32, device=leaves["W"].device).expand(shape)
    except KeyError as exc:  # a leaf this evaluator does not compute (see EvalSpec.leaves)
        raise CandidateFailure(f"needs leaf {exc.args[0]}, not among this evaluator's leaves "
                               f"{sorted(leaves)}") from exc
    except (RuntimeError, ValueError, TypeError, ZeroDivisionError, OverflowError) as exc:
        raise CandidateFailure(f"{type(exc).__name__} on layer {key}: {str(exc).splitlines()[0]}") from exc
    low, high = torch.aminmax(scores)  # one pass: NaN and ±inf propagate into the extremes
    if not (torch.isfinite(low) and torch.isfinite(high)):
        raise CandidateFailure(f"non-finite scores on layer {key}")
    if bool(low == high):
        raise CandidateFailure(f"constant scores on layer {key}")
    return scores


def subset_mask(scores: torch.Tensor, target: LayerTarget, pattern: Pattern, group: str,
                rows: torch.Tensor | None) -> torch.Tensor:
    """The keep-mask of the scored rows only: the rows' counts are those of the whole layer's mask."""
    if rows is None:
        return layer_mask(scores, target, pattern, group)
    if pattern.structured:
        return layer_mask(scores[rows], target, pattern, group)
    counts = target if isinstance(target, torch.Tensor) else spread_count(scores, target)
    return select_mask_counts(scores[rows], counts.to(scores.device)[rows], group)


class LayerFitness:
    subset = True  # as a fitness strategy: scores the row subset

    def __init__(self, leaves: Leaves, hessians: Mapping[str, torch.Tensor], group: str = "row",
                 rows: float = 1.0, seed: int = 0, sensitivity: Mapping[str, torch.Tensor] | None = None) -> None:
        self.leaves = leaves
        self.hessians = {key: h.to(leaves[key]["W"].device) for key, h in hessians.items()}
        self.group = group
        self.rows = row_subsets(leaves, rows, seed)
        self.energies = {key: output_energy(self.scored_weight(key), h) for key, h in self.hessians.items()}
        self._factors: dict[tuple[str, float], tuple[torch.Tensor, torch.Tensor]] = {}
        self._pool: ThreadPoolExecutor | None = None  # `_map`'s threads, made on first use
        self.row_weights: dict[str, torch.Tensor] | None = None  # per scored row: F_c / Σ F·E (the fisher fitness)
        if sensitivity is not None:
            self.row_weights = {key: self.scored_rows(key, sensitivity[key].to(h.device).float())
                            for key, h in self.hessians.items()}
            total = sum(float((self.row_weights[k] * row_errors(self.scored_weight(k), h)).sum())
                        for k, h in self.hessians.items())
            if not total > 0:
                raise EvopruneError("output sensitivities are all zero: the loss does not depend on these layers")
            self.row_weights = {key: w / total for key, w in self.row_weights.items()}

    def scored_rows(self, key: str, values: torch.Tensor) -> torch.Tensor:
        """The entries of a per-output-row vector that belong to the scored rows."""
        return values if self.rows.get(key) is None else values[self.rows[key]]

    def scored_weight(self, key: str) -> torch.Tensor:
        """The rows of W the fitness scores (all of them unless `rows` < 1)."""
        w = self.leaves[key]["W"]
        return w if self.rows.get(key) is None else w[self.rows[key]]

    @torch.no_grad()
    def prune(self, scorer: Scorer, recipe: Recipe, targets: Mapping[str, LayerTarget], pattern: Pattern,
              subset: bool = True) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per layer (keep-mask, new weight) of the recipe on the scored rows (`subset`) or on all rows."""
        if recipe.needs_hessian and any(self.hessians.get(key) is None for key in self.leaves):
            raise CandidateFailure(f"recipe {recipe} needs Gram matrices this evaluator did not collect")

        def one(key: str) -> tuple[torch.Tensor, torch.Tensor]:
            leaves = self.leaves[key]
            rows = self.rows.get(key) if subset else None
            if recipe.update.name == "sweep":
                return self.swept(scorer, recipe.update, key, targets[key], pattern, rows)
            scores = checked_scores(scorer, leaves, key)
            mask = subset_mask(scores, targets[key], pattern, self.group, rows)
            weight = leaves["W"] if rows is None else leaves["W"][rows]
            hessian = self.hessians.get(key)
            mask = refine_mask(recipe.refine, weight, mask, hessian, pattern)
            return mask, self.updated(recipe.update, key, weight, mask, hessian)

        return dict(zip(self.leaves, self._map(one, list(self.leaves)), strict=True))

    def _map(self, fn: Callable, keys: list[str]) -> list:
        """`fn` over layers, in order. On CPU, on a thread per torch thread: numpy's selection, the Python loop of
        the OBS sweep and small matmuls use one core each (and release the GIL), so layers side by side keep both
        cores busy (1.4x faster a candidate on 2 cores, identical results: each layer is computed alone)."""
        device = next(iter(self.hessians.values())).device if self.hessians else torch.device("cpu")
        workers = torch.get_num_threads() if device.type == "cpu" else 1
        if workers <= 1 or len(keys) <= 1:
            return [fn(key) for key in keys]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(workers, thread_name_prefix="layer-fitness")
        return list(self._pool.map(torch.no_grad()(fn), keys))  # grad mode is per thread

    def factor(self, key: str, damp: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The layer's inverse-Hessian factor and dead inputs (they depend on H alone): computed once."""
        if (key, damp) not in self._factors:
            self._factors[(key, damp)] = inverse_factor(self.hessians[key], damp)
        return self._factors[(key, damp)]

    def swept(self, scorer: Scorer, spec: StageSpec, key: str, target: LayerTarget, pattern: Pattern,
              rows: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(keep-mask, new weight) of the `sweep` update on the scored rows: the sweep over those rows alone, each
        step pruning the share of the layer's count that falls on them."""
        leaves = self.leaves[key]
        total = leaves["W"].shape[0]
        if rows is not None:
            leaves = {name: v[rows] if v.shape[0] == total else v for name, v in leaves.items()}  # W and G
        count = target_count(target)
        if count is not None and rows is not None:
            count = (int(target[rows].sum()) if isinstance(target, torch.Tensor)
                     else round(count * len(rows) / total))
        factor, dead = self.factor(key, spec.get("damp", OBS_DAMP))
        weight, mask = sweep_prune(leaves, scorer, factor, dead, count, pattern, *sweep_settings(spec),
                                   checked=lambda fn, lv: checked_scores(fn, lv, key))
        return mask, resolved(spec, leaves["W"], weight, mask, self.hessians[key])

    def updated(self, spec: StageSpec, key: str, weight: torch.Tensor, mask: torch.Tensor,
                hessian: torch.Tensor | None) -> torch.Tensor:
        """The update stage; OBS through the layer's inverse-Hessian factor, computed once per layer and damping
        (it depends on H alone) and the vectorised sweep: the same weights as `prune` up to float rounding."""
        if spec.name != "obs":
            return update_weight(spec, weight, mask, hessian)
        factor, dead = self.factor(key, spec.get("damp", OBS_DAMP))
        new_weight = obs_update_factored(weight, mask, factor, dead, min(int(spec.get("blocksize", OBS_BLOCKSIZE)), 32))
        return resolved(spec, weight, new_weight, mask, hessian)

    @torch.no_grad()
    def error(self, pruned: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> float:
        """Mean over layers of ‖(W−Ŵ)X‖²/‖WX‖² on the scored rows; with sensitivities, Σ F·e / Σ F·E."""
        keys = list(pruned)
        if self.row_weights is not None:
            terms = self._map(lambda k: float((self.row_weights[k] * row_errors(self.scored_weight(k) - pruned[k][1],
                                                                                self.hessians[k])).sum()), keys)
            return float(sum(terms))  # summed in layer order, as before: the same bits whatever the threads
        errors = self._map(lambda k: weight_error(self.scored_weight(k), pruned[k][1], self.hessians[k],
                                                  self.energies[k]), keys)
        return float(torch.stack(errors).mean())

