"""The one record an evaluation produces. It crosses process boundaries as `to_dict()` (plain values only)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass
class EvalResult:
    formula: str  # the candidate as given: a formula, a built-in name or a recipe's JSON text
    fitness: float = math.inf  # lower is better; inf = failed candidate
    reason: str | None = None  # why a candidate failed
    seconds: float = 0.0  # the whole evaluation: pruning and the fitness
    prune_seconds: float = 0.0  # pruning alone (score, allocation, refinement, update) over the settings
    mask_hash: str | None = None  # the final masks (and update stage): equal hashes, equal pruned models
    cached: bool = False

    def to_dict(self) -> dict:
        return asdict(self)
