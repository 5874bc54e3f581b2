"""Weight update after masking: given a fixed keep-mask, the OBS/SparseGPT column sweep moves each pruned weight's
error onto the kept weights to its right, through the damped inverse Hessian (see `sparsegpt.obs_sweep`).

With SparseGPT's own mask it reproduces SparseGPT's weights exactly (tested); with any other mask (Wanda, a
formula, after swaps) it recovers most of the reconstruction error at the cost of one sweep per layer.
`resolve=N` (obs, sweep) then moves the kept weights N conjugate-gradient steps toward the exact least-squares
weights for the final mask (`resolve.py`), which the one-pass sweep only approximates.
"""

from __future__ import annotations

import torch

from evoprune.errors import EvopruneError
from evoprune.prune.resolve import resolve_kept
from evoprune.prune.sparsegpt import factored_sweep, obs_sweep
from evoprune.prune.stages import StageSpec, parse_stage

# sweep: the mask is chosen inside the sweep (`sweep.py`), so it needs the score: `update_weight` cannot run it
UPDATES: dict[str, tuple[str, ...]] = {"none": (), "obs": ("blocksize", "damp", "resolve"),
                                       "sweep": ("blocksize", "damp", "groups", "resolve")}
OBS_BLOCKSIZE, OBS_DAMP = 128, 0.01
MAX_RESOLVE = 1000  # conjugate-gradient steps; 20 already come within 2 % of the exact error


def parse_update(text: str) -> StageSpec:
    spec = parse_stage(text, "update", UPDATES)
    steps = spec.get("resolve", 0)
    if steps != int(steps) or not 0 <= steps <= MAX_RESOLVE:
        raise EvopruneError(f"update {spec.name}: resolve={steps:g} is not a whole number of steps in 0..{MAX_RESOLVE}")
    return spec


def resolved(spec: StageSpec, weight: torch.Tensor, new_weight: torch.Tensor, mask: torch.Tensor,
             hessian: torch.Tensor | None) -> torch.Tensor:
    """`new_weight` (the update's), moved `resolve` steps toward the exact weights for `mask` (unchanged without)."""
    steps = int(spec.get("resolve", 0))
    if steps == 0:
        return new_weight
    if hessian is None:
        raise EvopruneError(f"update {spec}: resolve needs the layer's Hessian (calibration statistics)")
    return resolve_kept(weight, hessian, mask, new_weight, steps, spec.get("damp", OBS_DAMP))


@torch.no_grad()
def obs_update(weight: torch.Tensor, hessian: torch.Tensor, mask: torch.Tensor, blocksize: int = OBS_BLOCKSIZE,
               percdamp: float = OBS_DAMP) -> torch.Tensor:
    """The updated weight [out, in]: zero where `mask` is False, compensated where it is True."""
    new_weight, _ = obs_sweep(weight, hessian, lambda i1, i2, _w, _d: mask[:, i1:i2], blocksize, percdamp)
    return new_weight


def obs_update_factored(weight: torch.Tensor, mask: torch.Tensor, factor: torch.Tensor, dead: torch.Tensor,
                        blocksize: int = 32) -> torch.Tensor:
    """The same column sweep as `obs_update` for a fixed mask, vectorised (`sparsegpt.factored_sweep`): `factor,
    dead` from `sparsegpt.inverse_factor` (computed once per layer by a fitness). Equal to `obs_update` up to float
    rounding (tested); `prune` keeps the loop, which reproduces SparseGPT's weights bit for bit."""
    keep = mask.to(weight.device)
    new_weight, _ = factored_sweep(weight, factor, dead, lambda j1, j2, _w, _d: keep[:, j1:j2], blocksize,
                                   blocksize, blocksize)
    return new_weight


def update_weight(spec: StageSpec, weight: torch.Tensor, mask: torch.Tensor,
                  hessian: torch.Tensor | None) -> torch.Tensor:
    """`weight` masked, then updated as `spec` says."""
    if spec.name == "none":
        return weight * mask
    if spec.name == "sweep":
        raise EvopruneError("update sweep chooses the mask itself: run it through sweep.sweep_prune")
    new_weight = obs_update(weight, hessian, mask, int(spec.get("blocksize", OBS_BLOCKSIZE)),
                            spec.get("damp", OBS_DAMP))
    return resolved(spec, weight, new_weight, mask, hessian)
