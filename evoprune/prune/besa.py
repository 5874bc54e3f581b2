"""BESA-style allocation (Xu et al. 2024, "BESA: Pruning Large Language Models with Blockwise Parameter-Efficient
Sparsity Allocation"): per-layer and per-row sparsity learned by block-wise reconstruction.

Inside each row the weights are ranked by the recipe's score. A row holds a probability vector β over D candidate
rates p_d = d/D; under candidate d the row prunes its p_d lowest-ranked weights, so the weight at rank fraction q
is kept with probability Σ_{d ≤ ⌊qD⌋} β_d (a differentiable mask). β (a softmax of learned logits) is trained with
Adam to minimise the block's relative output error against its dense output plus a penalty
`penalty·(sparsity − target)²` that holds the block's overall sparsity at the target. Only the logits learn; the
weights stay as they are. The learned expected rates are returned; `allocation.exact_counts` / `row_counts` turn
them into exact budgets and the score picks the weights.

Here every block learns from the dense model's inputs (one pass, as OWL's statistics), so the allocation is a
plain per-row table that either prune mode can apply; the paper learns sequentially on pruned inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch.func import functional_call

from evoprune.model.layers import block_linears, decoder_blocks
from evoprune.prune.method import layer_leaves
from evoprune.prune.stages import StageSpec
from evoprune.stats.accumulate import accumulate_block
from evoprune.stats.blocks import capture_block_inputs
from evoprune.stats.collect import layer_stats

Scorer = Callable[[Mapping[str, torch.Tensor]], torch.Tensor]
DEFAULTS = {"rates": 50, "epochs": 4, "lr": 0.05, "penalty": 10.0, "samples": 16, "rows": 1}


def _rank_buckets(scores: torch.Tensor, rates: int) -> torch.Tensor:
    """For every weight, ⌊q·D⌋ of its rank fraction q inside its row (lowest score: q = 0; stable ties)."""
    cols = scores.shape[1]
    order = torch.sort(scores, dim=1, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(cols, device=scores.device).expand_as(order))
    return (ranks * rates) // cols


def _soft_mask(logits: torch.Tensor, buckets: torch.Tensor) -> torch.Tensor:
    keep = torch.softmax(logits, dim=-1).cumsum(-1)  # [rows or 1, D]: P(kept) for each rank bucket
    return torch.gather(keep.expand(buckets.shape[0], -1), 1, buckets)


def _learn_block(block, refs, buckets, inputs, dense_out, target, spec: dict) -> dict[str, torch.Tensor]:
    rates = int(spec["rates"])
    grid = torch.arange(rates, dtype=torch.float32) / rates
    init = -((grid - target).abs() * rates / 4)  # start near the target rate
    logits = {ref.name: torch.nn.Parameter(init.repeat(ref.weight().shape[0] if spec["rows"] else 1, 1))
              for ref in refs}
    weights = {ref.name: ref.module.weight.detach() for ref in refs}
    sizes = {ref.name: ref.weight().numel() for ref in refs}
    total = sum(sizes.values())
    opt = torch.optim.Adam(logits.values(), lr=float(spec["lr"]))
    batch = inputs.batch_size
    hidden = inputs.hidden
    for _ in range(int(spec["epochs"])):
        for start in range(0, len(hidden), batch):
            masks = {name: _soft_mask(logits[name], buckets[name]) for name in logits}
            params = {f"{name}.weight": weights[name] * (masks[name].t() if ref.transposed else masks[name])
                      for ref in refs for name in [ref.name]}
            out = functional_call(block, params, (hidden[start : start + batch],), inputs.kwargs)
            out = out[0] if isinstance(out, tuple) else out
            ref_out = dense_out[start : start + batch]
            error = (out - ref_out).pow(2).sum() / ref_out.pow(2).sum()
            sparsity = sum((1 - masks[n].mean()) * sizes[n] for n in masks) / total
            loss = error + float(spec["penalty"]) * (sparsity - target) ** 2
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return {name: 1 - _soft_mask(logits[name], buckets[name]).mean(-1) for name in logits}


def besa_rates(model: torch.nn.Module, windows: torch.Tensor, scorer: Scorer, target: float, spec: StageSpec,
               progress: Callable[[str, int, int], None] | None = None) -> dict[str, torch.Tensor]:
    """Learned expected sparsity of every row [rows] of every prunable layer, keyed like `prunable_layers`."""
    settings = {k: spec.get(k, v) for k, v in DEFAULTS.items()}
    with torch.no_grad():
        inputs = capture_block_inputs(model, windows[: int(settings["samples"])], batch_size=4)
    blocks = decoder_blocks(model)
    rates: dict[str, torch.Tensor] = {}
    for i, block in enumerate(blocks):
        refs = block_linears(block)
        with torch.no_grad():
            accs, dense_out = accumulate_block(block, refs, inputs, with_gram=False)
            buckets = {ref.name: _rank_buckets(scorer(layer_leaves(ref.weight(), layer_stats(accs[ref.name], False))),
                                               int(settings["rates"])) for ref in refs}
        with torch.enable_grad():
            learned = _learn_block(block, refs, buckets, inputs, dense_out, target, settings)
        rates.update({f"{i}.{name}": r.detach() for name, r in learned.items()})
        inputs.hidden = dense_out
        if progress is not None:
            progress("besa", 1, len(blocks))
    return rates
