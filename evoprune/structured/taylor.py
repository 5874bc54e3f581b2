"""LLM-Pruner's first-order Taylor importance |W ⊙ ∂L/∂W| (Ma et al. 2023, "LLM-Pruner: On the Structural
Pruning of Large Language Models"), from the gradient of the summed calibration loss of the dense model.

Unlike the leaf G (GBLM's root of summed squared per-window gradients, always positive), LLM-Pruner's gradient is
one signed accumulated gradient; |w·g| is then its element-wise estimate of the loss change from zeroing w.
"""

from __future__ import annotations

import torch

from evoprune.model.layers import prunable_layers


def taylor_scores(model: torch.nn.Module, windows: torch.Tensor) -> dict[str, torch.Tensor]:
    """|W ⊙ Σ_windows ∂loss/∂W| for every prunable layer, keyed like `prunable_layers`; the model is unchanged."""
    layers = prunable_layers(model)
    device = next(model.parameters()).device
    saved = {p: p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    weights = {key: ref.module.weight for key, ref in layers.items()}
    for w in weights.values():
        w.requires_grad_(True)
        w.grad = None
    try:
        for row in windows:
            ids = row.unsqueeze(0).to(device)
            model(ids, labels=ids, use_cache=False).loss.backward()  # .grad accumulates over windows
        scores = {key: (w.detach().float() * w.grad.float()).abs() for key, w in weights.items()}
    finally:
        for w in weights.values():
            w.grad = None
        for p, flag in saved.items():
            p.requires_grad_(flag)
    return scores
