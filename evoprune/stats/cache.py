"""On-disk cache of dense statistics, keyed by everything they depend on."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from evoprune.data.tokens import CalibSpec
from evoprune.model.layers import prunable_layers
from evoprune.model.loading import cache_dir
from evoprune.stats.collect import LayerStats, collect_dense_stats
from evoprune.stats.progress import announce, default_progress

_VERSION = 1  # bump when the definition of a leaf changes


def model_fingerprint(model: torch.nn.Module) -> str:
    """Hash of the first and last prunable weights plus shapes: tells apart models sharing a name."""
    layers = list(prunable_layers(model).values())
    digest = hashlib.sha256()
    for ref in (layers[0], layers[-1]):
        w = ref.weight().detach().float().cpu().contiguous()
        digest.update(str(tuple(w.shape)).encode())
        digest.update(w.numpy().tobytes())
    digest.update(str(len(layers)).encode())
    return digest.hexdigest()[:16]


def stats_key(model: torch.nn.Module, calib: CalibSpec, with_hessian: bool, with_grad: bool) -> str:
    fields = {"v": _VERSION, "model": model_fingerprint(model), "calib": asdict(calib),
              "dtype": str(next(model.parameters()).dtype), "hessian": with_hessian, "grad": with_grad}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:20]


def cached_dense_stats(
    model: torch.nn.Module,
    windows: torch.Tensor,
    calib: CalibSpec,
    with_hessian: bool = False,
    with_grad: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, LayerStats]:
    """`collect_dense_stats`, read from / written to `<cache>/stats/<key>.pt` (atomic write)."""
    path = cache_dir() / "stats" / f"{stats_key(model, calib, with_hessian, with_grad)}.pt"
    # an entry with more statistics than asked for serves too (the extra fields are dropped): a gradient pass
    # costs minutes on a CPU, so a run asking for less than the cache holds must not repeat it
    for hessian, grad in ((with_hessian, with_grad), (True, with_grad), (with_hessian, True), (True, True)):
        held = cache_dir() / "stats" / f"{stats_key(model, calib, hessian, grad)}.pt"
        if held.is_file():
            raw = torch.load(held, weights_only=True)
            announce(f"statistics loaded from the cache ({held.name})")
            return {key: LayerStats(**{**fields, "H": fields["H"] if with_hessian else None,
                                       "G": fields["G"] if with_grad else None})
                    for key, fields in raw.items()}
    stats = collect_dense_stats(model, windows, with_hessian, with_grad, progress or default_progress())
    _save_atomic({key: {k: v.cpu() if v is not None else None for k, v in vars(st).items()}
                  for key, st in stats.items()}, path)
    return stats


def _save_atomic(obj: object, path: Path) -> None:
    """torch.save through a temporary sibling and a rename: a killed process never leaves a torn cache entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def cached_output_sensitivities(model: torch.nn.Module, windows: torch.Tensor, calib: CalibSpec,
                                progress: Callable[[str, int, int], None] | None = None) -> dict[str, torch.Tensor]:
    """`stats.sensitivity.output_sensitivities` over the calibration windows, cached beside the dense statistics."""
    from evoprune.stats.sensitivity import output_sensitivities

    path = cache_dir() / "stats" / f"sens-{stats_key(model, calib, False, False)}.pt"
    if path.is_file():
        announce(f"output sensitivities loaded from the cache ({path.name})")
        return torch.load(path, weights_only=True)
    report = progress or default_progress()
    step = (lambda k: report("output sensitivities", k, len(windows))) if report is not None else None
    sens = output_sensitivities(model, windows, step)
    _save_atomic({key: v.cpu() for key, v in sens.items()}, path)
    return sens
