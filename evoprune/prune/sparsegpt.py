"""SparseGPT: OBS pruning with weight update (Frantar & Alistarh 2023, "SparseGPT: Massive Language Models Can
Be Accurately Pruned in One-Shot").

Not a pure metric: it selects weights by W²/diag(H⁻¹)² inside each column block and updates the remaining
weights to compensate. Masks go through `masks.select_mask`, so its tie rule and exact counts are ours:
unstructured prunes exactly floor(sparsity·rows·width) weights per column block; N:M is selected column group by
column group on the already-updated weights, as in the reference implementation.
"""

from __future__ import annotations

import torch

from evoprune.prune.masks import Pattern, select_mask


def _inverse_hessian_cholesky(hessian: torch.Tensor, percdamp: float) -> torch.Tensor:
    h = hessian.clone()
    diag = torch.diagonal(h)
    diag += percdamp * diag.mean()
    h = torch.cholesky_inverse(torch.linalg.cholesky(h))
    return torch.linalg.cholesky(h, upper=True)


@torch.no_grad()
def sparsegpt_prune(
    weight: torch.Tensor, hessian: torch.Tensor, sparsity: float, pattern: Pattern,
    blocksize: int = 128, percdamp: float = 0.01,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (updated pruned weight, keep-mask), both [out, in]; inputs are not modified."""
    w = weight.detach().clone().float()
    h = hessian.detach().clone().float()
    dead = torch.diagonal(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    hinv = _inverse_hessian_cholesky(h, percdamp)
    rows, cols = w.shape
    if pattern.structured:
        blocksize = max(pattern.m, blocksize - blocksize % pattern.m)  # a block never splits an N:M group
    mask = torch.ones_like(w, dtype=torch.bool)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        w1, hinv1 = w[:, i1:i2].clone(), hinv[i1:i2, i1:i2]
        d = torch.diagonal(hinv1)
        q1, err1 = torch.zeros_like(w1), torch.zeros_like(w1)
        mask1 = torch.ones_like(w1, dtype=torch.bool)
        if not pattern.structured:
            mask1 = select_mask(w1.pow(2) / d.pow(2).unsqueeze(0), sparsity, pattern, group="layer")
        for i in range(i2 - i1):
            if pattern.structured and i % pattern.m == 0:
                score = w1[:, i : i + pattern.m].pow(2) / d[i : i + pattern.m].pow(2).unsqueeze(0)
                mask1[:, i : i + pattern.m] = select_mask(score, sparsity, pattern)
            col = w1[:, i]
            q = col * mask1[:, i]
            q1[:, i] = q
            err = (col - q) / d[i]
            w1[:, i:] -= err.unsqueeze(1) @ hinv1[i, i:].unsqueeze(0)
            err1[:, i] = err
        w[:, i1:i2] = q1
        mask[:, i1:i2] = mask1
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    return w.to(weight.dtype), mask
