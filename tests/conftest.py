"""Shared fixtures: the embedded model truncated to a few layers (real weights, real text, cheap to run)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
os.environ.setdefault("EVOPRUNE_DATA_DIR", str(DATA_DIR))
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def truncated_model_dir(tmp_path_factory) -> Path:
    """SmolLM2-135M (embedded GGUF) cut to its first 4 decoder blocks, saved as a plain HF directory."""
    from evoprune.model.loading import load_model

    loaded = load_model("smollm2-135m", "cpu", "float32")
    model = loaded.model
    model.model.layers = model.model.layers[:4]
    model.config.num_hidden_layers = 4
    out = tmp_path_factory.mktemp("smollm2-4layers")
    model.save_pretrained(out)
    loaded.tokenizer.save_pretrained(out)
    return out
