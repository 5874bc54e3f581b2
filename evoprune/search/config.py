"""Search configuration: dataclasses loaded from YAML; unknown keys are refused with a line naming the key."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import yaml

from evoprune.errors import EvopruneError
from evoprune.fitness.spec import EvalSpec

# The keys that define a run: a resume keeps the checkpoint's values for these whatever the command line says.
RUN_DEFINING = ("leaves", "operators", "powers", "constants", "population", "seed", "init_min_height",
                "init_max_height", "max_height", "max_size", "cx_prob", "mut_prob", "tournament", "elitism",
                "seed_baselines", "evaluation")


@dataclass(frozen=True)
class SearchConfig:
    leaves: tuple[str, ...] = ("W", "X", "G")
    operators: tuple[str, ...] = ("add", "sub", "mul", "div", "abs", "sqr", "sqrt", "log", "exp", "mms")
    powers: tuple[float, ...] = (0.5, 0.75, 1.25, 1.5)  # unary pow_c primitives: |a|^c
    constants: tuple[float, ...] = (0.5, 1.0, 2.0)  # ephemeral constants are drawn from this set
    population: int = 32
    generations: int = 8
    init_min_height: int = 1
    init_max_height: int = 3
    max_height: int = 6
    max_size: int = 20
    cx_prob: float = 0.6
    mut_prob: float = 0.3
    tournament: int = 3
    elitism: int = 2
    seed: int = 0
    seed_baselines: bool = False  # start from scratch by default; True puts the built-ins into generation 0
    rescore_top: int = 3  # best formulas re-scored by perplexity at the end
    evaluation: EvalSpec = field(default_factory=EvalSpec)

    def __post_init__(self) -> None:
        from evoprune.formula import OPERATORS

        unknown = set(self.operators) - set(OPERATORS)
        if unknown:
            raise EvopruneError(f"unknown operator {sorted(unknown)[0]!r} in search config")
        if not set(self.leaves) <= set(self.evaluation.leaves):
            raise EvopruneError(f"search leaves {self.leaves} need evaluation.leaves to include them")
        for name in ("population", "generations", "max_height", "max_size", "tournament"):
            if getattr(self, name) < 1:
                raise EvopruneError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.elitism < self.population:
            raise EvopruneError(f"elitism must be in [0, population), got {self.elitism}")
        if not (0 <= self.cx_prob <= 1 and 0 <= self.mut_prob <= 1):
            raise EvopruneError("cx_prob and mut_prob must be in [0, 1]")

    def to_dict(self) -> dict:
        return _plain(asdict(self))


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def config_from_dict(raw: dict) -> SearchConfig:
    known = {f.name for f in fields(SearchConfig)}
    for key in raw:
        if key not in known:
            raise EvopruneError(f"unknown search config key {key!r} (known: {', '.join(sorted(known))})")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k != "evaluation"}
    return SearchConfig(**values, evaluation=EvalSpec.from_dict(raw.get("evaluation") or {}))


def load_config(path: str | Path) -> SearchConfig:
    path = Path(path)
    if not path.is_file():
        raise EvopruneError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise EvopruneError(f"config {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise EvopruneError(f"config {path} must be a mapping")
    return config_from_dict(raw)


def with_overrides(config: SearchConfig, **overrides) -> SearchConfig:
    """Typed command-line overrides (None = keep)."""
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})
