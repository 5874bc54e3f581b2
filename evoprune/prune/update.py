"""Weight update after masking: given a fixed keep-mask, the OBS/SparseGPT column sweep moves each pruned weight's
error onto the kept weights to its right, through the damped inverse Hessian (see `sparsegpt.obs_sweep`).

With SparseGPT's own mask it reproduces SparseGPT's weights exactly (tested); with any other mask (Wanda, a
formula, after swaps) it recovers most of the reconstruction error at the cost of one sweep per layer.
"""

from __future__ import annotations

import torch

from evoprune.prune.sparsegpt import obs_sweep
from evoprune.prune.stages import StageSpec, parse_stage

UPDATES: dict[str, tuple[str, ...]] = {"none": (), "obs": ("blocksize", "damp")}
OBS_BLOCKSIZE, OBS_DAMP = 128, 0.01


def parse_update(text: str) -> StageSpec:
    return parse_stage(text, "update", UPDATES)


@torch.no_grad()
def obs_update(weight: torch.Tensor, hessian: torch.Tensor, mask: torch.Tensor, blocksize: int = OBS_BLOCKSIZE,
               percdamp: float = OBS_DAMP) -> torch.Tensor:
    """The updated weight [out, in]: zero where `mask` is False, compensated where it is True."""
    new_weight, _ = obs_sweep(weight, hessian, lambda i1, i2, _w, _d: mask[:, i1:i2], blocksize, percdamp)
    return new_weight


@torch.no_grad()
def obs_update_factored(weight: torch.Tensor, mask: torch.Tensor, factor: torch.Tensor, dead: torch.Tensor,
                        blocksize: int = 32) -> torch.Tensor:
    """The same column sweep as `obs_update` for a fixed mask, vectorised: inside a lazy block the errors e of a
    row solve e·(I + U_s·D) = w·D (U_s the block's strictly upper Cholesky factor, D = diag((1 − m)/diag U)), one
    batched unit-triangular solve instead of a Python loop over columns. `factor, dead` from
    `sparsegpt.inverse_factor` (computed once per layer by a fitness). Equal to `obs_update` up to float rounding
    (tested); `prune` keeps the loop, which reproduces SparseGPT's weights bit for bit."""
    w = weight.detach().clone().float()
    w[:, dead] = 0.0
    keep = mask.to(w.device)
    cols = w.shape[1]
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        u = factor[i1:i2, i1:i2]
        scale = (~keep[:, i1:i2]).float() / torch.diagonal(u)  # [rows, b]: D of every row
        system = torch.eye(i2 - i1, device=w.device) + torch.triu(u, 1).unsqueeze(0) * scale.unsqueeze(1)
        rhs = (w[:, i1:i2] * scale).unsqueeze(-1)
        err = torch.linalg.solve_triangular(system.transpose(1, 2), rhs, upper=False, unitriangular=True)
        err = err.squeeze(-1)
        w[:, i1:i2] = (w[:, i1:i2] - err @ torch.triu(u, 1)) * keep[:, i1:i2]
        w[:, i2:] -= err @ factor[i1:i2, i2:]
    return w.to(weight.dtype)


def update_weight(spec: StageSpec, weight: torch.Tensor, mask: torch.Tensor,
                  hessian: torch.Tensor | None) -> torch.Tensor:
    """`weight` masked, then updated as `spec` says."""
    if spec.name == "none":
        return weight * mask
    return obs_update(weight, hessian, mask, int(spec.get("blocksize", OBS_BLOCKSIZE)),
                      spec.get("damp", OBS_DAMP))
