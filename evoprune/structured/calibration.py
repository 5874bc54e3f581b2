"""One dense pass over calibration windows: per-channel input moments of every Linear, and ShortGPT's block
influence. FLAP needs the mean and variance of each input channel (Wanda's RMS does not carry the mean its bias
compensation uses), so this pass keeps Σx and Σx² per channel."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from evoprune.model.layers import block_linears, decoder_blocks
from evoprune.stats.accumulate import observe_block
from evoprune.stats.blocks import capture_block_inputs


@dataclass
class ChannelMoments:
    total: torch.Tensor  # [in] Σ_t x_tj
    sumsq: torch.Tensor  # [in] Σ_t x_tj²
    tokens: int = 0

    def add(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).float()
        self.total += x.sum(0)
        self.sumsq += x.pow(2).sum(0)
        self.tokens += x.shape[0]

    def mean(self) -> torch.Tensor:
        return self.total / max(self.tokens, 1)

    def rms(self) -> torch.Tensor:
        """The leaf X of CONTRACTS.md: sqrt(Σx² / T)."""
        return (self.sumsq / max(self.tokens, 1)).sqrt()

    def variance(self) -> torch.Tensor:
        """FLAP's fluctuation: the (unbiased) variance of the channel over the calibration tokens."""
        n = max(self.tokens, 2)
        return ((self.sumsq - self.total.pow(2) / n) / (n - 1)).clamp_min(0)


@dataclass
class Calibration:
    moments: dict[str, ChannelMoments]  # keyed like prunable_layers: "3.mlp.down_proj"
    block_influence: torch.Tensor  # [L] ShortGPT's BI = 1 − mean cos(block input, block output)


def _cosine_influence(hidden_in: torch.Tensor, hidden_out: torch.Tensor) -> float:
    cos = torch.nn.functional.cosine_similarity(hidden_in.float(), hidden_out.float(), dim=-1)
    return float(1.0 - cos.mean())


@torch.no_grad()
def calibrate(model: torch.nn.Module, windows: torch.Tensor) -> Calibration:
    inputs = capture_block_inputs(model, windows)
    moments: dict[str, ChannelMoments] = {}
    influence = []
    for i, block in enumerate(decoder_blocks(model)):
        accs, outputs = observe_block(block, block_linears(block), inputs,
                                      lambda ref: ChannelMoments(torch.zeros(ref.weight().shape[1]),
                                                                 torch.zeros(ref.weight().shape[1])))
        moments.update({f"{i}.{name}": acc for name, acc in accs.items()})
        influence.append(_cosine_influence(inputs.hidden, outputs))
        inputs.hidden = outputs
    return Calibration(moments, torch.tensor(influence))
