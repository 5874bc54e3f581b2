"""LLM-Pruner's first-order Taylor importance |W ⊙ ∂L/∂W| (Ma et al. 2023, "LLM-Pruner: On the Structural
Pruning of Large Language Models"), from the gradient of the summed calibration loss of the dense model.

Unlike the leaf G (GBLM's root of summed squared per-window gradients, always positive), LLM-Pruner's gradient is
one signed accumulated gradient; |w·g| is then its element-wise estimate of the loss change from zeroing w.
"""

from __future__ import annotations

import torch

from evoprune.stats.gradients import weight_gradients


def taylor_scores(model: torch.nn.Module, windows: torch.Tensor) -> dict[str, torch.Tensor]:
    """|W ⊙ Σ_windows ∂loss/∂W| for every prunable layer, keyed like `prunable_layers`; the model is unchanged."""
    device = next(model.parameters()).device
    with weight_gradients(model) as weights:
        for row in windows:
            ids = row.unsqueeze(0).to(device)
            model(ids, labels=ids, use_cache=False).loss.backward()  # .grad accumulates over windows
        return {key: (w.detach().float() * w.grad.float()).abs() for key, w in weights.items()}
