"""`evoprune prune`: prune a model with one method and save it as a Hugging Face directory + report.json."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from evoprune.data.tokens import CalibSpec
from evoprune.errors import EvopruneError
from evoprune.data.protocol import calib_windows, protocol_record
from evoprune.model.loading import LoadedModel
from evoprune.paths import StagedDir
from evoprune.prune.apply import MODES, LayerReport, SparsitySpec, prune_sequential, prune_with_stats
from evoprune.prune.masks import GROUPS, parse_pattern
from evoprune.prune.method import Method, builtin_method
from evoprune.prune.metrics import BUILTIN_METRICS
from evoprune.stats.cache import cached_dense_stats

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class PruneSpec:
    metric: str = "wanda"
    sparsity: float | None = 0.5
    pattern: str = "unstructured"
    group: str = "row"
    mode: str = "sequential"

    def validate(self) -> None:
        if self.group not in GROUPS:
            raise EvopruneError(f"unknown group {self.group!r} (use {', '.join(GROUPS)})")
        if self.mode not in MODES:
            raise EvopruneError(f"unknown mode {self.mode!r} (use {', '.join(MODES)})")


def resolve_method(metric: str, seqlen: int) -> Method:
    """A built-in name; otherwise a formula string or an exported .json file (both parsed over a fixed
    vocabulary, never executed) or a .py file (imported: it is code), resolved by `evoprune.export.metric_file`.
    Cheap and model-free, so the CLI calls it before loading anything; bad input raises EvopruneError."""
    if metric in BUILTIN_METRICS:
        return builtin_method(metric, seqlen)
    from evoprune.export.metric_file import load_metric  # sympy and the printers: only when a formula is given

    return load_metric(metric)


def prune_loaded(loaded: LoadedModel, method: Method, spec: PruneSpec, calib: CalibSpec,
                 sparsity: SparsitySpec | None = None, progress: Progress | None = None) -> list[LayerReport]:
    """Prune `loaded.model` in place with `method`; returns the achieved sparsity of every layer."""
    spec.validate()
    pattern = parse_pattern(spec.pattern)
    target = spec.sparsity if sparsity is None else sparsity
    if not method.needs_stats:  # magnitude: calibration cannot change the result, skip it
        return prune_with_stats(loaded.model, {}, method, target, pattern, spec.group)
    windows = calib_windows(loaded, calib)
    if spec.mode == "sequential" or method.is_sparsegpt:
        grads = None
        if method.needs_grad:  # G always comes from the dense model: take it from the statistics cache
            dense = cached_dense_stats(loaded.model, windows, calib, with_grad=True, progress=progress)
            grads = {key: st.G for key, st in dense.items()}
        return prune_sequential(loaded.model, windows, method, target, pattern, spec.group, progress, grads)
    stats = cached_dense_stats(loaded.model, windows, calib, with_hessian=False,
                               with_grad=method.needs_grad, progress=progress)
    return prune_with_stats(loaded.model, stats, method, target, pattern, spec.group)


def layer_table(reports: list[LayerReport]) -> dict:
    pruned, total = sum(r.pruned for r in reports), sum(r.total for r in reports)
    return {"overall": pruned / total,
            "layers": [{**asdict(r), "sparsity": r.sparsity} for r in reports]}


def save_pruned(loaded: LoadedModel, out: Path, report: dict) -> None:
    """A directory plain transformers loads: config, safetensors weights, tokenizer, and report.json."""
    loaded.model.save_pretrained(out)
    loaded.tokenizer.save_pretrained(out)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")


def prune_job(loaded: LoadedModel, spec: PruneSpec, calib: CalibSpec, out: Path, force: bool = False,
              progress: Progress | None = None) -> dict:
    """Prune and save; returns the report written to `out/report.json`."""
    method = resolve_method(spec.metric, calib.seqlen)
    with StagedDir(out, force) as staged:  # swapped onto `out` only once saved: a failure keeps its old contents
        return _prune_into(loaded, method, spec, calib, staged.path, progress)


def _prune_into(loaded: LoadedModel, method: Method, spec: PruneSpec, calib: CalibSpec, out: Path,
                progress: Progress | None) -> dict:
    start = time.perf_counter()
    reports = prune_loaded(loaded, method, spec, calib, progress=progress)
    seconds = time.perf_counter() - start
    report = {"protocol": protocol_record(loaded, calib, None), "prune": asdict(spec),
              "sparsity": layer_table(reports), "seconds": {"prune": seconds}}
    save_pruned(loaded, out, report)
    return report


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the weights, to restore the dense model between prunes without reloading it."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
