"""A model's limits read from its config.json before any weight is loaded: its context length (a calibration or
evaluation window longer than the model's positions builds attention matrices of tens of GB instead of failing
fast) and the input widths of its Linear layers (an N:M pattern must divide them)."""

from __future__ import annotations

import json
from pathlib import Path

from evoprune.errors import EvopruneError
from evoprune.model.loading import model_path

# The config keys architectures use for their number of positions (LLaMA/Mistral/Qwen2/OPT/NeoX/Phi, GPT-2).
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def _config_file(name: str) -> Path | None:
    """config.json of the embedded model or a local directory; a hub id only if it is already in the local
    Hugging Face cache (no network here: an uncached hub model is checked when it loads)."""
    resolved = model_path(name)
    local = Path(resolved) / "config.json"
    if local.is_file():
        return local
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(resolved, "config.json")
    except Exception:  # an odd id or an old huggingface_hub: the context is simply unknown
        return None
    return Path(cached) if isinstance(cached, str) else None


# Input widths of the prunable Linear layers: the hidden size (attention and MLP inputs) and the MLP's inner size.
_WIDTH_KEYS = ("hidden_size", "n_embd", "d_model", "intermediate_size", "n_inner", "ffn_dim")


def _sections(name: str) -> list[dict]:
    """The config's top level and, for multimodal configs, its text_config; [] when there is no local config."""
    path = _config_file(name)
    if path is None:
        return []
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvopruneError(f"model config {path} is unreadable: {type(exc).__name__}") from None
    if not isinstance(config, dict):
        raise EvopruneError(f"model config {path} is not a JSON object")
    text_config = config.get("text_config")
    return [config, text_config] if isinstance(text_config, dict) else [config]


def _positive(section: dict, key: str) -> int | None:
    value = section.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def context_length(name: str) -> int | None:
    """The model's maximum number of positions, or None when its config does not say (or is not local)."""
    for section in _sections(name):
        for key in _CONTEXT_KEYS:
            if _positive(section, key):
                return _positive(section, key)
    return None


def layer_widths(name: str) -> dict[str, int]:
    """{config key: width} of the Linear layers' inputs the config names (empty when unknown)."""
    return {key: _positive(s, key) for s in _sections(name)[:1] for key in _WIDTH_KEYS if _positive(s, key)}


def check_pattern_widths(name: str, m_values: list[int]) -> None:
    """An N:M pattern groups M consecutive inputs: M must divide every layer's input width."""
    widths = layer_widths(name)
    for m in m_values:
        for key, width in widths.items():
            if width % m:
                raise EvopruneError(f"pattern with M={m} does not fit model {name!r}: its {key} {width} is not "
                                    f"divisible by {m}")


def check_context(name: str, lengths: dict[str, int | None]) -> None:
    """Refuse any window length beyond the model's context; `lengths` maps the setting's name as the user wrote
    it (`--seqlen`, `evaluation.seqlen`) to its value."""
    limit = context_length(name)
    if limit is None:
        return
    for setting, value in lengths.items():
        if value is not None and value > limit:
            raise EvopruneError(f"{setting} {value} exceeds the context of model {name!r} ({limit} positions, "
                                "max_position_embeddings in its config.json)")
