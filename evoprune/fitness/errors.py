"""Reconstruction errors between a pruned and the dense model: pure tensor functions, lower is better."""

from __future__ import annotations

import torch


def layer_error(weight: torch.Tensor, mask: torch.Tensor, hessian: torch.Tensor) -> torch.Tensor:
    """‖(W − W⊙M)X‖² / ‖WX‖² from the Gram matrix H = XᵀX/T: no forward pass needed."""
    removed = weight * ~mask
    return (removed @ hessian * removed).sum() / (weight @ hessian * weight).sum()


def relative_output_error(pruned: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """‖Y' − Y‖² / ‖Y‖² over a block's outputs."""
    return (pruned.float() - dense.float()).pow(2).sum() / dense.float().pow(2).sum()


def kl_from_dense(dense_logprobs: torch.Tensor, pruned_logits: torch.Tensor) -> torch.Tensor:
    """Mean per-token KL(dense ‖ pruned) over the vocabulary."""
    pruned_logprobs = torch.log_softmax(pruned_logits.float(), dim=-1)
    return torch.nn.functional.kl_div(pruned_logprobs, dense_logprobs, log_target=True, reduction="sum") / (
        dense_logprobs.shape[0] * dense_logprobs.shape[1])
