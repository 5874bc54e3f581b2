"""The protected torch semantics of every operator with a domain problem: the ONE numeric definition shared by
search (through `compile_formula`), simplification (constant folding in `operators.py`) and export (the Python
printer writes these same expressions inline; `printing.PROTECTED_SOURCE` mirrors this file and a test checks
that both agree).

Rules: a denominator closer to 0 than EPS becomes EPS (sign kept for |d| ≥ EPS); log and sqrt take |a|; exp is
capped at EXP_MAX; reductions of a constant tensor give zeros (no ranking, so the evaluator penalises it).
"""

from __future__ import annotations

import torch

EPS = 1e-12  # denominators and log arguments never get closer to 0 than this
EXP_MAX = 30.0  # exp(30) ~ 1e13: large, and products of a few such terms stay finite in float32


def safe_den(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x.abs() < EPS, torch.full_like(x, EPS), x)


def div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a / safe_den(b)


def sqrt(a: torch.Tensor) -> torch.Tensor:
    return a.abs().sqrt()


def log(a: torch.Tensor) -> torch.Tensor:
    return torch.log(a.abs() + EPS)


def exp(a: torch.Tensor) -> torch.Tensor:
    return torch.exp(a.clamp(max=EXP_MAX))


def mms(x: torch.Tensor) -> torch.Tensor:
    lo, hi = x.min(), x.max()
    return (x - lo) / (hi - lo) if hi > lo else torch.zeros_like(x)


def zscore(x: torch.Tensor) -> torch.Tensor:
    std = x.std(unbiased=False)
    return (x - x.mean()) / std if std > 0 else torch.zeros_like(x)


def rownorm(x: torch.Tensor) -> torch.Tensor:
    """Each output row over its inputs: x_ij / Σ_j |x_ij| (dim -1, the input dimension)."""
    return x / safe_den(x.abs().sum(dim=-1, keepdim=True))


def colnorm(x: torch.Tensor) -> torch.Tensor:
    """Each input column over its outputs: x_ij / Σ_i |x_ij| (dim 0). Leaves shaped [1, in] (X, Hinv) are broadcast
    to W's shape [out, in] before any reduction, so colnorm(X) = 1/out for every nonzero X_j, not 1."""
    return x / safe_den(x.abs().sum(dim=0, keepdim=True))


def int_power(base: torch.Tensor, n: int) -> torch.Tensor:
    """sympy's own meaning of base**n for an integer n (sign kept), with a protected division for n < 0."""
    if n >= 0:
        return base.pow(n)
    return div(torch.ones_like(base), base.pow(-n))


def power(base: torch.Tensor, exponent: float) -> torch.Tensor:
    """The registry's pow(a, c) = |a|^c for a constant c; for c < 0, 1/|a|^-c with div's protection at 0."""
    exponent = float(exponent)
    if exponent.is_integer():
        return int_power(base.abs(), int(exponent))
    if exponent < 0:
        return div(torch.ones_like(base), base.abs().pow(-exponent))
    return base.abs().pow(exponent)
