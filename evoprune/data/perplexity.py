"""Perplexity over non-overlapping windows: exp(Σ loss·(n−1) / Σ(n−1)), the Wanda/SparseGPT protocol."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


@torch.no_grad()
def perplexity(model: torch.nn.Module, windows: torch.Tensor, batch_size: int = 4,
               progress: Callable[[int], None] | None = None) -> float:
    """Perplexity of `model` on `windows` [n, seqlen]; `progress(k)` is called after each batch of k windows."""
    device = next(model.parameters()).device
    total_nll, total_tokens = 0.0, 0
    for start in range(0, len(windows), batch_size):
        batch = windows[start : start + batch_size].to(device)
        logits = model(batch).logits.float()
        # Mean loss per window times (n-1) predicted tokens, summed: identical to labels=x loss per window.
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="sum"
        )
        total_nll += loss.item()
        total_tokens += batch.shape[0] * (batch.shape[1] - 1)
        if progress is not None:
            progress(batch.shape[0])
    return math.exp(total_nll / total_tokens)
