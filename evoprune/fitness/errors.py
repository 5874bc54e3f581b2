"""Reconstruction errors between a pruned and the dense model: pure tensor functions, lower is better."""

from __future__ import annotations

import torch


def output_energy(weight: torch.Tensor, hessian: torch.Tensor) -> torch.Tensor:
    """‖WX‖² (per token) from the Gram matrix: the dense denominator of `layer_error`, computed once per layer."""
    return (weight @ hessian * weight).sum()


def row_errors(diff: torch.Tensor, hessian: torch.Tensor) -> torch.Tensor:
    """Per output row c, ‖Δw_c X‖² (per token) = Δw_cᵀ H Δw_c: the rows of `output_energy`'s sum."""
    return (diff @ hessian * diff).sum(1)


def layer_error(weight: torch.Tensor, mask: torch.Tensor, hessian: torch.Tensor,
                energy: torch.Tensor | None = None) -> torch.Tensor:
    """‖(W − W⊙M)X‖² / ‖WX‖² from the Gram matrix H = XᵀX/T: no forward pass needed."""
    removed = weight * ~mask
    return (removed @ hessian * removed).sum() / (output_energy(weight, hessian) if energy is None else energy)


def relative_output_error(pruned: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """‖Y' − Y‖² / ‖Y‖² over a block's outputs."""
    return (pruned.float() - dense.float()).pow(2).sum() / dense.float().pow(2).sum()


def kl_from_dense(dense_logprobs: torch.Tensor, pruned_logits: torch.Tensor) -> torch.Tensor:
    """Mean per-token KL(dense ‖ pruned) over the vocabulary."""
    pruned_logprobs = torch.log_softmax(pruned_logits.float(), dim=-1)
    return torch.nn.functional.kl_div(pruned_logprobs, dense_logprobs, log_target=True, reduction="sum") / (
        dense_logprobs.shape[0] * dense_logprobs.shape[1])


def weight_error(weight: torch.Tensor, new_weight: torch.Tensor, hessian: torch.Tensor,
                 energy: torch.Tensor | None = None) -> torch.Tensor:
    """‖(W − Ŵ)X‖² / ‖WX‖² for any pruned (and possibly updated) Ŵ, from the Gram matrix."""
    diff = weight - new_weight
    return (diff @ hessian * diff).sum() / (output_energy(weight, hessian) if energy is None else energy)
