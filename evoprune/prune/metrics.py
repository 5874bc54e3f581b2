"""Built-in importance metrics: pure functions of the leaves (see CONTRACTS.md) returning scores shaped like W.

Higher score = more important = kept. SparseGPT is not a pure metric (it updates weights); it lives in
`sparsegpt.py` and is listed here only by name so every command knows it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch

from evoprune.errors import EvopruneError

Leaves = Mapping[str, torch.Tensor]


def magnitude(leaves: Leaves) -> torch.Tensor:
    """|W| (Han et al. 2015, "Learning both Weights and Connections for Efficient Neural Networks")."""
    return leaves["W"].abs()


def wanda(leaves: Leaves) -> torch.Tensor:
    """|W|·‖X_j‖ (Sun et al. 2024, "A Simple and Effective Pruning Approach for Large Language Models")."""
    return leaves["W"].abs() * leaves["X"]


def ria(leaves: Leaves, a: float = 0.5) -> torch.Tensor:
    """RIA: (|W|/Σ_row|W| + |W|/Σ_col|W|)·‖X_j‖^a, a = 0.5 (Zhang et al. 2024, "Plug-and-Play: An Efficient
    Post-training Pruning Method for Large Language Models"). Row = one output's inputs, column = one input's
    outputs."""
    w = leaves["W"].abs()
    relative = w / w.sum(dim=1, keepdim=True) + w / w.sum(dim=0, keepdim=True)
    return relative * leaves["X"].pow(a)


def gblm(leaves: Leaves, seqlen: int) -> torch.Tensor:
    """GBLM-Pruner: |W|·‖X_j‖ + |W|·G (Das et al. 2023, "Beyond Size: How Gradients Shape Pruning Decisions in
    Large Language Models"). Its ‖X_j‖ is Wanda's per-sample norm, √seqlen × our RMS leaf X, so the two terms
    keep the paper's relative weight."""
    w = leaves["W"].abs()
    return w * leaves["X"] * math.sqrt(seqlen) + w * leaves["G"]


def pruner_zero(leaves: Leaves) -> torch.Tensor:
    """W²·minmax(G), the published evolved formula (Dong et al. 2024, "Pruner-Zero: Evolving Symbolic Pruning
    Metric from Scratch for Large Language Models")."""
    g = leaves["G"]
    span = g.max() - g.min()
    normed = (g - g.min()) / span if span > 0 else torch.zeros_like(g)
    return leaves["W"].pow(2) * normed


# name -> (function taking leaves and calibration seqlen, leaves it needs)
_METRICS: dict[str, tuple[Callable[[Leaves, int], torch.Tensor], tuple[str, ...]]] = {
    "magnitude": (lambda lv, _: magnitude(lv), ("W",)),
    "wanda": (lambda lv, _: wanda(lv), ("W", "X")),
    "ria": (lambda lv, _: ria(lv), ("W", "X")),
    "gblm": (gblm, ("W", "X", "G")),
    "pruner-zero": (lambda lv, _: pruner_zero(lv), ("W", "G")),
}
BUILTIN_METRICS = (*_METRICS, "sparsegpt")
# The built-ins written in the formula language (the search seeds and reports them; a test checks each ranks
# weights exactly as its function does). GBLM is absent: its √seqlen factor is not a formula constant.
BASELINE_FORMULAS = {"magnitude": "abs(W)", "wanda": "abs(W)*X", "ria": "(rownorm(abs(W)) + colnorm(abs(W)))*X**0.5",
                     "pruner-zero": "W**2*mms(G)"}


def metric_leaves(name: str) -> tuple[str, ...]:
    if name == "sparsegpt":
        return ("W",)  # plus the full Hessian, which the SparseGPT path collects itself
    return _METRICS[name][1]


def metric_function(name: str, seqlen: int) -> Callable[[Leaves], torch.Tensor]:
    if name not in _METRICS:
        raise EvopruneError(f"unknown metric {name!r} (built-ins: {', '.join(BUILTIN_METRICS)})")
    fn = _METRICS[name][0]
    return lambda leaves: fn(leaves, seqlen)
