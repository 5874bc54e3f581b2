"""A pruning method: a score function over leaves (a built-in metric or a compiled formula) or SparseGPT."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from evoprune.prune.metrics import metric_function, metric_leaves
from evoprune.stats.collect import LayerStats

Scorer = Callable[[Mapping[str, torch.Tensor]], torch.Tensor]


@dataclass(frozen=True)
class Method:
    name: str
    scorer: Scorer | None  # None: SparseGPT (needs the full Hessian, updates weights)
    leaves: tuple[str, ...]

    @property
    def is_sparsegpt(self) -> bool:
        return self.scorer is None

    @property
    def needs_gram(self) -> bool:
        return self.is_sparsegpt or "Hinv" in self.leaves

    @property
    def needs_stats(self) -> bool:
        """False for weight-only metrics (magnitude): no calibration pass is needed at all."""
        return self.is_sparsegpt or set(self.leaves) != {"W"}

    @property
    def needs_grad(self) -> bool:
        return "G" in self.leaves


def builtin_method(name: str, seqlen: int) -> Method:
    """A built-in metric by name (see `metrics.BUILTIN_METRICS`); `seqlen` is the calibration window length."""
    if name == "sparsegpt":
        return Method(name, None, metric_leaves(name))
    return Method(name, metric_function(name, seqlen), metric_leaves(name))


def layer_leaves(weight: torch.Tensor, stats: LayerStats | None) -> dict[str, torch.Tensor]:
    """Leaves of one layer in float32 on the weight's device, shaped per CONTRACTS.md (only W without stats)."""
    device = weight.device
    leaves = {"W": weight.detach().float()}
    if stats is None:
        return leaves
    leaves["X"] = stats.X.to(device).float().unsqueeze(0)
    if stats.Hinv is not None:
        leaves["Hinv"] = stats.Hinv.to(device).float().unsqueeze(0)
    if stats.G is not None:
        leaves["G"] = stats.G.to(device).float()
    return leaves
