"""The search space of a tune trial: `choose` window slots over the pool and one weight per metric.

Slots are categorical (a window index has no order worth modelling); two slots on the same window weigh it twice.
With one metric there is nothing to weigh, so no weight is suggested.
"""

from __future__ import annotations

from dataclasses import dataclass

from evoprune.structured.tune_config import TuneConfig


@dataclass(frozen=True)
class TrialChoice:
    windows: tuple[int, ...]  # pool indices, sorted (the slots' order does not matter)
    weights: dict[str, float]  # metric -> weight in [0, 1]


def suggest(trial, cfg: TuneConfig) -> dict:
    """Draw one trial's parameters through Optuna's `trial.suggest_*` (the sampler decides)."""
    for slot in range(cfg.choose):
        trial.suggest_categorical(f"window_{slot}", list(range(cfg.pool)))
    if len(cfg.metrics) > 1:
        for metric in cfg.metrics:
            trial.suggest_float(f"weight_{metric}", 0.0, 1.0)
    return dict(trial.params)


def decode(params: dict, cfg: TuneConfig) -> TrialChoice:
    windows = tuple(sorted(int(params[f"window_{slot}"]) for slot in range(cfg.choose)))
    weights = {m: float(params.get(f"weight_{m}", 1.0)) for m in cfg.metrics}
    return TrialChoice(windows, weights)
