"""A pruning recipe: score → allocation → mask → refinement → update, as plain settings.

A recipe crosses process boundaries and files as JSON (`to_dict` / `from_dict`): the score is a built-in name, a
formula string or a metric file path; each stage is its `name[:key=value,...]` text (see `stages.py`). The score
is resolved into a scorer by the layer that may import formulas and files (`jobs/`, `fitness/`), never here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from evoprune.errors import EvopruneError
from evoprune.prune.allocation import parse_allocation
from evoprune.prune.masks import Pattern
from evoprune.prune.refine import parse_refine
from evoprune.prune.stages import StageSpec
from evoprune.prune.update import parse_update

RECIPE_KEYS = ("score", "allocation", "refine", "update")


@dataclass(frozen=True)
class Recipe:
    score: str = "wanda"
    allocation: StageSpec = field(default_factory=lambda: parse_allocation("uniform"))
    refine: StageSpec = field(default_factory=lambda: parse_refine("none"))
    update: StageSpec = field(default_factory=lambda: parse_update("none"))

    def __post_init__(self) -> None:
        if self.update.name == "sweep" and self.refine.name != "none":
            raise EvopruneError(f"update sweep chooses the mask inside the weight update: refinement "
                                f"{self.refine.name} has no mask to refine (use --update obs with it)")

    @classmethod
    def parse(cls, score: str, allocation: str = "uniform", refine: str = "none", update: str = "none") -> Recipe:
        return cls(score, parse_allocation(allocation), parse_refine(refine), parse_update(update))

    @classmethod
    def from_dict(cls, raw: dict) -> Recipe:
        if not isinstance(raw, dict) or "score" not in raw:
            raise EvopruneError("a recipe is an object with a 'score' and optional allocation, refine, update")
        extra = set(raw) - set(RECIPE_KEYS)
        if extra:
            raise EvopruneError(f"unknown recipe key {sorted(extra)[0]!r} (known: {', '.join(RECIPE_KEYS)})")
        return cls.parse(str(raw["score"]), str(raw.get("allocation", "uniform")), str(raw.get("refine", "none")),
                         str(raw.get("update", "none")))

    def to_dict(self) -> dict[str, str]:
        return {"score": self.score, "allocation": str(self.allocation), "refine": str(self.refine),
                "update": str(self.update)}

    @property
    def plain(self) -> bool:
        """Only a score: what the formula search and the built-in metrics did before recipes."""
        return (self.allocation.name, self.refine.name, self.update.name) == ("uniform", "none", "none")

    @property
    def needs_hessian(self) -> bool:
        return self.refine.name != "none" or self.update.name != "none"

    def __str__(self) -> str:
        stages = [str(s) for s in (self.allocation, self.refine, self.update) if s.name not in ("uniform", "none")]
        return "+".join([self.score, *stages])

    def check(self, pattern: Pattern, chooses_own_mask: bool = False) -> None:
        """Combinations no stage can honour; raises EvopruneError (checked before any work)."""
        if pattern.structured and self.allocation.name != "uniform":
            raise EvopruneError(f"allocation {self.allocation.name} varies sparsity per layer; pattern {pattern} "
                                "fixes it (use --allocation uniform with N:M)")
        if chooses_own_mask and (self.refine.name != "none" or self.update.name != "none"):
            raise EvopruneError(f"{self.score} chooses its own mask and updates weights: --refine and --update "
                                "apply to score metrics (try --metric wanda --update obs; SparseGPT as a score: "
                                "--metric 'W**2/Hinv' --update sweep[:resolve=20])")
