"""Find the decoder blocks of a causal LM and the prunable `nn.Linear` layers inside them.

Embeddings and `lm_head` sit outside the blocks, so they are never pruned. GPT-2 uses `Conv1D` (weight stored
transposed, [in, out]); we treat it as a Linear and expose its weight as [out, in] views through `LinearRef`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

# Attribute paths to the block list, tried in order; covers LLaMA/Mistral/Qwen2/Phi3 (model.layers),
# GPT-2 (transformer.h), OPT (model.decoder.layers), GPT-NeoX (gpt_neox.layers), Phi (model.layers).
_BLOCK_PATHS = ("model.layers", "model.decoder.layers", "transformer.h", "gpt_neox.layers", "layers")


@dataclass(frozen=True)
class LinearRef:
    """One prunable layer: its qualified name inside its block and the module itself."""

    name: str
    module: nn.Module

    @property
    def transposed(self) -> bool:
        return type(self.module).__name__ == "Conv1D"  # GPT-2 stores weight as [in, out]

    def weight(self) -> torch.Tensor:
        """The weight as [out, in] (a view; writes go to the module)."""
        w = self.module.weight.data
        return w.t() if self.transposed else w

    def set_weight(self, w: torch.Tensor) -> None:
        self.module.weight.data.copy_(w.t() if self.transposed else w)


def decoder_blocks(model: nn.Module) -> nn.ModuleList:
    for path in _BLOCK_PATHS:
        obj = model
        for attr in path.split("."):
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList) and len(obj) > 0:
            return obj
    raise ValueError(f"cannot find decoder blocks in {type(model).__name__}")


def block_linears(block: nn.Module) -> list[LinearRef]:
    """Prunable layers of one block, in module order."""
    refs = []
    for name, module in block.named_modules():
        if isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D":
            refs.append(LinearRef(name, module))
    return refs


def prunable_layers(model: nn.Module) -> dict[str, LinearRef]:
    """Every prunable layer keyed `"{block_index}.{name}"`, e.g. `"3.self_attn.q_proj"`."""
    out = {}
    for i, block in enumerate(decoder_blocks(model)):
        for ref in block_linears(block):
            out[f"{i}.{ref.name}"] = ref
    return out
