"""Prune a whole model with one recipe: dense statistics (all layers from the unpruned model) or sequential
(block by block, each block's statistics from inputs that already went through the pruned blocks before it).

Per layer the recipe runs score → mask at the layer's target → refinement → update (`prune_weight`); the targets
come from an allocation (`allocation.py`) as exact pruned counts, or are None under an N:M pattern.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from evoprune.errors import EvopruneError
from evoprune.model.layers import block_linears, decoder_blocks, prunable_layers
from evoprune.prune.allocation import exact_counts, layer_infos
from evoprune.prune.masks import Pattern, check_sparsity, select_mask, select_mask_counts
from evoprune.prune.method import Method, layer_leaves
from evoprune.prune.recipe import Recipe
from evoprune.prune.refine import refine_mask
from evoprune.prune.sparsegpt import sparsegpt_prune
from evoprune.prune.sweep import sweep_layer
from evoprune.prune.update import update_weight
from evoprune.stats.accumulate import accumulate_block
from evoprune.stats.blocks import capture_block_inputs, run_block
from evoprune.stats.collect import LayerStats, layer_stats
from evoprune.stats.gradients import gradient_magnitudes

# A layer's target: pruned weights in the layer (int), per row ([rows] tensor), or None (an N:M pattern decides).
LayerTarget = int | torch.Tensor | None
Targets = Mapping[str, LayerTarget]
MODES = ("sequential", "dense")


@dataclass(frozen=True)
class LayerReport:
    layer: str
    shape: tuple[int, int]
    pruned: int
    total: int

    @property
    def sparsity(self) -> float:
        return self.pruned / self.total


def layer_mask(scores: torch.Tensor, target: LayerTarget, pattern: Pattern, group: str) -> torch.Tensor:
    """Keep-mask of one layer at its target (exact counts) or its N:M pattern."""
    if pattern.structured:
        return select_mask(scores, pattern.sparsity, pattern, group)
    if target is None:
        raise EvopruneError("an unstructured prune needs a per-layer target")
    return select_mask_counts(scores, target, group)


def target_count(target: LayerTarget) -> int | None:
    """A layer's exact pruned count (a per-row target summed); None under an N:M pattern."""
    if target is None:
        return None
    return int(target.sum()) if isinstance(target, torch.Tensor) else int(target)


def target_fraction(target: LayerTarget, shape: tuple[int, int], pattern: Pattern) -> float:
    if pattern.structured:
        return pattern.sparsity
    count = int(target.sum()) if isinstance(target, torch.Tensor) else int(target)
    return count / (shape[0] * shape[1])


@torch.no_grad()
def prune_weight(weight: torch.Tensor, stats: LayerStats | None, method: Method, recipe: Recipe,
                 target: LayerTarget, pattern: Pattern, group: str,
                 name: str = "") -> tuple[torch.Tensor, torch.Tensor]:
    """(new weight, keep-mask) of one layer: a pure function of its weight and statistics."""
    if method.is_sparsegpt:
        return sparsegpt_prune(weight, stats.H.to(weight.device), target_fraction(target, weight.shape, pattern),
                               pattern)
    leaves = layer_leaves(weight, stats)
    hessian = stats.H.to(weight.device) if stats is not None and stats.H is not None else None
    if recipe.needs_hessian and hessian is None:
        raise EvopruneError(f"recipe {recipe} needs the layer's Hessian (calibration statistics)")
    if recipe.update.name == "sweep":  # the mask is chosen inside the update, on the updated weights
        try:
            new_weight, mask = sweep_layer(recipe.update, leaves, method.scorer, hessian, target_count(target),
                                           pattern)
        except EvopruneError as exc:
            raise EvopruneError(f"metric {method.name!r} on layer {name}: {exc}") from None
        return new_weight.to(weight.dtype), mask
    scores = method.scorer(leaves)
    if not torch.isfinite(scores).all():
        raise EvopruneError(f"metric {method.name!r} gives non-finite scores on layer {name}")
    mask = layer_mask(scores, target, pattern, group)
    mask = refine_mask(recipe.refine, weight, mask, hessian, pattern)
    return update_weight(recipe.update, weight, mask, hessian).to(weight.dtype), mask


