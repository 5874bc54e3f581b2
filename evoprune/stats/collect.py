"""Dense calibration statistics: every prunable layer's leaves from one block-by-block pass of the unpruned model.

This is what a search uses (computed once, cached on disk). A final prune may instead use sequential statistics;
see `evoprune.prune.apply`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from evoprune.model.layers import block_linears, decoder_blocks
from evoprune.stats.accumulate import InputAccumulator, accumulate_block, damped_inverse_diag
from evoprune.stats.blocks import capture_block_inputs
from evoprune.stats.gradients import gradient_magnitudes


@dataclass
class LayerStats:
    """Leaves of one layer except W (read from the model). X, Hinv: [in]; H: [in, in]; G: [out, in]."""

    X: torch.Tensor
    Hinv: torch.Tensor | None = None
    H: torch.Tensor | None = None
    G: torch.Tensor | None = None


def layer_stats(acc: InputAccumulator, keep_hessian: bool) -> LayerStats:
    if acc.gram is None:
        return LayerStats(X=acc.rms())
    hessian = acc.hessian()
    return LayerStats(X=acc.rms(), Hinv=damped_inverse_diag(hessian), H=hessian if keep_hessian else None)


def share_equal_hessians(stats: dict[str, LayerStats]) -> None:
    """Layers fed the same input (q/k/v, gate/up) get one shared H tensor: a third of the memory and disk."""
    seen: list[LayerStats] = []
    for st in stats.values():
        if st.H is None:
            continue
        for other in seen:
            if other.H.shape == st.H.shape and torch.equal(other.X, st.X) and torch.equal(other.H, st.H):
                st.H, st.Hinv = other.H, other.Hinv
                break
        else:
            seen.append(st)


@torch.no_grad()
def _input_stats(model, windows, with_gram, keep_hessian, progress) -> dict[str, LayerStats]:
    inputs = capture_block_inputs(model, windows)
    stats: dict[str, LayerStats] = {}
    for i, block in enumerate(decoder_blocks(model)):
        accs, inputs.hidden = accumulate_block(block, block_linears(block), inputs, with_gram)
        for name, acc in accs.items():
            stats[f"{i}.{name}"] = layer_stats(acc, keep_hessian)
        if progress is not None:
            progress(1)
    return stats


def collect_dense_stats(
    model: torch.nn.Module,
    windows: torch.Tensor,
    with_hessian: bool = False,
    with_grad: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, LayerStats]:
    """Leaves for every prunable layer, keyed like `prunable_layers`.

    X always; Hinv and (with_hessian) H from the Gram matrix; G (with_grad) from one backward per window.
    `progress(stage, done_increment, total)` reports blocks and windows.
    """
    nblocks = len(decoder_blocks(model))
    report = (lambda k: progress("statistics", k, nblocks)) if progress else None
    stats = _input_stats(model, windows, with_gram=True, keep_hessian=with_hessian, progress=report)
    if with_hessian:
        share_equal_hessians(stats)
    if with_grad:
        report = (lambda k: progress("gradients", k, len(windows))) if progress else None
        for key, g in gradient_magnitudes(model, windows, report).items():
            stats[key].G = g
    return stats
