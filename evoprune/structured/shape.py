"""The structured view of a LLaMA-family decoder: units, their parameter costs, and which structures exist.

Read from a config alone (no weights), so every width/budget decision can be checked before the model loads.
HF's GQA layout: KV head g serves the `n_rep` consecutive query heads g·n_rep … g·n_rep + n_rep − 1.
"""

from __future__ import annotations

from dataclasses import dataclass

from evoprune.errors import EvopruneError

# mlp: one intermediate channel (gate/up row + down column); heads: one query head in EVERY KV group at once
# (so each group keeps the same count); groups: one KV head with all its query heads; blocks: a decoder block;
# residual: DISP-style residual channel subsets (see structured/residual.py), two kinds of unit, one per sublayer.
STRUCTURES = ("mlp", "heads", "groups", "blocks", "residual")
# resid_attn: residual channel j of one block's attention sublayer (q/k/v input column j, o_proj output row j);
# resid_mlp: the same channel of its MLP sublayer (gate/up input column j, down_proj output row j)
RESIDUAL_KINDS = ("resid_attn", "resid_mlp")
# Qwen2 is left out on purpose: its q/k/v biases are hard-coded in its modeling code, not in the config.
_LLAMA_FAMILY = ("llama", "mistral")


@dataclass(frozen=True)
class DecoderShape:
    layers: int
    hidden: int
    q_heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    norm_params: int  # per block: the two RMSNorm weights

    @property
    def n_rep(self) -> int:
        return self.q_heads // self.kv_heads

    @property
    def mlp_channel_cost(self) -> int:
        return 3 * self.hidden

    @property
    def q_head_cost(self) -> int:
        return 2 * self.head_dim * self.hidden  # q_proj rows + o_proj columns

    @property
    def kv_head_cost(self) -> int:
        return 2 * self.head_dim * self.hidden  # k_proj rows + v_proj rows

    @property
    def group_cost(self) -> int:
        return self.n_rep * self.q_head_cost + self.kv_head_cost

    @property
    def resid_attn_cost(self) -> int:
        return 2 * self.head_dim * (self.q_heads + self.kv_heads)  # q/k/v columns (q+2kv)·d, o_proj row q·d

    @property
    def resid_mlp_cost(self) -> int:
        return 3 * self.intermediate  # gate/up columns and the down_proj row

    @property
    def block_params(self) -> int:
        return (self.kv_heads * self.group_cost + self.intermediate * self.mlp_channel_cost + self.norm_params)

    @property
    def decoder_params(self) -> int:
        return self.layers * self.block_params

    def units(self, structure: str) -> int:
        """Units of one kind per layer (per model for blocks)."""
        return {"mlp": self.intermediate, "heads": self.n_rep, "groups": self.kv_heads,
                "blocks": self.layers, "resid_attn": self.hidden, "resid_mlp": self.hidden}[structure]

    def unit_cost(self, structure: str) -> int:
        """Parameters one unit removes (a `heads` unit is one query head in each of the KV groups)."""
        return {"mlp": self.mlp_channel_cost, "heads": self.kv_heads * self.q_head_cost,
                "groups": self.group_cost, "blocks": self.block_params, "resid_attn": self.resid_attn_cost,
                "resid_mlp": self.resid_mlp_cost}[structure]


def decoder_shape(config) -> DecoderShape:
    """The shape of a LLaMA-family config; any other architecture is refused with one line."""
    model_type = getattr(config, "model_type", None)
    if model_type not in _LLAMA_FAMILY:
        raise EvopruneError(f"structured pruning supports LLaMA-family models ({', '.join(_LLAMA_FAMILY)}); "
                            f"this model is {model_type!r}")
    q = config.num_attention_heads
    kv = getattr(config, "num_key_value_heads", None) or q
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // q
    if q % kv:
        raise EvopruneError(f"{q} query heads do not divide into {kv} KV groups")
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise EvopruneError("structured pruning of models that already have biases is not supported")
    return DecoderShape(config.num_hidden_layers, config.hidden_size, q, kv, head_dim, config.intermediate_size,
                        2 * config.hidden_size)


def parse_structures(text: str) -> tuple[str, ...]:
    """`mlp,heads` → ("mlp", "heads"); unknown names, duplicates and invalid combinations are errors."""
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    if not names:
        raise EvopruneError("--structure is empty (use mlp, heads, groups, blocks, residual, comma-separated)")
    unknown = [n for n in names if n not in STRUCTURES]
    if unknown:
        raise EvopruneError(f"unknown structure {unknown[0]!r} (use {', '.join(STRUCTURES)})")
    if len(set(names)) != len(names):
        raise EvopruneError(f"--structure names a unit twice: {text!r}")
    if "heads" in names and "groups" in names:
        raise EvopruneError("--structure heads and groups both prune attention heads: choose one")
    if "blocks" in names and len(names) > 1:
        raise EvopruneError("--structure blocks removes whole blocks and cannot be combined with other units")
    if "residual" in names and len(names) > 1:
        raise EvopruneError("--structure residual (DISP-style residual channel subsets) cannot be combined with "
                            "other units yet: use it alone")
    return names


def unit_kinds(structures: tuple[str, ...]) -> tuple[str, ...]:
    """The unit kinds behind structure names: `residual` is two kinds (its attention and MLP sublayers)."""
    return tuple(kind for s in structures for kind in (RESIDUAL_KINDS if s == "residual" else (s,)))
