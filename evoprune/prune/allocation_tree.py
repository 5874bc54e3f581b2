"""Allocation by a formula over per-layer descriptors (`tree:delta=0.1;<formula>`): the search's allocation gene.

The formula (descriptors in `formula/descriptors.py`) gives every prunable layer a value; the values are ranked
across layers (ties share their mean rank) and the normalised rank r in [0, 1] maps to a sparsity
s + δ·(1 − 2r): the highest value keeps the most weights (s − δ), the lowest prunes the most (s + δ). A formula
that is constant across layers is the uniform allocation. `allocation.exact_counts` then shifts all layers by one
common constant (so the budget is met to the weight whatever the sizes of the layers) and rounds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from evoprune.errors import EvopruneError
from evoprune.formula.canonical import canonical_string
from evoprune.formula.compile import evaluate_vector
from evoprune.formula.descriptors import DESCRIPTOR_SYMBOLS, DESCRIPTORS
from evoprune.formula.parse import parse_formula

TREE_DELTA = 0.1
OUTLIER_M = 5.0  # OWL's M, the paper default
_ATTN = {"q_proj", "k_proj", "v_proj", "o_proj", "query", "key", "value", "dense", "out_proj", "c_attn",
         "query_key_value", "qkv_proj", "Wqkv"}
_QK = {"q_proj", "k_proj", "query", "key"}
_OUT = {"o_proj", "down_proj", "out_proj", "fc2", "dense_4h_to_h"}


def canonical_tree(text: str) -> str:
    """The canonical text of an allocation formula (so equal formulas spell one stage); EvopruneError if it uses
    anything outside the descriptors and the operator registry."""
    return canonical_string(parse_formula(text, DESCRIPTOR_SYMBOLS))


def kind_descriptors(key: str) -> dict[str, float]:
    """attn, qk, out of a layer from its key ("3.self_attn.q_proj"; GPT-2's c_proj is attention's under attn.)."""
    kind = key.rsplit(".", 1)[-1]
    attn = kind in _ATTN or (kind == "c_proj" and ".attn." in f".{key}.")
    out = kind in _OUT or (kind == "c_proj") or (kind == "dense" and "attention" in key)
    return {"attn": float(attn), "qk": float(kind in _QK), "out": float(out)}


@torch.no_grad()
def layer_descriptors(infos, weight_of: Callable[[str], torch.Tensor],
                      x_of: Callable[[str], torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every descriptor as a float64 vector over `infos` (model order), from each layer's weight and dense X."""
    columns: dict[str, list[float]] = {name: [] for name in DESCRIPTORS}
    for info in infos:
        w = weight_of(info.key).float()
        x = x_of(info.key).float().reshape(1, -1).to(w.device)
        wanda = w.abs() * x
        mean = wanda.mean()
        values = {"depth": info.depth, **kind_descriptors(info.key),
                  "outlier": float((wanda > OUTLIER_M * mean).float().mean()),
                  "energy": float(torch.log(wanda.square().mean() + 1e-30)),
                  "spread": float(wanda.std() / mean) if mean > 0 else 0.0}
        for name in DESCRIPTORS:
            columns[name].append(values[name])
    return {name: torch.tensor(v, dtype=torch.float64) for name, v in columns.items()}


def normalised_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks in [0, 1] (0 = lowest value); equal values share their mean rank; all equal → all ½."""
    n = values.numel()
    if n == 1:
        return torch.full((1,), 0.5, dtype=torch.float64)
    order = torch.sort(values, stable=True).indices
    ranks = torch.empty(n, dtype=torch.float64)
    ranks[order] = torch.arange(n, dtype=torch.float64)
    out = ranks.clone()
    for value in torch.unique(values):  # ties: the mean of their ranks (no layer order leaks into the result)
        tied = values == value
        out[tied] = ranks[tied].mean()
    return out / (n - 1)


def tree_values(expr_text: str, descriptors: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The allocation formula over the layers; EvopruneError when it is not finite on every layer."""
    values = evaluate_vector(parse_formula(expr_text, DESCRIPTOR_SYMBOLS),
                             {k: v.float() for k, v in descriptors.items()}).double()
    if not torch.isfinite(values).all():
        raise EvopruneError(f"allocation formula {expr_text!r} is not finite on every layer")
    return values


def tree_fractions(infos, expr_text: str, descriptors: Mapping[str, torch.Tensor], target: float,
                   delta: float) -> dict[str, float]:
    """Per-layer sparsity before the budget shift: target + δ·(1 − 2·rank)."""
    if not 0 <= delta <= 0.5:
        raise EvopruneError(f"allocation tree: delta must be in [0, 0.5], got {delta}")
    ranks = normalised_ranks(tree_values(expr_text, descriptors))
    return {info.key: target + delta * (1 - 2 * float(r)) for info, r in zip(infos, ranks, strict=True)}
