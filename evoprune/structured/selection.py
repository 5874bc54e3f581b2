"""Which units survive: kept indices per layer, and their exact parameter count."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from evoprune.structured.shape import DecoderShape


@dataclass
class LayerKeep:
    """Kept indices of one decoder block (sorted ascending, so the shrunk model keeps the original order)."""

    q_heads: torch.Tensor  # query head indices
    kv_heads: torch.Tensor  # KV head indices
    mlp: torch.Tensor  # intermediate channels

    def params(self, shape: DecoderShape) -> int:
        attn = (len(self.q_heads) * shape.q_head_cost + len(self.kv_heads) * shape.kv_head_cost)
        return attn + len(self.mlp) * shape.mlp_channel_cost + shape.norm_params


@dataclass
class Selection:
    layers: list[LayerKeep]  # one per original block
    blocks: list[int] = field(default_factory=list)  # original indices of the blocks kept (all when empty)

    def kept_blocks(self) -> list[int]:
        return self.blocks or list(range(len(self.layers)))

    def decoder_params(self, shape: DecoderShape) -> int:
        """Weight parameters of the kept decoder (biases added by compensation are counted by the model)."""
        return sum(self.layers[i].params(shape) for i in self.kept_blocks())

    def uniform(self) -> bool:
        """Equal widths in every kept block and query heads a multiple of the KV heads: a plain HF config."""
        widths = {(len(self.layers[i].q_heads), len(self.layers[i].kv_heads), len(self.layers[i].mlp))
                  for i in self.kept_blocks()}
        return len(widths) == 1

    def widths(self) -> dict[str, list[int]]:
        kept = [self.layers[i] for i in self.kept_blocks()]
        return {"q_heads": [len(k.q_heads) for k in kept], "kv_heads": [len(k.kv_heads) for k in kept],
                "intermediate": [len(k.mlp) for k in kept]}


def full_selection(shape: DecoderShape) -> Selection:
    return Selection([LayerKeep(torch.arange(shape.q_heads), torch.arange(shape.kv_heads),
                                torch.arange(shape.intermediate)) for _ in range(shape.layers)])
