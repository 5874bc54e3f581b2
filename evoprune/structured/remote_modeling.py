"""A LLaMA model whose blocks have their own widths (query heads, KV heads, MLP channels), as evoprune's
structured pruning writes them. Copied beside the weights as `modeling_evoprune.py` and loaded with
`AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True)`. Imports torch and transformers only.

The config is a LlamaConfig at the original widths plus `evoprune_widths` = {"q_heads": [...], "kv_heads": [...],
"intermediate": [...]} (one entry per block): the model is built at full width, then each block's Linears are
replaced by their pruned sizes before the checkpoint is loaded into them.
"""

from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM


class EvopruneLlamaForCausalLM(LlamaForCausalLM):
    config_class = LlamaConfig

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__(config)
        widths = config.evoprune_widths
        hidden = config.hidden_size
        attn_bias, mlp_bias = config.attention_bias, config.mlp_bias
        for layer, q, kv, inter in zip(self.model.layers, widths["q_heads"], widths["kv_heads"],
                                       widths["intermediate"], strict=True):
            attn, mlp, d = layer.self_attn, layer.mlp, layer.self_attn.head_dim
            attn.q_proj = nn.Linear(hidden, q * d, bias=attn_bias)
            attn.k_proj = nn.Linear(hidden, kv * d, bias=attn_bias)
            attn.v_proj = nn.Linear(hidden, kv * d, bias=attn_bias)
            attn.o_proj = nn.Linear(q * d, hidden, bias=attn_bias)
            attn.num_key_value_groups = q // kv
            mlp.gate_proj = nn.Linear(hidden, inter, bias=mlp_bias)
            mlp.up_proj = nn.Linear(hidden, inter, bias=mlp_bias)
            mlp.down_proj = nn.Linear(inter, hidden, bias=mlp_bias)
