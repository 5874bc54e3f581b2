"""Leaf G: GBLM-Pruner's gradient magnitude, sqrt(Σ_windows (scale·∂loss/∂W)²), one backward per window."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from evoprune.model.layers import prunable_layers

GRAD_SCALE = 100.0  # GBLM-Pruner's scale: keeps squared fp32 gradients away from underflow


@contextmanager
def weight_gradients(model: torch.nn.Module) -> Iterator[dict[str, torch.nn.Parameter]]:
    """The prunable weights keyed like `prunable_layers`, the only parameters that take gradients inside the block
    (their .grad cleared on entry and exit); every requires_grad flag is restored afterwards."""
    saved = {p: p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    weights = {key: ref.module.weight for key, ref in prunable_layers(model).items()}
    for w in weights.values():
        w.requires_grad_(True)
        w.grad = None
    try:
        yield weights
    finally:
        for w in weights.values():
            w.grad = None
        for p, flag in saved.items():
            p.requires_grad_(flag)


def gradient_magnitudes(model: torch.nn.Module, windows: torch.Tensor,
                        progress: Callable[[int], None] | None = None) -> dict[str, torch.Tensor]:
    """G for every prunable layer, keyed like `prunable_layers`, shaped [out, in]; the model is unchanged."""
    layers = prunable_layers(model)
    device = next(model.parameters()).device
    with weight_gradients(model) as weights:
        acc = {key: torch.zeros_like(w, dtype=torch.float32) for key, w in weights.items()}
        for row in windows:
            ids = row.unsqueeze(0).to(device)
            model(ids, labels=ids, use_cache=False).loss.backward()
            for key, w in weights.items():
                acc[key] += (GRAD_SCALE * w.grad.float()).pow(2)
                w.grad = None
            if progress is not None:
                progress(1)
    return {key: (a.sqrt().t() if layers[key].transposed else a.sqrt()) for key, a in acc.items()}
