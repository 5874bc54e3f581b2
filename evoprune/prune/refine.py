"""Mask refinement after selection: greedy 1-swaps that lower each row's exact reconstruction error.

For a row w with keep-mask m, the removed part r = w⊙(1−m) costs e = rᵀHr (H = XᵀX/T, the cached Gram matrix).
Restoring a pruned weight i and pruning a kept weight j inside the same comparison group (the row, or one N:M
group) changes e by

    Δ = (w_i²H_ii − 2w_i g_i) + (w_j²H_jj + 2w_j g_j) − 2w_i w_j H_ij,   g = Hr,

so the row's count and the N:M pattern are unchanged. Each step takes, per row, the best pair among the
`candidates` most promising restores × prunes (unstructured) or among all pairs of every N:M group, applies it only
when Δ < 0 (so the error never increases), and updates g in O(width). DSnoT (Zhang et al. 2024) and SparseSwaps
follow the same idea.
"""

from __future__ import annotations

import torch

from evoprune.prune.masks import Pattern
from evoprune.prune.stages import StageSpec, parse_stage

REFINEMENTS: dict[str, tuple[str, ...]] = {"none": (), "swaps": ("budget", "candidates")}
SWAP_BUDGET, SWAP_CANDIDATES = 8, 8  # budget 8 keeps a full prune within minutes on a CPU; 32 lowers more


def parse_refine(text: str) -> StageSpec:
    return parse_stage(text, "refine", REFINEMENTS)


def row_errors(weight: torch.Tensor, mask: torch.Tensor, hessian: torch.Tensor) -> torch.Tensor:
    """(w−ŵ)ᵀH(w−ŵ) of every row [rows], in float64."""
    removed = weight.double() * ~mask
    return ((removed @ hessian.double()) * removed).sum(-1)


def _gains(w: torch.Tensor, g: torch.Tensor, w2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Error change of restoring each pruned weight alone, and of pruning each kept weight alone (w2 = w²·H_jj)."""
    wg = (w * g).mul_(2)
    return w2 - wg, wg.add_(w2)


def _best_in_rows(w, g, w2, mask, h, candidates: int):
    """Unstructured: per row, the best pair among the `candidates` best restores × best prunes."""
    rows = w.shape[0]
    pruned = (~mask).sum(-1)
    k = min(candidates, int(pruned.min()), int(mask.sum(-1).min()))
    if k == 0:
        return None
    restore, prune = _gains(w, g, w2)
    a, i = torch.topk(restore.masked_fill(mask, float("inf")), k, dim=-1, largest=False)
    b, j = torch.topk(prune.masked_fill(~mask, float("inf")), k, dim=-1, largest=False)
    cross = h[i.unsqueeze(-1), j.unsqueeze(-2)]  # [rows, k, k]
    wi, wj = torch.gather(w, 1, i), torch.gather(w, 1, j)
    delta = (a.unsqueeze(-1) + b.unsqueeze(-2) - 2 * wi.unsqueeze(-1) * wj.unsqueeze(-2) * cross).reshape(rows, -1)
    best, where = delta.min(dim=-1)
    row = torch.arange(rows, device=w.device)
    return best, i[row, where // k], j[row, where % k]


def _best_in_groups(w, g, w2, mask, h_blocks, m: int):
    """N:M: per row, the best (restore, prune) pair inside any one group of m inputs: every pair is tried."""
    rows, cols = w.shape
    restore, prune = _gains(w, g, w2)
    shape = (rows, cols // m, m)
    keep = mask.reshape(shape)
    order = torch.sort(keep.to(torch.uint8), dim=-1, stable=True).indices  # pruned positions first, then kept
    npruned = int((~keep[0, 0]).sum())
    p, q = order[..., :npruned], order[..., npruned:]  # [rows, groups, m-n], [rows, groups, n]
    a = torch.gather(restore.reshape(shape), -1, p)
    b = torch.gather(prune.reshape(shape), -1, q)
    wp, wq = torch.gather(w.reshape(shape), -1, p), torch.gather(w.reshape(shape), -1, q)
    groups = torch.arange(cols // m, device=w.device).view(1, -1, 1, 1)
    cross = h_blocks[groups, p.unsqueeze(-1), q.unsqueeze(-2)]  # [rows, groups, m-n, n]
    delta = a.unsqueeze(-1) + b.unsqueeze(-2) - 2 * wp.unsqueeze(-1) * wq.unsqueeze(-2) * cross
    best, where = delta.reshape(rows, -1).min(dim=-1)
    per_group = npruned * (m - npruned)
    row = torch.arange(rows, device=w.device)
    group, pair = where // per_group, where % per_group
    i = p[row, group, pair // (m - npruned)] + group * m
    j = q[row, group, pair % (m - npruned)] + group * m
    return best, i, j


@torch.no_grad()
def swap_refine(weight: torch.Tensor, mask: torch.Tensor, hessian: torch.Tensor, pattern: Pattern,
                budget: int = SWAP_BUDGET, candidates: int = SWAP_CANDIDATES) -> torch.Tensor:
    """A refined keep-mask: at most `budget` error-lowering swaps per row; same count per row and group.

    Float32 arithmetic; a swap is taken only when its Δ is below −1e-4 of the terms' size, far beyond float32
    rounding, so the exact (float64) error never rises."""
    w = weight.detach().float()
    h = hessian.detach().to(w.device).float()
    mask = mask.clone()
    m = pattern.m if pattern.structured else 0
    h_blocks = None
    if m:
        idx = torch.arange(w.shape[1], device=w.device).reshape(-1, m)
        h_blocks = h[idx.unsqueeze(-1), idx.unsqueeze(-2)]  # [groups, m, m]: the same for every row
    g = (w * ~mask) @ h
    dh = torch.diagonal(h).unsqueeze(0)
    w2 = w * w * dh  # fixed for the whole refinement
    active = torch.arange(w.shape[0], device=w.device)
    for _ in range(budget):
        every = len(active) == w.shape[0]  # no copies while every row still improves (the common case)
        wa, ga, ma, w2a = (w, g, mask, w2) if every else (w[active], g[active], mask[active], w2[active])
        found = (_best_in_groups(wa, ga, w2a, ma, h_blocks, m) if m
                 else _best_in_rows(wa, ga, w2a, ma, h, candidates))
        if found is None:
            break
        best, i, j = found
        row = torch.arange(len(active), device=w.device)
        size = w2a[row, i] + w2a[row, j] + 2 * (wa[row, i] * ga[row, i]).abs() + 2 * (wa[row, j] * ga[row, j]).abs()
        improving = best < -1e-4 * size
        if not improving.any():
            break
        rows, i, j = active[improving], i[improving], j[improving]
        mask[rows, i] = True
        mask[rows, j] = False
        g[rows] += w[rows, j].unsqueeze(-1) * h[j] - w[rows, i].unsqueeze(-1) * h[i]
        active = rows  # a row with no improving swap now has none later either (its mask did not change)
    return mask


def refine_mask(spec: StageSpec, weight: torch.Tensor, mask: torch.Tensor, hessian: torch.Tensor | None,
                pattern: Pattern) -> torch.Tensor:
    if spec.name == "none":
        return mask
    return swap_refine(weight, mask, hessian, pattern, int(spec.get("budget", SWAP_BUDGET)),
                       int(spec.get("candidates", SWAP_CANDIDATES)))
