"""Choose the units to remove from their scores: uniform widths, widths following a depth profile (each layer its
share of the budget by its depth, `budget.profile_counts`), or per-layer widths by a global ranking.

Per-layer widths follow FLAP: each kind's scores are standardised over the whole model ((s − mean) / std), so
heads and channels compare on one scale, then units go lowest first until the parameter budget is met. Residual
subsets are two kinds (attention and MLP sublayers' channels), each standardised on its own, so the split between
them comes from the ranking, not from their costs; every sublayer keeps at least one channel.
Ties follow the project rule: a stable ascending sort, so among equal scores the lower index goes first.
"""

from __future__ import annotations

import torch

from evoprune.errors import EvopruneError
from evoprune.structured.budget import (
    Budget,
    check_reachable,
    depth_counts,
    parse_widths,
    profile_counts,
    uniform_counts,
)
from evoprune.structured.selection import LayerKeep, Selection, full_selection
from evoprune.structured.shape import RESIDUAL_KINDS, DecoderShape, unit_kinds

# mlp [L, I], heads [L, Q], groups [L, KV], blocks [L], resid_attn and resid_mlp [L, hidden]; higher = keep
UnitScores = dict[str, torch.Tensor]


def allocate(shape: DecoderShape, structures: tuple[str, ...], scores: UnitScores, budget: Budget,
             widths: str, depth: int = 0) -> Selection:
    """`depth` > 0: drop that many blocks (lowest `scores["blocks"]`), equal widths in the others for the rest."""
    if depth:
        if widths != "uniform":
            raise EvopruneError("--depth goes with --widths uniform")
        counts = depth_counts(shape, structures, budget, depth)
        selection = Selection([_layer_keep(shape, scores, layer, counts) for layer in range(shape.layers)])
        selection.blocks = _keep_all_but(shape.layers, _lowest(scores["blocks"], depth)).tolist()
        return selection
    if structures == ("blocks",):
        return _drop_blocks(shape, scores["blocks"], uniform_counts(shape, structures, budget)["blocks"])
    name, slope = parse_widths(widths)
    if name == "profile":
        if slope is None:
            raise EvopruneError("--widths profile:auto must be resolved first (choose_profile)")
        per_layer = profile_counts(shape, structures, budget, slope)
        return Selection([_layer_keep(shape, scores, layer, per_layer[layer]) for layer in range(shape.layers)])
    if widths == "uniform":
        counts = uniform_counts(shape, structures, budget)
        return Selection([_layer_keep(shape, scores, layer, counts) for layer in range(shape.layers)])
    return _global(shape, structures, scores, budget)


