"""A LLaMA model whose blocks have their own widths (query heads, KV heads, MLP channels) and, optionally, their
own DISP-style residual channel subsets, as evoprune's structured pruning writes them. Copied beside the weights
as `modeling_evoprune.py` and loaded with `AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True)`.
Imports torch and transformers only.

The config is a LlamaConfig at the original widths plus, per block, `evoprune_widths` = {"q_heads": [...],
"kv_heads": [...], "intermediate": [...]} (absent: the config's own widths in every block) and/or
`evoprune_residual` = {"attn": [...], "mlp": [...]} (how many residual channels each sublayer reads and writes).
The model is built at full width, then each block's Linears are replaced by their pruned sizes before the
checkpoint is loaded into them; the residual channel indices are buffers of the checkpoint (`resid_index`).

A residual subset sublayer (DISP-LLM, Gao et al. 2024): the decoder layer normalises the full hidden state as
the dense model does (RMSNorm over every channel), the sublayer reads its channels S of that (so q/k/v or gate/up
have |S| input features) and its output (o_proj / down_proj with |S| rows) is added back to the residual at S
only. The decoder layer adds the sublayer's output to the residual itself, so the sublayer hands back a
full-width tensor that is zero outside S: residual + 0 leaves those channels exactly as they were.
"""

import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.models.llama.modeling_llama import LlamaAttention, LlamaMLP


class _ResidualSubset:
    """Mixin before a LLaMA sublayer class: read the input at `resid_index` only, write the output back there."""

    resid_index: torch.Tensor  # sorted residual channels this sublayer reads and writes
    resid_hidden: int  # the residual stream's full width

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        out = super().forward(hidden_states.index_select(-1, self.resid_index), *args, **kwargs)
        main = out[0] if isinstance(out, tuple) else out  # attention also hands back its weights
        full = main.new_zeros(*main.shape[:-1], self.resid_hidden).index_add_(-1, self.resid_index, main)
        return (full, *out[1:]) if isinstance(out, tuple) else full


class SubsetLlamaAttention(_ResidualSubset, LlamaAttention):
    pass


class SubsetLlamaMLP(_ResidualSubset, LlamaMLP):
    pass


_SUBSET = {LlamaAttention: SubsetLlamaAttention, LlamaMLP: SubsetLlamaMLP}


def subset_sublayer(module: nn.Module, index: torch.Tensor, hidden: int) -> None:
    """Make a LlamaAttention / LlamaMLP whose Linears are already sized to `index` read and write only those
    residual channels (in place: its parameters and their names stay)."""
    if type(module) not in _SUBSET:
        raise TypeError(f"{type(module).__name__} is not a plain LlamaAttention or LlamaMLP")
    module.__class__ = _SUBSET[type(module)]
    module.register_buffer("resid_index", index.to(torch.long))
    module.resid_hidden = hidden


class EvopruneLlamaForCausalLM(LlamaForCausalLM):
    config_class = LlamaConfig

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__(config)
        layers, hidden = config.num_hidden_layers, config.hidden_size
        widths = getattr(config, "evoprune_widths", None) or {
            "q_heads": [config.num_attention_heads] * layers,
            "kv_heads": [config.num_key_value_heads] * layers, "intermediate": [config.intermediate_size] * layers}
        residual = getattr(config, "evoprune_residual", None)
        reads = residual or {"attn": [hidden] * layers, "mlp": [hidden] * layers}
        attn_bias, mlp_bias = config.attention_bias, config.mlp_bias
        for layer, q, kv, inter, a_in, m_in in zip(self.model.layers, widths["q_heads"], widths["kv_heads"],
                                                   widths["intermediate"], reads["attn"], reads["mlp"], strict=True):
            attn, mlp, d = layer.self_attn, layer.mlp, layer.self_attn.head_dim
            attn.q_proj = nn.Linear(a_in, q * d, bias=attn_bias)
            attn.k_proj = nn.Linear(a_in, kv * d, bias=attn_bias)
            attn.v_proj = nn.Linear(a_in, kv * d, bias=attn_bias)
            attn.o_proj = nn.Linear(q * d, a_in, bias=attn_bias)
            attn.num_key_value_groups = q // kv
            mlp.gate_proj = nn.Linear(m_in, inter, bias=mlp_bias)
            mlp.up_proj = nn.Linear(m_in, inter, bias=mlp_bias)
            mlp.down_proj = nn.Linear(inter, m_in, bias=mlp_bias)
            if residual is not None:  # placeholder indices: the checkpoint's buffers replace them
                subset_sublayer(attn, torch.arange(a_in), hidden)
                subset_sublayer(mlp, torch.arange(m_in), hidden)
