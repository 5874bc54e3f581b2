"""The leaves a formula may use (definitions: CONTRACTS.md). Symbols are real, so |W|² folds to W²."""

from __future__ import annotations

import sympy

LEAF_DOCS = {
    "W": "the layer weight [out, in]",
    "X": "RMS of input channel j over the calibration tokens, sqrt(Σ_t x_tj² / T), broadcast over rows",
    "G": "gradient magnitude sqrt(Σ_windows (100·∂loss/∂W)²) from the dense model [out, in]",
    "Hinv": "diag((XᵀX/T + 0.01·mean diag·I)⁻¹) per input channel, broadcast over rows",
}
# W is real; X, G and Hinv are norms/variances, so nonnegative (sympy then folds |X| to X).
# (W gets no sign assumption at all: nonnegative=False would tell sympy that W is negative.)
LEAF_SYMBOLS = {name: sympy.Symbol(name, real=True) if name == "W" else sympy.Symbol(name, nonnegative=True)
                for name in LEAF_DOCS}
