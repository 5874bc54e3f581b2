"""AdaPruner's calibration pool: disjoint validation windows for the pool and for the objective, and per-window
channel moments so a trial's calibration statistics are a sum over its chosen windows (one dense pass in all).

Moments are additive over tokens (Σx, Σx², count), so summing the chosen windows' rows gives exactly what a pass
over those windows alone accumulates, up to float summation order; chosen windows are summed in sorted order so
the same set gives the same bits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from evoprune.errors import EvopruneError
from evoprune.model.layers import block_linears, decoder_blocks
from evoprune.stats.accumulate import observe_block
from evoprune.stats.blocks import capture_block_inputs
from evoprune.structured.calibration import ChannelMoments


def split_validation(ids: torch.Tensor, seqlen: int, pool: int, objective: int,
                     seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`pool` and `objective` windows of `seqlen` tokens from non-overlapping chunks of `ids`, drawn by a seeded
    permutation: no token of an objective window is in the pool."""
    chunks = len(ids) // seqlen
    if chunks < pool + objective:
        raise EvopruneError(f"the validation text holds {chunks} windows of {seqlen} tokens, fewer than pool + "
                            f"objective_windows = {pool + objective}")
    windows = ids[: chunks * seqlen].view(chunks, seqlen)
    order = torch.randperm(chunks, generator=torch.Generator().manual_seed(seed))
    return windows[order[:pool]], windows[order[pool: pool + objective]]


def validation_windows(tokenizer, data: str, seqlen: int, windows: int, seed: int) -> torch.Tensor:
    """`windows` disjoint windows of `seqlen` tokens from the calibration text's validation split (never the test
    split), drawn by `split_validation`'s seeded permutation: what a structured choice is judged on."""
    from evoprune.data.text import load_text
    from evoprune.data.tokens import tokenize

    return split_validation(tokenize(tokenizer, load_text(data, "calib")), seqlen, 0, windows, seed)[1]


@dataclass
class WindowMoments:
    """Σx and Σx² per input channel, one row per pool window (batches arrive in window order)."""

    total: torch.Tensor  # [P, in]
    sumsq: torch.Tensor  # [P, in]
    tokens: torch.Tensor  # [P]
    filled: int = 0

    def add(self, x: torch.Tensor) -> None:
        x = x.float()
        rows = slice(self.filled, self.filled + x.shape[0])
        self.total[rows] += x.sum(1)
        self.sumsq[rows] += x.pow(2).sum(1)
        self.tokens[rows] += x.shape[1]
        self.filled += x.shape[0]

    def chosen(self, windows: list[int]) -> ChannelMoments:
        idx = torch.tensor(sorted(windows), dtype=torch.long)
        return ChannelMoments(self.total[idx].sum(0), self.sumsq[idx].sum(0), int(self.tokens[idx].sum()))


@torch.no_grad()
def pool_moments(model: torch.nn.Module, pool: torch.Tensor) -> dict[str, WindowMoments]:
    """Per-window input moments of every Linear of the dense model, keyed like `prunable_layers`."""
    inputs = capture_block_inputs(model, pool)
    moments: dict[str, WindowMoments] = {}
    n, device = len(pool), inputs.hidden.device

    def make(ref) -> WindowMoments:
        width = ref.weight().shape[1]
        return WindowMoments(torch.zeros(n, width, device=device), torch.zeros(n, width, device=device),
                             torch.zeros(n, dtype=torch.long, device=device))

    for i, block in enumerate(decoder_blocks(model)):
        accs, outputs = observe_block(block, block_linears(block), inputs, make)
        moments.update({f"{i}.{name}": acc for name, acc in accs.items()})
        inputs.hidden = outputs
    return moments
