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


def update_weight(spec: StageSpec, weight: torch.Tensor, mask: torch.Tensor,
                  hessian: torch.Tensor | None) -> torch.Tensor:
    """`weight` masked, then updated as `spec` says."""
    if spec.name == "none":
        return weight * mask
    return obs_update(weight, hessian, mask, int(spec.get("blocksize", OBS_BLOCKSIZE)),
                      spec.get("damp", OBS_DAMP))
