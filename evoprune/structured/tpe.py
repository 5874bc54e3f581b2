"""Optuna TPE, asked and told one trial at a time so that a study stopped anywhere and continued gives the
study an uninterrupted run gives.

Optuna's seeded sampler draws from one RNG stream, so a fresh process would restart that stream; instead each
trial gets a new TPESampler seeded by (seed, number of completed trials). A trial's parameters then depend only
on the seed and the completed history, which the SQLite storage keeps. Trials left RUNNING by a killed process
are marked FAIL (TPE ignores failures) and their slot is asked again. Anchor trials (fixed parameters, e.g. one
metric alone) are enqueued just before their slot is asked, so a stale one is asked again in its place too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

STUDY_NAME = "tune"


def open_study(storage: str | None) -> optuna.Study:
    """The study in `storage` (an SQLite URL), created on first use; None: in memory."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the caller reports each trial itself
    return optuna.create_study(storage=storage, study_name=STUDY_NAME, direction="minimize", load_if_exists=True)


def complete_trials(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def trial_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def run_trials(study: optuna.Study, n_trials: int, seed: int, n_startup_trials: int,
               suggest: Callable[[Trial], dict], objective: Callable[[dict], float],
               on_trial: Callable[[FrozenTrial], None] | None = None, anchors: Sequence[dict] = ()) -> None:
    """Ask, evaluate and tell until the study holds `n_trials` completed trials; completed trial i < len(anchors)
    has the parameters of anchors[i] (the sampler draws any it leaves out)."""
    for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(stale.number, state=TrialState.FAIL)
    while (done := len(complete_trials(study))) < n_trials:
        study.sampler = optuna.samplers.TPESampler(seed=trial_seed(seed, done), n_startup_trials=n_startup_trials,
                                                   constant_liar=False)
        # a WAITING trial is this slot's anchor, enqueued by a process stopped before it asked
        if done < len(anchors) and not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            study.enqueue_trial(anchors[done])
        trial = study.ask()
        try:
            value = objective(suggest(trial))
        except BaseException:  # an interrupted or failed trial must not stay RUNNING in the storage
            study.tell(trial, state=TrialState.FAIL)
            raise
        # NaN would make Optuna fail the trial and the same parameters would be asked again forever
        frozen = study.tell(trial, value if math.isfinite(value) else math.inf)
        if on_trial is not None:
            on_trial(frozen)
