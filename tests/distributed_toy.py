"""Test helpers for the Ray pool: a synthetic evaluator that can kill its own process once, on demand.

Importable by Ray workers as `distributed_toy` because the tests put this directory on PYTHONPATH before Ray starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from evoprune.distributed.synthetic import SyntheticEvaluator, SyntheticSpec

FACTORY = "distributed_toy:DyingEvaluator"

# Varied enough that no two formulas share a fitness (so a mix-up of result order cannot go unnoticed).
FORMULAS = [
    "abs(W)*X", "abs(W)", "W", "abs(W)*sqrt(X)", "abs(W)*X*X", "G", "abs(W*G)", "abs(W)/Hinv", "abs(W)*Hinv",
    "abs(W)+X", "W*W*X", "sqrt(abs(W))*X", "log(abs(W))+log(X)", "abs(W)*X+G", "exp(abs(W))", "abs(W)-X",
    "nonsense(W)", "abs(W)*G*X", "W/X", "abs(W)*exp(X)",
]


@dataclass(frozen=True)
class DyingSpec(SyntheticSpec):
    die_on: str = ""         # the formula that kills the worker process ...
    marker: str = ""         # ... the first time only: the marker file records that it already died
    die_always: bool = False  # ... or every time (a "poison" candidate)


class DyingEvaluator(SyntheticEvaluator):
    def evaluate(self, formula: str) -> dict:
        spec = self.spec
        if isinstance(spec, DyingSpec) and spec.die_on and formula == spec.die_on:
            if spec.die_always or not Path(spec.marker).exists():
                if spec.marker:
                    Path(spec.marker).write_text(str(os.getpid()))
                os._exit(1)  # a hard crash: no exception reaches Ray, the process is simply gone
        # The pid shows which process did the work; tests compare every other field with the in-process run.
        return {**super().evaluate(formula), "pid": os.getpid()}
