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
    # DISP-style residual channel subsets (structured/residual.py): the hidden channels the attention / MLP
    # sublayer reads and writes; None = every channel, the plain residual stream
    resid_attn: torch.Tensor | None = None
    resid_mlp: torch.Tensor | None = None

    def params(self, shape: DecoderShape) -> int:
        """Each projection is (its head channels or MLP channels) × (the residual channels its sublayer touches):
        q/o 2·d per query head, k/v 2·d per KV head, gate/up/down 3 per MLP channel; the norms stay full."""
        attn_in = shape.hidden if self.resid_attn is None else len(self.resid_attn)
        mlp_in = shape.hidden if self.resid_mlp is None else len(self.resid_mlp)
        attn = 2 * shape.head_dim * (len(self.q_heads) + len(self.kv_heads)) * attn_in
        return attn + 3 * len(self.mlp) * mlp_in + shape.norm_params


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
        return len(widths) == 1 and not self.residual()  # residual subsets always need the remote-code model

    def residual(self) -> bool:
        """Some sublayer reads and writes a subset of the residual channels (needs the remote-code model)."""
        return any(self.layers[i].resid_attn is not None or self.layers[i].resid_mlp is not None
                   for i in self.kept_blocks())

    def widths(self) -> dict[str, list[int]]:
        kept = [self.layers[i] for i in self.kept_blocks()]
        widths = {"q_heads": [len(k.q_heads) for k in kept], "kv_heads": [len(k.kv_heads) for k in kept],
                  "intermediate": [len(k.mlp) for k in kept]}
        if self.residual():  # residual channels each sublayer keeps (a residual selection sets both everywhere)
            widths["resid_attn"] = [len(k.resid_attn) for k in kept]
            widths["resid_mlp"] = [len(k.resid_mlp) for k in kept]
        return widths


def full_selection(shape: DecoderShape) -> Selection:
    return Selection([LayerKeep(torch.arange(shape.q_heads), torch.arange(shape.kv_heads),
                                torch.arange(shape.intermediate)) for _ in range(shape.layers)])
