"""SparseGPT: OBS pruning with weight update (Frantar & Alistarh 2023, "SparseGPT: Massive Language Models Can
Be Accurately Pruned in One-Shot").

The column sweep (`obs_sweep`) walks the inputs left to right in lazy blocks: each column is masked, its error
divided by the damped inverse Hessian's Cholesky diagonal is pushed onto the columns to its right. SparseGPT
chooses the mask inside the sweep, by W²/diag(H⁻¹)² of the already-updated weights; `update.obs_update` runs the
same sweep with a mask fixed beforehand. Masks go through `masks.select_mask`, so the tie rule and exact counts are
ours: unstructured prunes exactly floor(sparsity·rows·width) weights per column block; N:M is selected column
group by column group on the already-updated weights, as in the reference implementation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from evoprune.prune.masks import Pattern, select_mask

# (first column, last column, block weights as updated so far, diag of the block's Cholesky factor) -> keep-mask
BlockMask = Callable[[int, int, torch.Tensor, torch.Tensor], torch.Tensor]
# (column index inside the block, block weights, diag, block keep-mask being filled) -> None, for N:M groups
GroupMask = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], None]


def damped_hessian(hessian: torch.Tensor, percdamp: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(a float copy of H, dead inputs' diagonal set to 1, plus percdamp · its mean diagonal; the dead input
    columns): the matrix every sweep and the exact re-solve (`resolve.py`) work with."""
    h = hessian.detach().clone().float()
    dead = torch.diagonal(h) == 0
    h[dead, dead] = 1.0
    torch.diagonal(h).add_(percdamp * torch.diagonal(h).mean())
    return h, dead


@torch.no_grad()
def inverse_factor(hessian: torch.Tensor, percdamp: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(upper Cholesky factor of the damped inverse Hessian, dead input columns): what a sweep needs of H, which
    depends on H alone (a fitness computes it once per layer and reuses it for every mask)."""
    h, dead = damped_hessian(hessian, percdamp)
    return torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True), dead


@torch.no_grad()
def obs_sweep(weight: torch.Tensor, hessian: torch.Tensor, block_mask: BlockMask, blocksize: int = 128,
              percdamp: float = 0.01, group_mask: GroupMask | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (updated pruned weight, keep-mask), both [out, in]; inputs are not modified."""
    w = weight.detach().clone().float()
    hinv, dead = inverse_factor(hessian.to(w.device), percdamp)
    w[:, dead] = 0.0
    cols = w.shape[1]
    mask = torch.ones_like(w, dtype=torch.bool)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        w1, hinv1 = w[:, i1:i2].clone(), hinv[i1:i2, i1:i2]
        d = torch.diagonal(hinv1)
        q1, err1 = torch.zeros_like(w1), torch.zeros_like(w1)
        mask1 = block_mask(i1, i2, w1, d).clone()
        for i in range(i2 - i1):
            if group_mask is not None:
                group_mask(i, w1, d, mask1)
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


# (first column, last column, columns as updated so far, diag of their Cholesky factor) -> keep-mask of the columns
StepMask = Callable[[int, int, torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def factored_sweep(weight: torch.Tensor, factor: torch.Tensor, dead: torch.Tensor, step_mask: StepMask,
                   lazy: int = 128, step: int = 128, solve: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """The column sweep of `obs_sweep`, vectorised: (updated pruned weight, keep-mask). The mask of every `step`
    columns is asked of `step_mask` when the sweep reaches them, so it may read the weights as updated so far
    (SparseGPT's update-aware choice) or slice a mask fixed beforehand. Inside a mask step the errors e of a row
    solve e·(I + U_s·D) = w·D (U_s the strictly upper Cholesky factor of `solve` columns, D = diag((1 − m)/diag U)):
    one batched unit-triangular solve instead of a Python loop over columns. Errors reach the rest of a `lazy`
    block at once and the columns right of it once per block. `factor, dead` from `inverse_factor`."""
    w = weight.detach().clone().float()
    w[:, dead] = 0.0
    rows, cols = w.shape
    keep = torch.ones_like(w, dtype=torch.bool)
    diag = torch.diagonal(factor)
    strict = torch.triu(factor, 1)  # sliced per solve: one triu for the layer, not one per step
    eye = torch.eye(solve, device=w.device)
    for i1 in range(0, cols, lazy):
        i2 = min(i1 + lazy, cols)
        err = torch.zeros(rows, i2 - i1, device=w.device)
        for j1 in range(i1, i2, step):
            j2 = min(j1 + step, i2)
            keep[:, j1:j2] = step_mask(j1, j2, w[:, j1:j2], diag[j1:j2])
            for k1 in range(j1, j2, solve):
                k2 = min(k1 + solve, j2)
                upper = strict[k1:k2, k1:k2]
                scale = (~keep[:, k1:k2]).float() / diag[k1:k2]  # [rows, b]: D of every row
                system = eye[: k2 - k1, : k2 - k1] + upper.unsqueeze(0) * scale.unsqueeze(1)
                rhs = (w[:, k1:k2] * scale).unsqueeze(-1)
                e = torch.linalg.solve_triangular(system.transpose(1, 2), rhs, upper=False,
                                                  unitriangular=True).squeeze(-1)
                w[:, k1:k2] = (w[:, k1:k2] - e @ upper) * keep[:, k1:k2]
                w[:, k2:i2] -= e @ factor[k1:k2, k2:i2]
                err[:, k1 - i1 : k2 - i1] = e
        w[:, i2:] -= err @ factor[i1:i2, i2:]
    return w.to(weight.dtype), keep


def aligned_blocksize(blocksize: int, pattern: Pattern) -> int:
    """A lazy block never splits an N:M group."""
    return max(pattern.m, blocksize - blocksize % pattern.m) if pattern.structured else blocksize


@torch.no_grad()
def sparsegpt_prune(
    weight: torch.Tensor, hessian: torch.Tensor, sparsity: float, pattern: Pattern,
    blocksize: int = 128, percdamp: float = 0.01,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (updated pruned weight, keep-mask), both [out, in]; inputs are not modified."""
    if pattern.structured:
        def block_mask(i1, i2, w1, d):
            return torch.ones_like(w1, dtype=torch.bool)

        def group_mask(i, w1, d, mask1):
            if i % pattern.m == 0:
                score = w1[:, i : i + pattern.m].pow(2) / d[i : i + pattern.m].pow(2).unsqueeze(0)
                mask1[:, i : i + pattern.m] = select_mask(score, sparsity, pattern)
    else:
        def block_mask(i1, i2, w1, d):
            return select_mask(w1.pow(2) / d.pow(2).unsqueeze(0), sparsity, pattern, group="layer")

        group_mask = None
    return obs_sweep(weight, hessian, block_mask, aligned_blocksize(blocksize, pattern), percdamp, group_mask)
