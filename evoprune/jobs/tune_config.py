"""`evoprune tune` configuration (AdaPruner's search): a frozen dataclass loaded from YAML. Unknown keys and
ill-typed or out-of-range values are refused with one line naming the key, before any model loads."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from evoprune.errors import EvopruneError
from evoprune.search.config import read_mapping
from evoprune.search.value_types import check_value
from evoprune.structured.budget import check_fixed_widths
from evoprune.structured.shape import parse_structures

STRUCTURED_METRICS = ("taylor", "flap")  # unit scores of their own; any other metric is a per-weight score summed
FREE_KEYS = ("n_trials",)  # the one key a rerun on an existing run directory may change (extend the study)


@dataclass(frozen=True)
class TuneConfig:
    model: str = "smollm2-135m"
    device: str = "auto"
    dtype: str = "auto"
    # what is pruned (as `evoprune prune --structure`)
    structure: str = "mlp,heads"
    ratio: float = 0.2  # fraction of the decoder's parameters removed
    widths: str = "uniform"
    tolerance: float = 0.005
    # the searched mix: one weight in [0, 1] per metric over standardised unit scores
    metrics: tuple[str, ...] = ("taylor", "flap", "wanda", "magnitude")
    # calibration windows: `choose` picked from a pool of `pool` validation windows; the objective is perplexity
    # on `objective_windows` further validation windows, disjoint from the pool (never the test split)
    data: str = "wikitext2"
    seqlen: int = 128
    pool: int = 32
    choose: int = 8
    objective_windows: int = 8
    split_seed: int = 0  # which validation windows form the pool and the objective set
    # TPE
    n_trials: int = 30
    n_startup_trials: int = 8  # trials before TPE models the history (anchors first, then random)
    anchor_trials: bool = True  # the first trials weigh one metric each (see tune_space.anchors)
    seed: int = 0
    # the final report only: the best trial's pruned model on the test split
    eval_data: str = "wikitext2"
    eval_seqlen: int = 512
    eval_max_tokens: int = 16384
    latency_repeats: int = 5  # forward passes timed for the report's latency (dense and pruned); 0: not measured

    def __post_init__(self) -> None:
        structures = parse_structures(self.structure)
        if "blocks" in structures:
            raise EvopruneError("tune mixes head and channel scores: structure blocks is not supported (use "
                                "`evoprune prune --structure blocks --metric shortgpt`)")
        if "residual" in structures:  # FLAP, one of the mixed metrics, has no residual channel score
            raise EvopruneError("tune mixes head and MLP channel scores: structure residual is not supported (use "
                                "`evoprune prune --structure residual`)")
        check_fixed_widths(self.widths, "widths")
        if not 0.0 < self.ratio < 1.0:
            raise EvopruneError(f"ratio must be in (0, 1), got {self.ratio}")
        if not 0.0 <= self.tolerance < 1.0:
            raise EvopruneError(f"tolerance must be in [0, 1), got {self.tolerance}")
        for name in ("pool", "choose", "objective_windows", "n_trials", "n_startup_trials", "eval_seqlen"):
            if getattr(self, name) < 1:
                raise EvopruneError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.seqlen < 2:
            raise EvopruneError(f"seqlen must be >= 2, got {self.seqlen}")
        if self.choose > self.pool:
            raise EvopruneError(f"choose ({self.choose}) must not exceed pool ({self.pool})")
        if self.latency_repeats < 0:
            raise EvopruneError(f"latency_repeats must be >= 0, got {self.latency_repeats}")
        if self.eval_max_tokens < 0:
            raise EvopruneError(f"eval_max_tokens must be >= 0 (0 = all), got {self.eval_max_tokens}")
        self._check_metrics()

    def _check_metrics(self) -> None:
        if not self.metrics:
            raise EvopruneError("metrics must list at least one metric")
        if len(set(self.metrics)) != len(self.metrics):
            raise EvopruneError(f"metrics names a metric twice: {list(self.metrics)}")
        from evoprune.jobs.prune import resolve_method  # formulas need sympy: only when the config is checked

        for metric in self.metrics:
            if metric in STRUCTURED_METRICS:
                continue
            if metric == "shortgpt":
                raise EvopruneError("metrics: shortgpt scores whole blocks, which tune does not prune")
            method = resolve_method(metric, self.seqlen)
            # G and Hinv would need a cached dense pass per trial's windows: only W and X mix cheaply
            if method.scorer is None or not set(method.leaves) <= {"W", "X"}:
                raise EvopruneError(f"metrics: {metric!r} is not a per-weight score over W and X (use taylor, "
                                    "flap, magnitude, wanda, ria or a formula in W and X)")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def config_from_dict(raw: dict) -> TuneConfig:
    known = {f.name: f.type for f in fields(TuneConfig)}
    for key in raw:
        if key not in known:
            raise EvopruneError(f"unknown tune config key {key!r} (known: {', '.join(sorted(known))})")
    return TuneConfig(**{key: check_value(f"tune config key {key!r}", value, known[key])
                         for key, value in raw.items()})


def load_tune_config(path: str | Path) -> TuneConfig:
    return config_from_dict(read_mapping(path))
