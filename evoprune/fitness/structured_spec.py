"""The `structured:` section of a search config: the GP evolves a per-weight formula whose sum over each unit (MLP
channel, query head, KV group) ranks the units, and a candidate's fitness is the perplexity of the model shrunk by
it, on validation windows (never the test split)."""

from __future__ import annotations

from dataclasses import dataclass

from evoprune.errors import EvopruneError
from evoprune.fitness.spec import EvalSpec
from evoprune.structured.budget import check_fixed_widths
from evoprune.structured.scores import AGGREGATES
from evoprune.structured.shape import parse_structures


@dataclass(frozen=True)
class StructuredFitness:
    structure: str = "mlp"
    ratio: float = 0.2  # of the decoder's parameters, as `prune --ratio`
    widths: str = "uniform"
    # the objective: perplexity on disjoint windows of the calibration text's validation split (as `--depth auto`)
    objective_windows: int = 8
    objective_seqlen: int = 256
    objective_seed: int = 1
    aggregate: str = "sum"  # the formula's per-weight scores over a unit: sum, mean, l2, max (scores.AGGREGATES)

    def __post_init__(self) -> None:
        if "blocks" in parse_structures(self.structure):
            raise EvopruneError("structured.structure: whole blocks are ranked by ShortGPT's influence, not by a "
                                "formula; search over mlp, heads or groups")
        check_fixed_widths(self.widths, "structured.widths")
        if self.aggregate not in AGGREGATES:
            raise EvopruneError(f"structured.aggregate: unknown {self.aggregate!r} (use {', '.join(AGGREGATES)})")
        if not 0 < self.ratio < 1:
            raise EvopruneError(f"structured.ratio must be in (0, 1), got {self.ratio}")
        if self.objective_windows < 1 or self.objective_seqlen < 2:
            raise EvopruneError("structured.objective_windows must be >= 1 and objective_seqlen >= 2")


@dataclass(frozen=True)
class StructuredSearchSpec:
    """What a structured evaluator is built from (picklable: crosses to Ray actors as is)."""

    evaluation: EvalSpec
    structured: StructuredFitness
