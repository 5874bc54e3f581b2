"""The leaves a formula may use, exactly as CONTRACTS.md defines them. Every leaf is broadcast to the weight's
shape [out, in] before any operator runs (see `compile.py`)."""

from __future__ import annotations

from dataclasses import dataclass

import sympy


@dataclass(frozen=True)
class Leaf:
    name: str
    shape: str
    doc: str
    nonnegative: bool  # a norm or a variance: sympy may then fold |X| to X


LEAVES: dict[str, Leaf] = {leaf.name: leaf for leaf in [
    Leaf("W", "[out, in]", "the layer's weight (float32)", nonnegative=False),
    Leaf("X", "[1, in]", "RMS of input channel j over the T calibration tokens: sqrt(Σ_t x_tj² / T) "
         "(Wanda's ‖X_j‖₂ divided by √T; rank-equivalent to Wanda's)", nonnegative=True),
    Leaf("G", "[out, in]", "gradient magnitude sqrt(Σ_windows (100·∂loss/∂W)²) over the calibration windows, "
         "dense model", nonnegative=True),
    Leaf("Hinv", "[1, in]", "diagonal of (H + λI)⁻¹ with H = XᵀX / T and λ = 0.01·mean(diag H)", nonnegative=True),
]}

LEAF_DOCS = {name: f"{leaf.shape} {leaf.doc}" for name, leaf in LEAVES.items()}
# W is only real: nonnegative=False would tell sympy that W is negative, so W gets no sign assumption at all.
LEAF_SYMBOLS: dict[str, sympy.Symbol] = {
    name: sympy.Symbol(name, nonnegative=True) if leaf.nonnegative else sympy.Symbol(name, real=True)
    for name, leaf in LEAVES.items()}
