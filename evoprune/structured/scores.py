"""Unit scores: a per-weight metric aggregated over each unit (summed by default; `AGGREGATES`), or the structured
baselines FLAP and ShortGPT.

A unit's weights (LLaMA naming): an MLP channel c is gate_proj/up_proj row c and down_proj column c; query head h
is q_proj rows h·d … h·d+d−1 and the same o_proj columns; a KV group adds k_proj and v_proj rows of its KV head to
its query heads; a block is everything in it; a residual channel of a sublayer is in structured/residual.py.
Higher score = more important = kept.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from evoprune.errors import EvopruneError
from evoprune.model.layers import decoder_blocks
from evoprune.structured.allocate import UnitScores
from evoprune.structured.calibration import Calibration
from evoprune.structured.residual import residual_channel_sums
from evoprune.structured.shape import DecoderShape

# per-weight scores of one block: (block index, Linear name inside the block, its module) -> [out, in]
WeightScore = Callable[[int, str, torch.nn.Linear], torch.Tensor]
_ATTN = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj")
_MLP = ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


def _linears(block: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    modules = dict(block.named_modules())
    missing = [n for n in _ATTN + _MLP if n not in modules]
    if missing:
        raise EvopruneError(f"block has no {missing[0]}: not a LLaMA-family decoder block")
    return {n: modules[n] for n in _ATTN + _MLP}


# How a unit's per-weight scores become one number: LLM-Pruner's group reductions (its --grouping_strategy).
# sum: the total; mean: the total over the unit's weight count (units of one kind differ in size only where a
# KV group adds its k/v rows, and across kinds); l2: the root of the summed squares; max: the largest weight's.
AGGREGATES = ("sum", "mean", "l2", "max")


def _head_reduce(shape: DecoderShape, per_channel: torch.Tensor, heads: int, reduce) -> torch.Tensor:
    """[heads·head_dim] per-channel values -> [heads]."""
    return reduce(per_channel.view(heads, shape.head_dim), 1)


def _reduced(shape: DecoderShape, s: dict[str, torch.Tensor], reduce, join) -> dict[str, torch.Tensor]:
    """Every unit of every kind, each tensor's part reduced by `reduce(t, dim)` and the parts joined by `join`."""
    def rows(name, dim, heads=None):
        value = reduce(s[name], dim)
        return value if heads is None else _head_reduce(shape, value, heads, reduce)

    heads = join(rows("self_attn.q_proj", 1, shape.q_heads), rows("self_attn.o_proj", 0, shape.q_heads))
    kv = join(rows("self_attn.k_proj", 1, shape.kv_heads), rows("self_attn.v_proj", 1, shape.kv_heads))
    mlp = join(join(rows("mlp.gate_proj", 1), rows("mlp.up_proj", 1)), rows("mlp.down_proj", 0))
    whole = [reduce(t.reshape(-1), 0) for t in s.values()]
    blocks = whole[0]
    for value in whole[1:]:
        blocks = join(blocks, value)
    return {"mlp": mlp, "heads": heads, "groups": join(reduce(heads.view(shape.kv_heads, shape.n_rep), 1), kv),
            "blocks": blocks, **residual_channel_sums(s, reduce, join)}


def aggregate_block(shape: DecoderShape, s: dict[str, torch.Tensor], aggregate: str = "sum") -> dict[str, torch.Tensor]:
    """One block's per-weight scores aggregated over every unit of every kind (`AGGREGATES`)."""
    if aggregate == "max":
        return _reduced(shape, s, torch.amax, torch.maximum)
    if aggregate == "l2":
        return {k: v.sqrt() for k, v in _reduced(shape, {k: v.pow(2) for k, v in s.items()}, torch.sum,
                                                  torch.add).items()}
    sums = _reduced(shape, s, torch.sum, torch.add)
    if aggregate == "sum":
        return sums
    if aggregate == "mean":  # the weight count of each unit: the same aggregation over ones
        counts = _reduced(shape, {k: torch.ones_like(v) for k, v in s.items()}, torch.sum, torch.add)
        return {k: v / counts[k] for k, v in sums.items()}
    raise EvopruneError(f"unknown aggregate {aggregate!r} (use {', '.join(AGGREGATES)})")


@torch.no_grad()
def summed_scores(model: torch.nn.Module, shape: DecoderShape, weight_score: WeightScore,
                  aggregate: str = "sum") -> UnitScores:
    """Any per-weight metric (magnitude, Wanda, Taylor, a compiled formula) aggregated over its units."""
    rows: dict[str, list[torch.Tensor]] = {}
    for i, block in enumerate(decoder_blocks(model)):
        scores = {name: weight_score(i, name, lin).float() for name, lin in _linears(block).items()}
        bad = [name for name, t in scores.items() if not torch.isfinite(t).all()]
        if bad:
            raise EvopruneError(f"the metric gives non-finite scores in block {i} {bad[0]}")
        for kind, value in aggregate_block(shape, scores, aggregate).items():
            rows.setdefault(kind, []).append(value)
    return {kind: torch.stack(values) for kind, values in rows.items()}


@torch.no_grad()
def flap_scores(model: torch.nn.Module, shape: DecoderShape, calib: Calibration) -> UnitScores:
    """FLAP (An et al. 2024, "Fluctuation-based Adaptive Structured Pruning for Large Language Models"): for each
    input channel j of o_proj / down_proj, the fluctuation Var(x_j) × ‖W[:, j]‖²; a head sums its channels."""
    rows: dict[str, list[torch.Tensor]] = {"mlp": [], "heads": [], "groups": []}
    for i, block in enumerate(decoder_blocks(model)):
        lin = _linears(block)
        o = calib.moments[f"{i}.self_attn.o_proj"].variance() * lin["self_attn.o_proj"].weight.float().pow(2).sum(0)
        down = calib.moments[f"{i}.mlp.down_proj"].variance() * lin["mlp.down_proj"].weight.float().pow(2).sum(0)
        heads = _head_reduce(shape, o, shape.q_heads, torch.sum)
        rows["heads"].append(heads)
        rows["groups"].append(heads.view(shape.kv_heads, shape.n_rep).sum(1))
        rows["mlp"].append(down)
    return {kind: torch.stack(values) for kind, values in rows.items()}


def shortgpt_scores(calib: Calibration) -> UnitScores:
    """ShortGPT (Men et al. 2024, "ShortGPT: Layers in Large Language Models are More Redundant Than You
    Expect"): a block's influence 1 − cos(input, output); the least influential blocks go."""
    return {"blocks": calib.block_influence}
