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


def residual_channel_sums(s: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One block's per-weight scores ([out, in] per Linear, LLaMA names) → [hidden] per sublayer."""
    attn = (s["self_attn.q_proj"].sum(0) + s["self_attn.k_proj"].sum(0) + s["self_attn.v_proj"].sum(0)
            + s["self_attn.o_proj"].sum(1))
    mlp = s["mlp.gate_proj"].sum(0) + s["mlp.up_proj"].sum(0) + s["mlp.down_proj"].sum(1)
    return {"resid_attn": attn, "resid_mlp": mlp}
