"""EvalSpec: everything an Evaluator depends on, as plain values (picklable for Ray, loadable from YAML)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from evoprune.errors import EvopruneError

FITNESS_TYPES = ("layer", "fisher", "block", "model")
LAYER_FITNESSES = ("layer", "fisher")  # from Gram matrices alone, no forward pass per candidate


@dataclass(frozen=True)
class EvalSpec:
    model: str = "smollm2-135m"
    device: str = "auto"
    dtype: str = "auto"
    calib: str = "wikitext2"
    nsamples: int = 32
    seqlen: int = 256
    seed: int = 0
    leaves: tuple[str, ...] = ("W", "X", "G", "Hinv")
    fitness: str = "layer"
    fitness_samples: int = 8  # calibration windows used by block/model fitness, at most nsamples (never test)
    # layer fitness: the fraction of each layer's output rows it scores (a fixed random subset drawn with `seed`).
    # Rows prune independently and the error is a sum over rows, so a subset is an unbiased, cheaper estimate.
    fitness_rows: float = 1.0
    sparsities: tuple[float, ...] = (0.5,)
    patterns: tuple[str, ...] = ("unstructured",)
    group: str = "row"
    eval_data: str = "wikitext2"
    eval_seqlen: int = 512
    eval_max_tokens: int | None = 16384

    def __post_init__(self) -> None:
        if self.fitness not in FITNESS_TYPES:
            raise EvopruneError(f"unknown fitness {self.fitness!r} (use {', '.join(FITNESS_TYPES)})")
        unknown = set(self.leaves) - {"W", "X", "G", "Hinv"}
        if unknown:
            raise EvopruneError(f"unknown leaves {sorted(unknown)} (use W, X, G, Hinv)")
        if self.fitness_samples < 1:
            raise EvopruneError(f"fitness_samples must be >= 1, got {self.fitness_samples}")
        if not 0 < self.fitness_rows <= 1:
            raise EvopruneError(f"fitness_rows must be in (0, 1], got {self.fitness_rows}")
        if self.fitness_rows < 1 and (self.fitness not in LAYER_FITNESSES or self.group != "row"):
            raise EvopruneError("fitness_rows < 1 needs fitness: layer or fisher and group: row "
                                "(rows must prune independently)")
        if self.fitness_samples > self.nsamples:  # the first windows of the calibration set: there are no more
            object.__setattr__(self, "fitness_samples", self.nsamples)

    @classmethod
    def from_dict(cls, raw: dict) -> EvalSpec:
        """Build from YAML data; unknown keys are an error naming the key."""
        known = {f.name for f in fields(cls)}
        extra = set(raw) - known
        if extra:
            raise EvopruneError(f"unknown evaluation key {sorted(extra)[0]!r} (known: {', '.join(sorted(known))})")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
        return cls(**values)
