"""Prune a whole model with one method: dense statistics (all layers from the unpruned model) or sequential
(block by block, each block's statistics from inputs that already went through the pruned blocks before it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from evoprune.errors import EvopruneError
from evoprune.model.layers import LinearRef, block_linears, decoder_blocks
from evoprune.prune.masks import Pattern, check_sparsity, select_mask
from evoprune.prune.method import Method, layer_leaves
from evoprune.prune.sparsegpt import sparsegpt_prune
from evoprune.stats.accumulate import accumulate_block
from evoprune.stats.blocks import capture_block_inputs, run_block
from evoprune.stats.collect import LayerStats, layer_stats
from evoprune.stats.gradients import gradient_magnitudes

SparsitySpec = float | Sequence[float] | Mapping[str, float]
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


def sparsity_for(spec: SparsitySpec, key: str, block: int, pattern: Pattern) -> float:
    """Target of one layer: a float (uniform), a list (one per block) or a dict (layer key -> value)."""
    if isinstance(spec, Mapping):
        if key not in spec:
            raise EvopruneError(f"per-layer sparsity has no entry for layer {key!r}")
        value = spec[key]
    elif isinstance(spec, Sequence):
        value = spec[block]
    else:
        value = spec
    return check_sparsity(value, pattern)


@torch.no_grad()
def prune_layer(ref: LinearRef, stats: LayerStats | None, method: Method, sparsity: float, pattern: Pattern,
                group: str) -> torch.Tensor:
    """Prune one layer in place; returns its keep-mask [out, in]."""
    weight = ref.weight()
    if method.is_sparsegpt:
        new_weight, mask = sparsegpt_prune(weight, stats.H.to(weight.device), sparsity, pattern)
        ref.set_weight(new_weight)
        return mask
    scores = method.scorer(layer_leaves(weight, stats))
    if not torch.isfinite(scores).all():
        raise EvopruneError(f"metric {method.name!r} gives non-finite scores on layer {ref.name}")
    mask = select_mask(scores, sparsity, pattern, group)
    ref.set_weight(weight * mask)
    return mask


def _report(key: str, mask: torch.Tensor) -> LayerReport:
    return LayerReport(key, tuple(mask.shape), int((~mask).sum()), mask.numel())


def prune_with_stats(model: torch.nn.Module, stats: Mapping[str, LayerStats], method: Method,
                     sparsity: SparsitySpec, pattern: Pattern, group: str = "row") -> list[LayerReport]:
    """Dense mode: prune every layer from precomputed statistics (none needed for weight-only metrics)."""
    reports = []
    for i, block in enumerate(decoder_blocks(model)):
        for ref in block_linears(block):
            key = f"{i}.{ref.name}"
            mask = prune_layer(ref, stats.get(key), method, sparsity_for(sparsity, key, i, pattern), pattern, group)
            reports.append(_report(key, mask))
    return reports


@torch.no_grad()
def prune_sequential(model: torch.nn.Module, windows: torch.Tensor, method: Method, sparsity: SparsitySpec,
                     pattern: Pattern, group: str = "row",
                     progress: Callable[[str, int, int], None] | None = None,
                     grads: Mapping[str, torch.Tensor] | None = None) -> list[LayerReport]:
    """Sequential mode (Wanda/SparseGPT protocol). G, when needed, comes from the dense model beforehand
    (pass `grads` to reuse cached ones)."""
    grads = dict(grads or {})
    if method.needs_grad and not grads:
        report = (lambda k: progress("gradients", k, len(windows))) if progress else None
        with torch.enable_grad():
            grads = gradient_magnitudes(model, windows, report)
    inputs = capture_block_inputs(model, windows)
    blocks = decoder_blocks(model)
    reports = []
    for i, block in enumerate(blocks):
        refs = block_linears(block)
        accs, _ = accumulate_block(block, refs, inputs, with_gram=method.needs_gram)
        for ref in refs:
            key = f"{i}.{ref.name}"
            st = layer_stats(accs[ref.name], keep_hessian=method.is_sparsegpt)
            st.G = grads.get(key)
            mask = prune_layer(ref, st, method, sparsity_for(sparsity, key, i, pattern), pattern, group)
            reports.append(_report(key, mask))
        inputs.hidden = run_block(block, inputs)  # the pruned block feeds the next one
        if progress is not None:
            progress("pruning", 1, len(blocks))
    return reports