def _report(key: str, mask: torch.Tensor) -> LayerReport:
    return LayerReport(key, tuple(mask.shape), int((~mask).sum()), mask.numel())


@torch.no_grad()
def prune_with_stats(model: torch.nn.Module, stats: Mapping[str, LayerStats], method: Method, recipe: Recipe,
                     targets: Targets, pattern: Pattern, group: str = "row") -> list[LayerReport]:
    """Dense mode: prune every layer from precomputed statistics (none needed for weight-only metrics)."""
    reports = []
    for i, block in enumerate(decoder_blocks(model)):
        for ref in block_linears(block):
            key = f"{i}.{ref.name}"
            weight, mask = prune_weight(ref.weight(), stats.get(key), method, recipe, targets.get(key), pattern,
                                        group, key)
            ref.set_weight(weight)
            reports.append(_report(key, mask))
    return reports


@torch.no_grad()
def prune_sequential(model: torch.nn.Module, windows: torch.Tensor, method: Method, recipe: Recipe,
                     targets: Targets, pattern: Pattern, group: str = "row",
                     progress: Callable[[str, int, int], None] | None = None,
                     grads: Mapping[str, torch.Tensor] | None = None) -> list[LayerReport]:
    """Sequential mode (Wanda/SparseGPT protocol). G, when needed, comes from the dense model beforehand
    (pass `grads` to reuse cached ones)."""
    grads = dict(grads or {})
    if method.needs_grad and not grads:
        report = (lambda k: progress("gradients", k, len(windows))) if progress else None
        with torch.enable_grad():
            grads = gradient_magnitudes(model, windows, report)
    keep_hessian = method.is_sparsegpt or recipe.needs_hessian
    inputs = capture_block_inputs(model, windows)
    blocks = decoder_blocks(model)
    reports = []
    for i, block in enumerate(blocks):
        refs = block_linears(block)
        accs, _ = accumulate_block(block, refs, inputs, with_gram=method.needs_gram or keep_hessian)
        for ref in refs:
            key = f"{i}.{ref.name}"
            st = layer_stats(accs[ref.name], keep_hessian=keep_hessian)
            st.G = grads.get(key)
            weight, mask = prune_weight(ref.weight(), st, method, recipe, targets.get(key), pattern, group, key)
            ref.set_weight(weight)
            reports.append(_report(key, mask))
        inputs.hidden = run_block(block, inputs)  # the pruned block feeds the next one
        if progress is not None:
            progress("pruning", 1, len(blocks))
    return reports


def fraction_targets(model: torch.nn.Module, sparsity: float | Sequence[float] | Mapping[str, float],
                     pattern: Pattern) -> dict[str, LayerTarget]:
    """Targets from plain fractions: one for every layer (uniform, exact global budget), one per block (a list), or
    one per layer key (a dict); each layer prunes round(fraction × its size)."""
    layers = prunable_layers(model)
    if pattern.structured:
        return dict.fromkeys(layers)
    infos = layer_infos({key: tuple(ref.weight().shape) for key, ref in layers.items()})
    if isinstance(sparsity, (int, float)):
        return exact_counts(dict.fromkeys(layers, float(sparsity)), infos, float(sparsity))
    if isinstance(sparsity, Mapping):
        missing = set(layers) - set(sparsity)
        if missing:
            raise EvopruneError(f"per-layer sparsity has no entry for layer {sorted(missing)[0]!r}")
        fractions = sparsity
    else:
        fractions = {i.key: sparsity[i.block] for i in infos}
    return {i.key: round(check_sparsity(fractions[i.key], pattern) * i.numel) for i in infos}
