"""Write a shrunk model, and check that transformers alone reloads it to the same logits.

Uniform widths are a plain LLaMA checkpoint; per-layer widths add `modeling_evoprune.py` (see remote_modeling).
The parity check runs in a fresh interpreter that imports only torch and transformers, so it proves the
directory loads where evoprune is not installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from evoprune.structured import remote_modeling

# Run as `python -c _RELOAD <dir> <ids.pt> <logits.pt>`: reload with transformers alone, save its logits.
_RELOAD = """
import sys, json, torch
from transformers import AutoModelForCausalLM
path, ids_file, out_file = sys.argv[1:4]
remote = "auto_map" in json.load(open(path + "/config.json"))
model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, trust_remote_code=remote).eval()
with torch.no_grad():
    torch.save(model(torch.load(ids_file), use_cache=False).logits, out_file)
"""


def save_shrunk(model: torch.nn.Module, tokenizer, out: Path, report: dict) -> None:
    """A directory `AutoModelForCausalLM` loads (with trust_remote_code=True when widths differ per layer)."""
    model.save_pretrained(out)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    if getattr(model.config, "auto_map", None):
        shutil.copyfile(remote_modeling.__file__, out / "modeling_evoprune.py")
    write_report(out, report)


def write_report(out: Path, report: dict) -> None:
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")


@torch.no_grad()
def reload_max_abs_diff(model: torch.nn.Module, out: Path, ids: torch.Tensor) -> float:
    """max |logits(in-memory model) − logits(the saved directory reloaded by transformers in a new process)|."""
    expected = model(ids, use_cache=False).logits.float()
    with tempfile.TemporaryDirectory() as tmp:
        ids_file, logits_file = Path(tmp) / "ids.pt", Path(tmp) / "logits.pt"
        torch.save(ids, ids_file)
        done = subprocess.run([sys.executable, "-c", _RELOAD, str(out), str(ids_file), str(logits_file)],
                              cwd=tmp, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"transformers could not reload {out}: {done.stderr[-2000:]}")
        reloaded = torch.load(logits_file).float()
    return float((expected - reloaded).abs().max())
