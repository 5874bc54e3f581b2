"""What makes a pruned directory shippable, after `prune_job` saved it: the optional compressed-tensors layout,
an optional perplexity measurement recorded in report.json, and the model card (README.md)."""

from __future__ import annotations

import json
from pathlib import Path

from evoprune.data.protocol import PerplexitySpec
from evoprune.errors import EvopruneError
from evoprune.export.compressed import SAVE_FORMATS, save_compressed
from evoprune.export.model_card import write_model_card
from evoprune.model.loading import LoadedModel


def check_save_format(save_format: str) -> str:
    if save_format not in SAVE_FORMATS:
        raise EvopruneError(f"unknown --save-format {save_format!r} (use {', '.join(SAVE_FORMATS)})")
    return save_format


def finish_output(loaded: LoadedModel, out: Path, pattern: str, save_format: str = "safetensors",
                  evaluation: PerplexitySpec | None = None, progress=None) -> dict:
    """Post-process `out` in place; returns what was added (`{"compression": ..., "evaluation": ...}`)."""
    check_save_format(save_format)
    added: dict = {"save_format": save_format}
    report_path = out / "report.json"
    report = json.loads(report_path.read_text())
    if evaluation is not None:  # on the in-memory pruned model: the same weights the directory holds
        from evoprune.jobs.evaluate import evaluate_job

        added["evaluation"] = report["evaluation"] = evaluate_job(loaded, evaluation, progress)
    if save_format == "compressed-tensors":
        added["compression"] = report["compression"] = save_compressed(loaded.model, out, pattern)
    report["save_format"] = save_format
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    write_model_card(out, save_format)
    return added
