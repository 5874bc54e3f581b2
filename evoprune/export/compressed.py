"""Save a pruned model in the compressed-tensors sparse layout (what llm-compressor wrote for sparse models).

Each prunable `nn.Linear` weight is stored as its non-zero values plus a bit per weight:
- unstructured and general N:M: format `sparse-bitmask` — `<module>.shape`, `<module>.compressed` (1-D non-zeros,
  row major), `<module>.bitmask` (uint8 [rows, ceil(cols/8)], numpy.packbits little bit order),
  `<module>.row_offsets`;
- 2:4: format `sparse-24-bitmask` — `<module>.shape`, `<module>.compressed` ([rows, cols/2], the two kept values of
  every group of four, in order), `<module>.bitmask`.
(`<module>` is the layer's name without `.weight`, as the library names them.)
All other tensors stay dense under their own names, and config.json gains the `quantization_config` block with the
library's own sparsity config class (`BitmaskConfig` / `Sparse24BitMaskConfig`), targets listed by module name.

Why the tensors are packed here: compressed-tensors removed its sparse compressors in 0.15 (0.20's
`ModelCompressor.update_config` writes `"sparsity_config": {}`, "sparsity is removed for now"), and the last
release that has them (0.14.0.1) requires transformers < 5. The layout written here is byte-for-byte that of
0.14's `BitmaskCompressor` / `Sparse24BitMaskCompressor` (checked with 0.14.0.1: its compress gives the same
tensors and its decompress the same weights, for 2:4 and unstructured saves of the embedded model).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from evoprune.errors import EvopruneError
from evoprune.model.layers import decoder_blocks
from evoprune.model.sparse_layout import WEIGHTS, decompress, load_decompressed  # noqa: F401 (re-exported)
from evoprune.prune.masks import parse_pattern

SAVE_FORMATS = ("safetensors", "compressed-tensors")


def _pack(mask: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.packbits(mask.cpu().numpy(), axis=-1, bitorder="little"))


def bitmask_compress(weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """`sparse-bitmask` tensors of one weight (keys without the `<module>.` prefix)."""
    mask = weight != 0
    counts = mask.sum(dim=-1)
    return {"shape": torch.tensor(list(weight.shape)), "compressed": weight[mask].contiguous(),
            "bitmask": _pack(mask), "row_offsets": torch.cumsum(counts, 0) - counts}


def sparse24_compress(weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """`sparse-24-bitmask` tensors: every group of 4 consecutive inputs holds at most 2 non-zeros, so the two
    largest magnitudes of each group (the library's rule) cover them all."""
    rows, cols = weight.shape
    groups = weight.reshape(-1, 4)
    if cols % 4 or int((groups != 0).sum(dim=1).max()) > 2:
        raise EvopruneError("sparse-24-bitmask needs a 2:4 weight (at most 2 non-zeros in every 4 inputs)")
    mask = torch.zeros_like(groups, dtype=torch.bool)
    mask.scatter_(1, groups.abs().topk(2, dim=1).indices, True)
    mask = mask.reshape(rows, cols)
    return {"shape": torch.tensor([rows, cols]).reshape(-1, 1),  # a column, as the library writes it
            "compressed": weight[mask].reshape(rows, cols // 2).contiguous(), "bitmask": _pack(mask)}


def _target_modules(model: nn.Module) -> dict[str, nn.Linear]:
    """Qualified names of the prunable nn.Linear layers (GPT-2's Conv1D is not a Linear: left dense)."""
    blocks = {id(m) for m in decoder_blocks(model).modules()}
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear) and id(m) in blocks}


def _unique_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict without tied duplicates (lm_head sharing the embedding), as save_pretrained writes it."""
    seen, out = set(), {}
    for key, tensor in model.state_dict().items():
        ptr = (tensor.data_ptr(), tensor.shape)
        if ptr in seen:
            continue
        seen.add(ptr)
        out[key] = tensor.detach().cpu().contiguous()
    return out


def compressed_format(pattern: str) -> str:
    parsed = parse_pattern(pattern)
    return "sparse-24-bitmask" if parsed.structured and (parsed.n, parsed.m) == (2, 4) else "sparse-bitmask"


def save_compressed(model: nn.Module, out: Path, pattern: str) -> dict:
    """Replace `out/model.safetensors` (written by save_pretrained) by the compressed layout and add the
    compression block to `out/config.json`. Returns that block."""
    from compressed_tensors import __version__ as ct_version
    from compressed_tensors.config import BitmaskConfig, Sparse24BitMaskConfig

    fmt = compressed_format(pattern)
    compress = sparse24_compress if fmt == "sparse-24-bitmask" else bitmask_compress
    state = _unique_state(model)
    targets = _target_modules(model)
    tensors, zeros, total = {}, 0, 0
    for key, tensor in state.items():
        module = key.rsplit(".", 1)[0]
        if key.endswith(".weight") and module in targets:
            zeros += int((tensor == 0).sum())
            total += tensor.numel()
            tensors.update({f"{module}.{k}": v for k, v in compress(tensor).items()})
        else:
            tensors[key] = tensor
    config_cls = Sparse24BitMaskConfig if fmt == "sparse-24-bitmask" else BitmaskConfig
    sparsity = config_cls(global_sparsity=zeros / max(total, 1), targets=sorted(targets),
                          sparsity_structure="2:4" if fmt == "sparse-24-bitmask" else
                          ("unstructured" if not parse_pattern(pattern).structured else pattern))
    block = {"version": ct_version, "quant_method": "compressed-tensors", "sparsity_config": sparsity.model_dump(),
             "transform_config": {}}
    for stale in out.glob("model*.safetensors*"):  # save_pretrained may have sharded: one file replaces all
        stale.unlink()
    save_file(tensors, out / WEIGHTS, metadata={"format": "pt"})
    config_path = out / "config.json"
    config = json.loads(config_path.read_text())
    config["quantization_config"] = block
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return block
