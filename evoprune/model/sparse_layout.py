"""Reading the compressed-tensors sparse layout that `prune --save-format compressed-tensors` writes
(`evoprune.export.compressed`): non-zeros plus a bitmask per Linear weight, `<module>.shape/compressed/bitmask`.

transformers given such a directory would route it to compressed-tensors, whose current releases no longer
decompress sparsity, and fill the missing weights with random values; so evoprune loads it itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

SPARSE_FORMATS = ("sparse-bitmask", "sparse-24-bitmask")
PARTS = ("shape", "compressed", "bitmask", "row_offsets")
WEIGHTS = "model.safetensors"


def sparse_format(directory: Path) -> str | None:
    """The directory's sparse compressed-tensors format, or None for a plain checkpoint."""
    config = directory / "config.json"
    if not config.is_file():
        return None
    block = json.loads(config.read_text()).get("quantization_config") or {}
    fmt = (block.get("sparsity_config") or {}).get("format")
    return fmt if block.get("quant_method") == "compressed-tensors" and fmt in SPARSE_FORMATS else None


def unpack_bitmask(bits: torch.Tensor, shape: list[int]) -> torch.Tensor:
    unpacked = np.unpackbits(bits.cpu().numpy(), axis=-1, count=shape[-1], bitorder="little")
    return torch.from_numpy(unpacked.reshape(shape).astype(bool))


def decompress(parts: dict[str, torch.Tensor]) -> torch.Tensor:
    """Dense weight from either layout (both store shape, non-zeros in row-major order and the bitmask)."""
    shape = [int(x) for x in parts["shape"].flatten().tolist()]  # 2:4 stores it as a column
    out = torch.zeros(shape, dtype=parts["compressed"].dtype)
    out[unpack_bitmask(parts["bitmask"], shape)] = parts["compressed"].flatten()
    return out


def load_decompressed(directory: Path) -> dict[str, torch.Tensor]:
    """The dense state dict of a sparse compressed-tensors directory."""
    from safetensors.torch import load_file

    from evoprune.errors import EvopruneError

    fmt = sparse_format(directory)
    if fmt is None:
        raise EvopruneError(f"{directory} is not a compressed-tensors sparse save")
    grouped: dict[str, dict[str, torch.Tensor]] = {}
    dense = {}
    for key, tensor in load_file(directory / WEIGHTS).items():
        module, _, part = key.rpartition(".")
        if part in PARTS:
            grouped.setdefault(module, {})[part] = tensor
        else:
            dense[key] = tensor
    dense.update({f"{module}.weight": decompress(parts) for module, parts in grouped.items()})
    return dense


def load_sparse_model(directory: Path, dtype: torch.dtype) -> torch.nn.Module:
    """The model of a sparse compressed-tensors directory, dense, with exactly the saved weights."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from evoprune.errors import EvopruneError

    config = AutoConfig.from_pretrained(directory)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are decompressed here: nothing is left to quantize
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in load_decompressed(directory).items()}
    result = model.load_state_dict(state, strict=False)
    model.tie_weights()
    current = model.state_dict()
    loaded_storage = {current[k].data_ptr() for k in state}
    # a tied weight (lm_head sharing the embedding) is saved once, under the other name
    missing = {k for k in result.missing_keys if current[k].data_ptr() not in loaded_storage}
    if missing or result.unexpected_keys:
        raise EvopruneError(f"{directory}: the compressed weights do not fit the model (missing {sorted(missing)[:3]}, "
                            f"unexpected {sorted(result.unexpected_keys)[:3]})")
    return model
