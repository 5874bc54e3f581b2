"""Output sensitivity: per prunable layer and output channel, the mean over calibration tokens of (∂loss/∂y)²,
the diagonal of the Fisher information of the layer's output.

Why: a layer's relative reconstruction error says how much of its output a mask destroys, not how much the loss
cares. To second order the loss increase of a perturbation δy is ½ Σ_c F_c·E[δy_c²], and E[δy_c²] is the row error
(w_c − ŵ_c)ᵀH(w_c − ŵ_c) the layer fitness already computes, so weighting rows by F_c makes errors of different
layers comparable. That is what a search over per-layer sparsity needs: the mean of relative errors rewards moving
sparsity to layers whose relative error grows slowly, whatever they cost the loss.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from evoprune.model.layers import prunable_layers


def output_sensitivities(model: torch.nn.Module, windows: torch.Tensor,
                         progress: Callable[[int], None] | None = None) -> dict[str, torch.Tensor]:
    """F per prunable layer, keyed like `prunable_layers`, shaped [out]; one backward per window. The loss is
    summed over tokens (not averaged) so that the squared gradients stay far from float32 underflow; only ratios
    of F are ever used. The model's weights, flags and gradients are unchanged."""
    layers = prunable_layers(model)
    device = next(model.parameters()).device
    acc: dict[str, torch.Tensor] = {}
    tokens = 0

    def hook(key: str):
        def record(_module, _grad_input, grad_output) -> None:
            g = grad_output[0].detach().float().reshape(-1, grad_output[0].shape[-1])
            sq = g.pow(2).sum(0)
            acc[key] = sq if key not in acc else acc[key] + sq
        return record

    saved = {p: p.requires_grad for p in model.parameters()}
    handles = [ref.module.register_full_backward_hook(hook(key)) for key, ref in layers.items()]
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        embeddings = model.get_input_embeddings()
        for row in windows:
            ids = row.unsqueeze(0).to(device)
            # gradients flow from the embeddings' output: no weight needs .grad, so none is allocated
            inputs = embeddings(ids).detach().requires_grad_(True)
            logits = model(inputs_embeds=inputs, use_cache=False).logits[0, :-1].float()
            torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum").backward()
            tokens += ids.shape[1]
            if progress is not None:
                progress(1)
    finally:
        for handle in handles:
            handle.remove()
        for p, flag in saved.items():
            p.requires_grad_(flag)
    return {key: acc[key] / tokens for key in layers}