def _lowest(values: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the `n` lowest values (stable: lower index first among ties)."""
    return torch.argsort(values, stable=True)[:n]


def _keep_all_but(size: int, dropped: torch.Tensor) -> torch.Tensor:
    keep = torch.ones(size, dtype=torch.bool)
    keep[dropped] = False
    return keep.nonzero().flatten()


def _head_order(shape: DecoderShape, head_scores: torch.Tensor) -> torch.Tensor:
    """[KV, n_rep] query-head indices, each group's heads from lowest to highest score."""
    grouped = head_scores.view(shape.kv_heads, shape.n_rep)
    order = torch.argsort(grouped, dim=1, stable=True)
    return order + torch.arange(shape.kv_heads).unsqueeze(1) * shape.n_rep


def _layer_keep(shape: DecoderShape, scores: UnitScores, layer: int, counts: dict[str, int]) -> LayerKeep:
    q_drop = torch.empty(0, dtype=torch.long)
    kv_keep = torch.arange(shape.kv_heads)
    if counts.get("heads"):
        q_drop = _head_order(shape, scores["heads"][layer])[:, : counts["heads"]].flatten()
    if counts.get("groups"):
        kv_drop = _lowest(scores["groups"][layer], counts["groups"])
        kv_keep = _keep_all_but(shape.kv_heads, kv_drop)
        q_drop = (kv_drop.unsqueeze(1) * shape.n_rep + torch.arange(shape.n_rep)).flatten()
    mlp_drop = _lowest(scores["mlp"][layer], counts["mlp"]) if counts.get("mlp") else q_drop[:0]
    keep = LayerKeep(_keep_all_but(shape.q_heads, q_drop), kv_keep, _keep_all_but(shape.intermediate, mlp_drop))
    if "resid_attn" in counts:  # a residual selection sets both subsets in every block, even when full
        keep.resid_attn = _keep_all_but(shape.hidden, _lowest(scores["resid_attn"][layer], counts["resid_attn"]))
        keep.resid_mlp = _keep_all_but(shape.hidden, _lowest(scores["resid_mlp"][layer], counts["resid_mlp"]))
    return keep


def _drop_blocks(shape: DecoderShape, block_scores: torch.Tensor, n: int) -> Selection:
    selection = full_selection(shape)
    selection.blocks = _keep_all_but(shape.layers, _lowest(block_scores, n)).tolist()
    return selection


def _candidates(shape: DecoderShape, kind: str, scores: UnitScores) -> tuple[torch.Tensor, list[tuple]]:
    """Every removable unit of one kind as (layer, unit) with its score, each layer's lowest first."""
    values, units = [], []
    for layer in range(shape.layers):
        if kind == "heads":  # step j drops the j-th weakest query head of every group at once
            order = _head_order(shape, scores["heads"][layer])
            step_scores = scores["heads"][layer][order].sum(0)
            for j in range(shape.n_rep):
                values.append(step_scores[j])
                units.append((layer, order[:, j]))
        else:
            row = scores[kind][layer]
            for idx in torch.argsort(row, stable=True).tolist():
                values.append(row[idx])
                units.append((layer, idx))
    return torch.stack(values).float(), units


def _global(shape: DecoderShape, structures: tuple[str, ...], scores: UnitScores, budget: Budget) -> Selection:
    check_reachable(shape, structures, budget)
    z_all, entries = [], []
    kinds = unit_kinds(structures)
    for kind in kinds:
        values, units = _candidates(shape, kind, scores)
        std = values.std()
        z_all.append((values - values.mean()) / (std if std > 0 else 1.0))
        entries += [(kind, layer, unit) for layer, unit in units]
    order = torch.argsort(torch.cat(z_all), stable=True).tolist()
    taken: dict[tuple[str, int], list] = {}
    removed = 0
    for i in order:
        if removed >= budget.target:
            break
        kind, layer, unit = entries[i]
        cost = shape.unit_cost(kind)
        held = taken.setdefault((kind, layer), [])
        if len(held) >= shape.units(kind) - 1 or removed + cost > budget.limit:
            continue  # never empty a layer's structure; never overshoot the tolerance
        held.append(unit)
        removed += cost
    if removed < budget.target:
        raise EvopruneError(f"no per-layer widths meet the budget within the tolerance (removed {removed:,} of "
                            f"{budget.target:,} parameters); raise --tolerance or change --ratio")
    residual = RESIDUAL_KINDS[0] in kinds
    return Selection([_layer_from_taken(shape, taken, layer, residual) for layer in range(shape.layers)])


def _layer_from_taken(shape: DecoderShape, taken: dict, layer: int, residual: bool) -> LayerKeep:
    q_drop = [torch.as_tensor(u).flatten() for u in taken.get(("heads", layer), [])]
    kv_drop = torch.tensor(taken.get(("groups", layer), []), dtype=torch.long)
    q_drop += [(kv_drop.unsqueeze(1) * shape.n_rep + torch.arange(shape.n_rep)).flatten()]
    mlp_drop = torch.tensor(taken.get(("mlp", layer), []), dtype=torch.long)
    keep = LayerKeep(_keep_all_but(shape.q_heads, torch.cat(q_drop)), _keep_all_but(shape.kv_heads, kv_drop),
                     _keep_all_but(shape.intermediate, mlp_drop))
    if residual:
        keep.resid_attn, keep.resid_mlp = (
            _keep_all_but(shape.hidden, torch.tensor(taken.get((kind, layer), []), dtype=torch.long))
            for kind in RESIDUAL_KINDS)
    return keep

