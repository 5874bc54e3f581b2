"""The search space of a tune trial: `choose` window slots over the pool and one weight per metric.

Slots are categorical (a window index has no order worth modelling); two slots on the same window weigh it twice.
With one metric there is nothing to weigh, so no weight is suggested.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from evoprune.jobs.tune_config import TuneConfig
from evoprune.structured.tpe import run_trials


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


def anchors(cfg: TuneConfig) -> list[dict]:
    """First trials that weigh one metric each (1, the others 0): the search starts from every single metric, so
    its best is never worse on the objective than the best of them (their windows are still drawn)."""
    if not cfg.anchor_trials or len(cfg.metrics) < 2:
        return []
    return [{f"weight_{m}": float(m == metric) for m in cfg.metrics} for metric in cfg.metrics]


def decode(params: dict, cfg: TuneConfig) -> TrialChoice:
    windows = tuple(sorted(int(params[f"window_{slot}"]) for slot in range(cfg.choose)))
    weights = {m: float(params.get(f"weight_{m}", 1.0)) for m in cfg.metrics}
    return TrialChoice(windows, weights)


def run_tune(study, cfg: TuneConfig, objective: Callable[[dict], float], on_trial: Callable | None = None,
             n_trials: int | None = None) -> None:
    """`run_trials` over this space: anchors first, TPE seeded by `cfg.seed`, up to `cfg.n_trials` (or n_trials)."""
    run_trials(study, n_trials or cfg.n_trials, cfg.seed, cfg.n_startup_trials, lambda trial: suggest(trial, cfg),
               objective, on_trial, anchors(cfg))
