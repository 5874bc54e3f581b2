"""The per-layer descriptors an allocation formula may use (a second vocabulary beside the leaves W, X, G, Hinv).

An allocation formula is evaluated once over the vectors of all prunable layers (one entry per layer, model
order), so tensor reductions (mms, zscore, rownorm, colnorm) act across layers. Its value, ranked across layers,
sets each layer's sparsity (`prune/allocation_tree.py`). Lower-case names, so they never clash with the leaves.
"""

from __future__ import annotations

import sympy

DESCRIPTORS: dict[str, str] = {
    "depth": "relative depth of the layer's block in [0, 1] (first block 0, last 1)",
    "attn": "1 for an attention projection (q, k, v, o), 0 for an MLP projection",
    "qk": "1 for a query or key projection, else 0",
    "out": "1 for a block's output projections (o_proj, down_proj), else 0",
    "outlier": "share of the layer's Wanda scores |W|·X above 5× their mean (OWL's outlier ratio, per layer)",
    "energy": "log of the layer's mean dense output energy per weight, mean_ij W_ij²·X_j² (diagonal of ‖WX‖²/T)",
    "spread": "coefficient of variation (std / mean) of the layer's Wanda scores |W|·X",
}
DESCRIPTOR_SYMBOLS: dict[str, sympy.Symbol] = {name: sympy.Symbol(name, real=True) for name in DESCRIPTORS}
