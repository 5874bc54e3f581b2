"""Stage settings as text: `name` or `name:key=value,key=value` (e.g. `owl:M=5,lambda=0.08`, `swaps:budget=32`);
a stage driven by a formula adds it after a `;` (`tree:delta=0.1;depth*outlier`).

One parser for every recipe stage, so the CLI, recipe JSON files and a search genome spell stages the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from evoprune.errors import EvopruneError


@dataclass(frozen=True)
class StageSpec:
    """A stage choice and its numeric parameters (sorted, so equal settings compare and hash equal)."""

    name: str
    params: tuple[tuple[str, float], ...] = ()
    expr: str = ""  # a stage driven by a formula (allocation `tree`): its canonical text, after a ';'

    def get(self, key: str, default: float) -> float:
        return dict(self.params).get(key, default)

    def __str__(self) -> str:
        text = self.name if not self.params else self.name + ":" + ",".join(f"{k}={v:g}" for k, v in self.params)
        return text + (f";{self.expr}" if self.expr else "")


def parse_stage(text: str, stage: str, known: dict[str, tuple[str, ...] | None]) -> StageSpec:
    """Parse `text` for `stage` (allocation, refine, update); `known` maps each name to its parameter names
    (None: any name, e.g. per-projection offsets). Bad input raises EvopruneError naming the problem."""
    name, _, rest = str(text).strip().partition(":")
    if name not in known:
        raise EvopruneError(f"unknown {stage} {name!r} (use {', '.join(known)})")
    params: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        allowed = known[name]
        if not eq or not key:
            raise EvopruneError(f"{stage} {name}: parameter {item!r} is not key=value")
        if allowed is not None and key not in allowed:
            raise EvopruneError(f"{stage} {name}: unknown parameter {key!r} (use {', '.join(allowed) or 'none'})")
        try:
            number = float(value)
        except ValueError:
            raise EvopruneError(f"{stage} {name}: {key}={value!r} is not a number") from None
        if not math.isfinite(number):
            raise EvopruneError(f"{stage} {name}: {key} must be finite")
        params[key] = number
    return StageSpec(name, tuple(sorted(params.items())))
