"""DISP-style residual channel subsets: the unit, and its score from per-weight scores.

DISP-LLM (Gao et al., NeurIPS 2024, "DISP-LLM: Dimension-Independent Structural Pruning for Large Language
Models") lets each sublayer read and write its own subset S of the residual (hidden) channels: the normalised
hidden state is index-selected to S before the sublayer (q/k/v or gate/up take |S| input features) and the
sublayer's output (o_proj / down_proj with |S| output rows) is index-added back into the full residual at S. The
hidden size of the residual stream itself never changes, so widths are no longer tied across the network.

The paper learns S with a hypernetwork; here S is chosen without training, from channel scores: residual
channel j of a sublayer scores the per-weight metric summed over every weight that touches it there, i.e.
column j of q_proj, k_proj, v_proj plus row j of o_proj (attention), column j of gate_proj and up_proj plus row j
of down_proj (MLP). Higher = kept, like every other unit.
"""

from __future__ import annotations

import torch


def residual_channel_sums(s: dict[str, torch.Tensor], reduce=torch.sum, join=torch.add) -> dict[str, torch.Tensor]:
    """One block's per-weight scores ([out, in] per Linear, LLaMA names) → [hidden] per sublayer: summed, or
    reduced over each tensor's part by `reduce(t, dim)` and the parts joined by `join` (max: amax, maximum)."""
    def over(*parts):
        out = None
        for name, dim in parts:
            value = reduce(s[name], dim)
            out = value if out is None else join(out, value)
        return out

    return {"resid_attn": over(("self_attn.q_proj", 0), ("self_attn.k_proj", 0), ("self_attn.v_proj", 0),
                               ("self_attn.o_proj", 1)),
            "resid_mlp": over(("mlp.gate_proj", 0), ("mlp.up_proj", 0), ("mlp.down_proj", 1))}
