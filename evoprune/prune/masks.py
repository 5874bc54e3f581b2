"""Masks from scores: the ONE place where weights are ranked and selected.

Tie rule (used by prune, search and export alike): scores are ranked with a stable ascending sort, so among
equal scores the weight with the lower index inside its comparison group is pruned first. The embedded model is
4-bit, so |W| alone ties often (REFERENCE.md); this rule makes every result reproducible.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from evoprune.errors import EvopruneError

GROUPS = ("row", "layer")


@dataclass(frozen=True)
class Pattern:
    """`unstructured`, or N:M = at most N kept weights in every M consecutive inputs (NVIDIA's 2:4)."""

    n: int = 0
    m: int = 0

    @property
    def structured(self) -> bool:
        return self.m > 0

    @property
    def sparsity(self) -> float:
        return 1.0 - self.n / self.m if self.structured else float("nan")

    def __str__(self) -> str:
        return f"{self.n}:{self.m}" if self.structured else "unstructured"


def parse_pattern(text: str) -> Pattern:
    if text == "unstructured":
        return Pattern()
    match = re.fullmatch(r"(\d+):(\d+)", text.strip())
    if not match:
        raise EvopruneError(f"unknown pattern {text!r} (use unstructured or N:M such as 2:4)")
    n, m = int(match.group(1)), int(match.group(2))
    if not 0 < n < m:
        raise EvopruneError(f"pattern {text!r} needs 0 < N < M")
    return Pattern(n, m)


def check_sparsity(sparsity: float, pattern: Pattern) -> float:
    """The sparsity a prune will reach; rejects values outside [0, 1) or that contradict an N:M pattern."""
    if pattern.structured:
        if sparsity is not None and abs(sparsity - pattern.sparsity) > 1e-9:
            raise EvopruneError(
                f"sparsity {sparsity} contradicts pattern {pattern} (which implies {pattern.sparsity:g})"
            )
        return pattern.sparsity
    if sparsity is None or not 0.0 <= sparsity < 1.0:
        raise EvopruneError(f"sparsity must be in [0, 1), got {sparsity}")
    return sparsity


def _kth_smallest(flat: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th smallest value of every row, [rows, 1]. numpy's introselect is ~4x faster than torch.kthvalue on
    CPU and much faster than a full sort; on an accelerator torch.kthvalue stays on the device."""
    if flat.device.type == "cpu":
        values = np.partition(flat.numpy(), k - 1, axis=-1)[:, k - 1 : k]
        return torch.from_numpy(values)
    return flat.kthvalue(k, dim=-1, keepdim=True).values


def _prune_lowest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Keep-mask along the last dim that drops the k lowest scores; among ties at the threshold the lower index is
    dropped first, exactly as a stable ascending sort would (tested against one)."""
    n = scores.shape[-1]
    if k <= 0:
        return torch.ones_like(scores, dtype=torch.bool)
    if k >= n:
        return torch.zeros_like(scores, dtype=torch.bool)
    flat = scores.detach().reshape(-1, n)
    if n <= 8:  # N:M groups: a stable sort over tiny rows is cheaper than selection
        order = torch.sort(flat, dim=-1, stable=True).indices
        keep = torch.ones_like(flat, dtype=torch.bool)
        keep.scatter_(-1, order[:, :k], False)
        return keep.reshape(scores.shape)
    threshold = _kth_smallest(flat.contiguous(), k)
    keep = flat > threshold
    ties = flat == threshold
    # ties to drop per row = k minus the scores strictly below the threshold; rows with more ties than that keep
    # the later ones (higher index)
    tie_count = ties.sum(-1, keepdim=True)
    drop_ties = k - (n - keep.sum(-1, keepdim=True) - tie_count)
    rows = (tie_count > drop_ties).squeeze(-1).nonzero().squeeze(-1)
    if len(rows):
        row_ties = ties[rows]
        keep[rows] |= row_ties & (row_ties.cumsum(-1) > drop_ties[rows])
    return keep.reshape(scores.shape)


def select_mask(scores: torch.Tensor, sparsity: float, pattern: Pattern, group: str = "row") -> torch.Tensor:
    """Boolean keep-mask shaped like `scores` [out, in].

    unstructured: exactly floor(sparsity * group size) pruned per output row (`group="row"`, Wanda's group) or per
    matrix (`group="layer"`). N:M: M-N pruned in every M consecutive weights along the input dimension.
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must be 2-D [out, in], got shape {tuple(scores.shape)}")
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN")
    rows, cols = scores.shape
    if pattern.structured:
        if cols % pattern.m:
            raise EvopruneError(f"pattern {pattern}: input width {cols} is not divisible by {pattern.m}")
        grouped = scores.reshape(rows, cols // pattern.m, pattern.m)
        return _prune_lowest(grouped, pattern.m - pattern.n).reshape(rows, cols)
    if group == "row":
        return _prune_lowest(scores, int(sparsity * cols))
    if group == "layer":
        return _prune_lowest(scores.reshape(1, -1), int(sparsity * scores.numel())).reshape(rows, cols)
    raise EvopruneError(f"unknown group {group!r} (use {', '.join(GROUPS)})")


def _prune_lowest_per_row(scores: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Keep-mask [rows, n] that drops counts[r] lowest scores of row r (the same tie rule as `_prune_lowest`)."""
    keep = torch.ones_like(scores, dtype=torch.bool)
    for k in torch.unique(counts).tolist():  # few distinct counts: one selection per value
        rows = (counts == k).nonzero().squeeze(-1)
        keep[rows] = _prune_lowest(scores[rows], int(k))
    return keep


def spread_count(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Per-row prune counts [rows] summing to exactly `count`: every row prunes ⌊count/rows⌋ and the remainder goes
    to the rows whose next weight to prune has the lowest score (lower row index first among ties), so a layer
    reaches an exact budget without dropping Wanda's per-row comparison."""
    rows, cols = scores.shape
    if not 0 <= count <= rows * cols:
        raise ValueError(f"cannot prune {count} of {rows * cols} weights")
    base, extra = divmod(count, rows)
    counts = torch.full((rows,), base, dtype=torch.long, device=scores.device)
    if extra:
        nxt = _kth_smallest(scores.detach().float().contiguous(), base + 1).squeeze(-1)
        order = torch.sort(nxt, stable=True).indices
        counts[order[:extra]] += 1
    return counts


def select_mask_counts(scores: torch.Tensor, counts: torch.Tensor | int, group: str = "row") -> torch.Tensor:
    """Keep-mask for an exact number of pruned weights: `counts` per row ([rows] tensor) or for the whole layer
    (an int: spread over rows with `spread_count` for `group="row"`, one threshold for `group="layer"`)."""
    if scores.dim() != 2:
        raise ValueError(f"scores must be 2-D [out, in], got shape {tuple(scores.shape)}")
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN")
    if isinstance(counts, int):
        if group == "layer":
            return _prune_lowest(scores.reshape(1, -1), counts).reshape(scores.shape)
        if group != "row":
            raise EvopruneError(f"unknown group {group!r} (use {', '.join(GROUPS)})")
        counts = spread_count(scores, counts)
    return _prune_lowest_per_row(scores, counts.to(scores.device))
