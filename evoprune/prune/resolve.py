"""Exact weights for a fixed mask (the `resolve=N` setting of the `obs` and `sweep` updates).

Given a layer's keep-mask, the weights that reproduce its dense outputs best solve, row by row, a least-squares
problem: minimise (w − ŵ)·H·(w − ŵ)ᵀ over ŵ zero where pruned, i.e. H_SS ŵ_S = (w·H)_S on the kept columns S.
The OBS column sweep answers it only approximately: a column, once swept, is frozen, so errors from columns pruned
to its right never reach it. On SmolLM2 at 2:4 the sweep's layer errors are 1.3-2.1x the exact minimum.

Solving each row's system directly costs rows·k³/3 (k kept columns: ~12 s a block on 2 CPU cores); here N steps
of conjugate gradients, all rows at once (one [rows, in] x [in, in] product a step), preconditioned by diag(H) and
started from the sweep's weights, which are already close. 20 steps come within 0.0-2.0 % of the exact error at a
tenth of the direct solve's cost (the 21 layers of blocks 0, 15, 29; `tests/test_resolve.py` holds the guarantees).
"""

from __future__ import annotations

import torch

from evoprune.prune.sparsegpt import damped_hessian


@torch.no_grad()
def resolve_kept(weight: torch.Tensor, hessian: torch.Tensor, keep: torch.Tensor, start: torch.Tensor,
                 steps: int, percdamp: float = 0.01) -> torch.Tensor:
    """The kept weights of `start` moved `steps` conjugate-gradient steps toward the exact least-squares weights
    for `keep` (target: the dense `weight`'s outputs under the damped `hessian`). Pruned and dead input columns keep
    `start`'s values (zero after any update); the error never grows (each step minimises it along a direction)."""
    h, dead = damped_hessian(hessian.to(weight.device), percdamp)
    w = weight.detach().float()
    free = (keep.to(w.device) & ~dead).float()
    x = start.detach().float().clone()
    residual = ((w - x) @ h) * free  # minus the gradient on the free weights
    precondition = free / torch.diagonal(h)
    z = residual * precondition
    direction = z.clone()
    rz = (residual * z).sum(1, keepdim=True)
    for _ in range(int(steps)):
        product = (direction @ h) * free
        curvature = (direction * product).sum(1, keepdim=True)
        # a converged row has a zero direction: its step is zero, not 0/0
        alpha = torch.where(curvature > 0, rz / curvature.clamp_min(torch.finfo(curvature.dtype).tiny), 0.0)
        x += alpha * direction
        residual -= alpha * product
        z = residual * precondition
        rz_next = (residual * z).sum(1, keepdim=True)
        beta = torch.where(rz > 0, rz_next / rz.clamp_min(torch.finfo(rz.dtype).tiny), 0.0)
        direction = z + beta * direction
        rz = rz_next
    return x.to(start.dtype)
