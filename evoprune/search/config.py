"""Search configuration: a frozen dataclass loaded from YAML. Unknown keys and ill-typed values are refused with one
line naming the key; `KEY=VALUE` overrides (dotted for the evaluation section) are typed the same way."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from evoprune.errors import EvopruneError
from evoprune.fitness.spec import EvalSpec
from evoprune.fitness.structured_spec import StructuredFitness
from evoprune.search.value_types import check_value

# The keys that define a run: a resume pins them to the checkpoint's values. `generations` (extend a run),
# `rescore_top`, `reselect_top` and `evaluation.device` may change.
RUN_DEFINING = ("leaves", "operators", "powers", "constants", "population", "seed", "init_min_height",
                "init_max_height", "max_height", "max_size", "cx_prob", "mut_prob", "tournament", "elitism",
                "seed_baselines", "evaluation", "selection", "allocation_tree", "allocation_delta", "allocation_leaves",
                "allocation_operators", "allocation_max_size", "refine_choices", "update_choices", "structured",
                "objectives")
SELECTIONS = ("tournament", "nsga2")
OBJECTIVES = ("fitness", "size", "seconds")
# Operators an allocation tree may use over the per-layer vectors (rownorm/colnorm need a matrix; pow: `powers`).
VECTOR_OPERATORS = ("add", "sub", "mul", "div", "neg", "abs", "sqr", "sqrt", "log", "exp", "tanh", "mms", "zscore")
FREE_EVALUATION_KEYS = ("device",)


@dataclass(frozen=True)
class SearchConfig:
    leaves: tuple[str, ...] = ("W", "X", "G")
    operators: tuple[str, ...] = ("add", "sub", "mul", "div", "abs", "sqr", "sqrt", "log", "exp", "mms")
    powers: tuple[float, ...] = (0.5, 0.75, 1.25, 1.5)  # unary pow primitives |a|^c, one per exponent
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
    rescore_mode: str = "dense"  # the final table: dense statistics (fast) or the sequential protocol (papers')
    # A second, slower opinion before the table: `reselect_top` candidates (the best of each distinct set of stages
    # first, then the next best by fitness) are scored by the model fitness (KL to the dense model on calibration
    # windows) and listed best-first by it. 0: off.
    reselect_top: int = 0
    baselines: tuple[str, ...] | None = None  # rows of the final table (built-in and hand-made names); None: all
    # Recipe genes (any of them on: an individual is a recipe, see genome.py). `nsga2`: NSGA-II over (fitness, size).
    selection: str = "tournament"
    allocation_tree: bool = False  # evolve a second tree over the per-layer descriptors (allocation tree:...)
    allocation_delta: float = 0.1  # per-layer sparsity within [s - delta, s + delta] (before the budget shift)
    allocation_leaves: tuple[str, ...] = ("depth", "attn", "qk", "out", "outlier", "energy", "spread")
    allocation_operators: tuple[str, ...] = ("add", "sub", "mul", "div", "neg", "abs", "sqrt", "log")
    allocation_max_size: int = 9
    refine_choices: tuple[str, ...] = ("none",)  # categorical gene: drawn from these (none, swaps[:...])
    update_choices: tuple[str, ...] = ("none",)  # categorical gene: none, obs[:...]
    # NSGA-II's objectives, all minimised: fitness first, then any of `size` (the formulas' node count) and
    # `seconds` (the time the recipe takes to prune, measured by the evaluator: worth it when an update, ~3x the
    # pruning time of a bare mask in quick.yaml's fitness, competes with none). None: fitness and size. Seconds
    # are measured, so a run with them repeats from its seed only up to timing noise (a resume replays the seconds
    # it cached).
    objectives: tuple[str, ...] | None = None
    evaluation: EvalSpec = field(default_factory=EvalSpec)
    # Set: a structured search (formulas summed over units, fitness the shrunk model's validation perplexity)
    structured: StructuredFitness | None = None

    def __post_init__(self) -> None:
        from evoprune.formula import OPERATORS

        unknown = set(self.operators) - set(OPERATORS) | ({"pow"} & set(self.operators))
        if unknown:
            name = sorted(unknown)[0]
            hint = "list exponents under `powers:`" if name == "pow" else f"known: {', '.join(OPERATORS)}"
            raise EvopruneError(f"operator {name!r} cannot be used in `operators:` ({hint})")
        if not self.leaves or not set(self.leaves) <= set(self.evaluation.leaves):
            raise EvopruneError(f"search leaves {list(self.leaves)} need evaluation.leaves to include them")
        for name in ("population", "generations", "max_height", "max_size", "tournament", "init_min_height"):
            if getattr(self, name) < 1:
                raise EvopruneError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.init_max_height < self.init_min_height:
            raise EvopruneError("init_max_height must be >= init_min_height")
        if not 0 <= self.elitism < self.population:
            raise EvopruneError(f"elitism must be in [0, population), got {self.elitism}")
        if not (0 <= self.cx_prob <= 1 and 0 <= self.mut_prob <= 1):
            raise EvopruneError("cx_prob and mut_prob must be in [0, 1]")
        self._check_recipe_genes()
        if self.structured is not None:
            self._check_structured()

    def _check_structured(self) -> None:
        """A structured candidate is a bare formula over W and X, judged by one fitness: its own."""
        if self.recipe_genome:
            raise EvopruneError("a structured search evolves bare formulas: use selection tournament, "
                                "allocation_tree false and refine/update choices [none]")
        if not set(self.evaluation.leaves) <= {"W", "X"}:
            raise EvopruneError(f"a structured search scores over W and X only; evaluation.leaves is "
                                f"{list(self.evaluation.leaves)}")
        if self.reselect_top:
            raise EvopruneError("reselect_top must be 0 in a structured search (its fitness is already the model's)")
        if self.rescore_mode != "dense":
            raise EvopruneError("a structured search re-scores its best by shrinking the model: rescore_mode dense")

    def _check_recipe_genes(self) -> None:
        from evoprune.formula.descriptors import DESCRIPTORS
        from evoprune.prune.refine import parse_refine
        from evoprune.prune.update import parse_update

        if self.reselect_top < 0:
            raise EvopruneError(f"reselect_top must be >= 0, got {self.reselect_top}")
        if self.rescore_mode not in ("dense", "sequential"):
            raise EvopruneError(f"unknown rescore_mode {self.rescore_mode!r} (use dense, sequential)")
        if self.selection not in SELECTIONS:
            raise EvopruneError(f"unknown selection {self.selection!r} (use {', '.join(SELECTIONS)})")
        if self.selection == "nsga2" and self.population % 4:
            raise EvopruneError(f"selection nsga2 needs a population divisible by 4, got {self.population}")
        unknown = set(self.allocation_leaves) - set(DESCRIPTORS)
        if unknown or not self.allocation_leaves:
            raise EvopruneError(f"allocation_leaves: unknown {sorted(unknown)} (use {', '.join(DESCRIPTORS)})")
        bad_ops = set(self.allocation_operators) - set(VECTOR_OPERATORS)
        if bad_ops:
            raise EvopruneError(f"allocation_operators: {sorted(bad_ops)[0]!r} is not an operator over layer vectors")
        if not 0 <= self.allocation_delta <= 0.5:
            raise EvopruneError(f"allocation_delta must be in [0, 0.5], got {self.allocation_delta}")
        if self.allocation_max_size < 1:
            raise EvopruneError(f"allocation_max_size must be >= 1, got {self.allocation_max_size}")
        for key, parse in (("refine_choices", parse_refine), ("update_choices", parse_update)):
            if not getattr(self, key):
                raise EvopruneError(f"{key} must list at least one choice (none for the stage off)")
            for text in getattr(self, key):
                parse(text)
        if self.objectives is not None:
            names = self.objectives
            if self.selection != "nsga2":
                raise EvopruneError(f"objectives: selection {self.selection} has the one objective fitness; "
                                    "use selection nsga2 or leave objectives unset")
            unknown = [n for n in names if n not in OBJECTIVES]
            if unknown or len(set(names)) != len(names) or not names or names[0] != "fitness":
                raise EvopruneError(f"objectives must be fitness followed by any of size, seconds (once each), "
                                    f"got {list(names)}")
        if (any(parse_update(u).name == "sweep" for u in self.update_choices)
                and any(parse_refine(r).name != "none" for r in self.refine_choices)):
            raise EvopruneError("update_choices: sweep chooses the mask inside the update, so refine_choices "
                                "must be [none] beside it (a refinement has no mask to refine)")

    @property
    def recipe_genome(self) -> bool:
        """Individuals are recipes (score tree + allocation tree + stage genes) rather than bare formulas."""
        return (self.allocation_tree or self.selection == "nsga2" or self.refine_choices != ("none",)
                or self.update_choices != ("none",))

    @property
    def objective_names(self) -> tuple[str, ...]:
        """What a recipe search minimises, in the order of the fitness values (see `objectives`; a tournament
        compares (fitness, size) lexicographically)."""
        return self.objectives if self.objectives is not None else ("fitness", "size")

    def to_dict(self) -> dict:
        return _plain(asdict(self))


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _typed(cls, raw: dict, section: str) -> dict:
    known = {f.name: f.type for f in fields(cls)}
    for key in raw:
        if key not in known:
            raise EvopruneError(f"unknown {section} key {key!r} (known: {', '.join(sorted(known))})")
    return {key: check_value(f"{section} key {key!r}", value, known[key]) for key, value in raw.items()
            if key not in ("evaluation", "structured")}


def config_from_dict(raw: dict) -> SearchConfig:
    evaluation = raw.get("evaluation") or {}
    if not isinstance(evaluation, dict):
        raise EvopruneError("search config key 'evaluation' must be a mapping")
    structured = raw.get("structured")
    if structured is not None and not isinstance(structured, dict):
        raise EvopruneError("search config key 'structured' must be a mapping")
    return SearchConfig(**_typed(SearchConfig, raw, "search config"),
                        evaluation=EvalSpec.from_dict(_typed(EvalSpec, evaluation, "evaluation")),
                        structured=None if structured is None
                        else StructuredFitness(**_typed(StructuredFitness, structured, "structured")))


def load_config(path: str | Path) -> SearchConfig:
    return config_from_dict(read_mapping(path))


def read_mapping(path: str | Path) -> dict:
    """A YAML config file's top-level mapping; a missing file, bad YAML or another type is one error line."""
    path = Path(path)
    if not path.is_file():
        raise EvopruneError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise EvopruneError(f"config {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise EvopruneError(f"config {path} must be a mapping")
    return raw


def parse_overrides(items: list[str] | None) -> dict:
    """["population=16", "evaluation.nsamples=8", "operators=[add, mul]"] -> a nested dict of YAML values."""
    out: dict = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise EvopruneError(f"override {item!r} is not KEY=VALUE")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise EvopruneError(f"override {item!r}: the value is not valid YAML") from None
        *parents, leaf = key.strip().split(".")
        if len(parents) > 1 or (parents and parents[0] != "evaluation"):
            raise EvopruneError(f"override key {key!r}: only `evaluation.` keys may be dotted")
        (out.setdefault("evaluation", {}) if parents else out)[leaf] = value
    return out


def with_overrides(config: SearchConfig, overrides: dict) -> SearchConfig:
    """The config with `overrides` (a nested dict, None values ignored) applied and validated again."""
    raw = config.to_dict()
    for key, value in overrides.items():
        if key == "evaluation" and isinstance(value, dict):
            raw["evaluation"].update({k: v for k, v in value.items() if v is not None})
        elif value is not None:
            raw[key] = value
    return config_from_dict(raw)


def pin_run_defining(config: SearchConfig, saved: dict) -> tuple[SearchConfig, list[str]]:
    """On resume: the run-defining keys take the checkpoint's values. Returns the config and the keys changed."""
    raw, changed = config.to_dict(), []
    for key in RUN_DEFINING:
        if key not in saved:  # a checkpoint from before this key existed: the run used its default
            saved = {**saved, key: _plain(SearchConfig.__dataclass_fields__[key].default)}
        theirs = dict(saved[key]) if key == "evaluation" else saved[key]
        if key == "evaluation":
            theirs.update({k: raw[key][k] for k in FREE_EVALUATION_KEYS})
        if raw[key] != theirs:
            changed.append(key)
            raw[key] = theirs
    return config_from_dict(raw), changed
