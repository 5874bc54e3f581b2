"""Physically shrink a LLaMA-family model to a Selection: smaller Linears, fewer blocks, a config that says so.

Residual channel subsets (structured/residual.py) also cut the q/k/v and gate/up input columns and the o_proj /
down_proj output rows to each sublayer's channels, and turn the sublayer into remote_modeling's subset version
(index-select before, index-add after), the same code the saved model runs when transformers reloads it.

Optional FLAP bias compensation: the dropped input channels of o_proj / down_proj are replaced by their mean
contribution, b = W[:, dropped] · mean(x[:, dropped]). LLaMA has no biases, so compensation turns on the config's
`attention_bias` / `mlp_bias` (plain transformers builds them; the biases other than o_proj/down_proj are zero).
"""

from __future__ import annotations

import torch
from torch import nn

from evoprune.model.layers import decoder_blocks
from evoprune.structured.remote_modeling import subset_sublayer
from evoprune.structured.selection import LayerKeep, Selection
from evoprune.structured.shape import DecoderShape

REMOTE_CLASS = "modeling_evoprune.EvopruneLlamaForCausalLM"  # the file save.py writes beside per-layer weights


def _sliced(lin: nn.Linear, rows: torch.Tensor | None, cols: torch.Tensor | None, bias: bool,
            bias_value: torch.Tensor | None = None) -> nn.Linear:
    w = lin.weight.data
    if rows is not None:
        w = w.index_select(0, rows.to(w.device))
    if cols is not None:
        w = w.index_select(1, cols.to(w.device))
    out = nn.Linear(w.shape[1], w.shape[0], bias=bias, device=w.device, dtype=w.dtype)
    out.weight.data.copy_(w)
    if bias_value is not None and rows is not None:  # computed for every output row
        bias_value = bias_value[rows.to(bias_value.device)]
    if bias:
        out.bias.data.copy_(bias_value if bias_value is not None else torch.zeros(w.shape[0]))
    return out


def _channels(heads: torch.Tensor, head_dim: int) -> torch.Tensor:
    return (heads.unsqueeze(1) * head_dim + torch.arange(head_dim)).flatten()


def _compensation(lin: nn.Linear, kept: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    dropped = torch.ones(lin.weight.shape[1], dtype=torch.bool)
    dropped[kept] = False
    return lin.weight.data.float()[:, dropped] @ mean.float()[dropped].to(lin.weight.device)


@torch.no_grad()
def shrink_block(block: nn.Module, shape: DecoderShape, keep: LayerKeep,
                 means: dict[str, torch.Tensor] | None) -> None:
    """Replace one block's Linears in place; `means` (o_proj, down_proj input means) turns on compensation."""
    attn, mlp, d = block.self_attn, block.mlp, shape.head_dim
    q_rows, kv_rows = _channels(keep.q_heads, d), _channels(keep.kv_heads, d)
    bias = means is not None
    o_bias = _compensation(attn.o_proj, q_rows, means["o_proj"]) if bias else None
    down_bias = _compensation(mlp.down_proj, keep.mlp, means["down_proj"]) if bias else None
    a_in, m_in = keep.resid_attn, keep.resid_mlp  # None: every residual channel
    attn.q_proj = _sliced(attn.q_proj, q_rows, a_in, bias)
    attn.k_proj = _sliced(attn.k_proj, kv_rows, a_in, bias)
    attn.v_proj = _sliced(attn.v_proj, kv_rows, a_in, bias)
    attn.o_proj = _sliced(attn.o_proj, a_in, q_rows, bias, o_bias)
    attn.num_key_value_groups = len(keep.q_heads) // len(keep.kv_heads)
    mlp.gate_proj = _sliced(mlp.gate_proj, keep.mlp, m_in, bias)
    mlp.up_proj = _sliced(mlp.up_proj, keep.mlp, m_in, bias)
    mlp.down_proj = _sliced(mlp.down_proj, m_in, keep.mlp, bias, down_bias)
    if a_in is not None:
        subset_sublayer(attn, a_in.to(attn.o_proj.weight.device), shape.hidden)
    if m_in is not None:
        subset_sublayer(mlp, m_in.to(mlp.down_proj.weight.device), shape.hidden)


@torch.no_grad()
def shrink_model(model: nn.Module, shape: DecoderShape, selection: Selection,
                 means: dict[int, dict[str, torch.Tensor]] | None = None) -> None:
    """Apply `selection` to `model` in place and rewrite its config (uniform: plain LLaMA fields; per-layer:
    `evoprune_widths`; residual subsets: `evoprune_residual`; either adds an `auto_map` to the remote-code
    class)."""
    blocks = decoder_blocks(model)
    for i in selection.kept_blocks():
        shrink_block(blocks[i], shape, selection.layers[i], means[i] if means is not None else None)
    kept = nn.ModuleList([blocks[i] for i in selection.kept_blocks()])
    for new_index, block in enumerate(kept):
        block.self_attn.layer_idx = new_index  # the KV cache is indexed by position in the new list
    model.model.layers = kept
    _rewrite_config(model.config, selection, compensated=means is not None)


def _rewrite_config(config, selection: Selection, compensated: bool) -> None:
    widths = selection.widths()
    config.num_hidden_layers = len(widths["q_heads"])
    if compensated:
        config.attention_bias = True
        config.mlp_bias = True
    for stale in ("evoprune_widths", "evoprune_residual", "auto_map"):  # a config shrunk before
        if hasattr(config, stale):
            delattr(config, stale)
    per_block = ("q_heads", "kv_heads", "intermediate")
    if len(set(zip(*(widths[k] for k in per_block), strict=True))) == 1:  # equal widths: plain LLaMA fields
        config.num_attention_heads = widths["q_heads"][0]
        config.num_key_value_heads = widths["kv_heads"][0]
        config.intermediate_size = widths["intermediate"][0]
    else:
        config.evoprune_widths = {k: widths[k] for k in per_block}
    if selection.residual():
        config.evoprune_residual = {"attn": widths["resid_attn"], "mlp": widths["resid_mlp"]}
    if not selection.uniform():
        config.auto_map = {"AutoModelForCausalLM": REMOTE_CLASS}
