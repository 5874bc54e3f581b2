"""What an individual is, and how it becomes the string an evaluator scores.

`FormulaGenome`: a score tree (DEAP's PrimitiveTree), keyed by its canonical formula (the search before recipes).
`RecipeGenome`: a recipe — the score tree (the individual itself, so DEAP's crossover, mutation and size limits
apply to it unchanged) plus an allocation tree over the per-layer descriptors (`.alloc`) and categorical stage
genes (`.refine`, `.update`). Its key is the recipe's canonical JSON (`fitness.candidate.candidate_text`), which
is what crosses to the evaluators and keys the cache; a plain recipe's key is its bare formula. Fitness has the
config's `objective_names`, all minimised (fitness and size; with `objectives: [fitness, size, seconds]` also the
pruning seconds): NSGA-II trades them off, a tournament compares them lexicographically.
Individuals stay on the driver (DEAP's creator classes do not pickle across processes); checkpoints hold
`text(ind)`, plain JSON.
"""

from __future__ import annotations

import copy
import json
import math
import random
from functools import partial

from deap import base, creator, gp, tools

from evoprune.errors import EvopruneError
from evoprune.fitness.candidate import candidate_text
from evoprune.formula import canonical_string, formula_size
from evoprune.prune.recipe import Recipe
from evoprune.search.config import SearchConfig
from evoprune.search.evaluation import canonical_of
from evoprune.search.primitives import NotExpressible, build_pset, tree_from_string, tree_to_sympy
from evoprune.search.toolbox import build_toolbox, limit_variation, mutate_tree

for _n in (1, 2, 3):  # process-global, like toolbox.py's single-objective classes; one per objective count
    if not hasattr(creator, f"EvoRecipe{_n}"):
        creator.create(f"EvoFitness{_n}", base.Fitness, weights=(-1.0,) * _n)
        creator.create(f"EvoRecipe{_n}", gp.PrimitiveTree, fitness=getattr(creator, f"EvoFitness{_n}"))

PENALTY, NO_SIZE = 1e30, 1e9  # selNSGA2's crowding distance would turn inf - inf into NaN
SECONDS_FLOOR = 1 / 64  # pruning faster than this is one bucket
ALLOC_HEIGHT = (1, 2)  # initial allocation trees: small (a few descriptors)


class FormulaGenome:
    """A bare score formula per individual (single objective)."""

    multi = False

    def __init__(self, pset: gp.PrimitiveSet) -> None:
        self.pset = pset

    def individual(self, tree: list) -> gp.PrimitiveTree:
        return creator.EvoIndividual(tree)

    def text(self, ind) -> str:
        return str(ind)

    def parse(self, text: str):
        return creator.EvoIndividual(tree_from_string(text, self.pset))

    def key(self, ind) -> tuple[str, int | None, str | None]:
        return canonical_of(ind, self.pset)

    def fitness_values(self, result: dict) -> tuple[float, ...]:
        return (result["fitness"],)


class RecipeGenome(FormulaGenome):
    """Score tree + allocation tree + refine/update genes (see the module docstring)."""

    multi = True

    def __init__(self, config: SearchConfig, pset: gp.PrimitiveSet) -> None:
        super().__init__(pset)
        self.config = config
        self.objectives = config.objective_names
        self.cls = getattr(creator, f"EvoRecipe{len(self.objectives)}")
        self.alloc_pset = None
        if config.allocation_tree:
            self.alloc_pset = build_pset(config.allocation_leaves, config.allocation_operators, (),
                                         config.constants)

    # -- making and reading individuals -----------------------------------------------------------------------
    def new_alloc(self) -> gp.PrimitiveTree | None:
        if self.alloc_pset is None:
            return None
        return gp.PrimitiveTree(gp.genHalfAndHalf(self.alloc_pset, *ALLOC_HEIGHT))

    def individual(self, tree: list):
        ind = self.cls(tree)
        ind.alloc = self.new_alloc()
        ind.refine = random.choice(self.config.refine_choices)
        ind.update = random.choice(self.config.update_choices)
        return ind

    def seeded(self, tree: list, refine: str, update: str):
        """A hand-made recipe as an individual: the given score tree, a uniform allocation (a constant tree, which
        ranks every layer equal) and the given stages."""
        ind = self.cls(tree)
        ind.alloc = None
        if self.alloc_pset is not None:
            ind.alloc = (tree_from_string(repr(float(self.config.constants[0])), self.alloc_pset)
                         if self.config.constants else self.new_alloc())
        ind.refine, ind.update = refine, update
        return ind

    def text(self, ind) -> str:
        return json.dumps({"score": str(ind), "alloc": None if ind.alloc is None else str(ind.alloc),
                           "refine": ind.refine, "update": ind.update})

    def parse(self, text: str):
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("a recipe genome is a JSON object")
        ind = self.cls(tree_from_string(raw["score"], self.pset))
        alloc = raw.get("alloc")
        if (alloc is None) != (self.alloc_pset is None):
            raise ValueError("allocation gene does not match the config's allocation_tree")
        ind.alloc = None if alloc is None else tree_from_string(alloc, self.alloc_pset)
        ind.refine, ind.update = str(raw["refine"]), str(raw["update"])
        return ind

    # -- what is evaluated ----------------------------------------------------------------------------------
    def allocation(self, ind) -> tuple[str, int]:
        """The allocation stage text and its size; a tree with no descriptor ranks all layers equal: uniform."""
        if ind.alloc is None:
            return "uniform", 0
        expr = tree_to_sympy(ind.alloc, self.alloc_pset)
        if not expr.free_symbols:
            return "uniform", 0
        return f"tree:delta={self.config.allocation_delta:g};{canonical_string(expr)}", formula_size(expr)

    def key(self, ind) -> tuple[str, int | None, str | None]:
        form, size, reason = canonical_of(ind, self.pset)
        if reason is not None:
            return f"recipe:{self.text(ind)}", None, reason
        try:
            allocation, alloc_size = self.allocation(ind)
            recipe = Recipe.parse(form, allocation, ind.refine, ind.update)
        except (EvopruneError, NotExpressible, ValueError, TypeError) as exc:
            return f"recipe:{self.text(ind)}", None, f"recipe: {type(exc).__name__}: {str(exc)[:200]}"
        return candidate_text(recipe), size + alloc_size, None

    def fitness_values(self, result: dict) -> tuple[float, ...]:
        """The objectives of a cached result. Seconds are rounded to a power of two: timing noise (a few tens of
        per cent on a shared machine) must not rank two recipes of the same cost, and an update's cost is
        ~3x a bare mask's in quick.yaml (2.4 s against 0.7 s, medians), more than one bucket."""
        fitness, size = result["fitness"], result["size"]
        failed = not math.isfinite(fitness)
        values = {"fitness": PENALTY if failed else fitness,
                  "size": float(size) if size is not None else NO_SIZE,
                  "seconds": PENALTY if failed else seconds_bucket(result.get("prune_seconds") or 0.0)}
        return tuple(values[name] for name in self.objectives)

    # -- variation (registered on the toolbox; DEAP's staticLimit guards the score tree) --------------------
    def mate(self, a, b):
        if self.alloc_pset is not None and random.random() < 0.3:
            old_a, old_b = copy.deepcopy(a.alloc), copy.deepcopy(b.alloc)
            gp.cxOnePoint(a.alloc, b.alloc)
            a.alloc = a.alloc if self._fits(a.alloc) else old_a
            b.alloc = b.alloc if self._fits(b.alloc) else old_b
        else:
            gp.cxOnePoint(a, b)
        for gene in ("refine", "update"):
            if random.random() < 0.5:
                x, y = getattr(a, gene), getattr(b, gene)
                setattr(a, gene, y)
                setattr(b, gene, x)
        return a, b

    def mutate(self, ind, score_mutation):
        """One gene changes: the score tree (`score_mutation`, the toolbox's), the allocation tree, or a stage."""
        genes = ["score"] * 5 + ["alloc"] * (3 if self.alloc_pset is not None else 0)
        genes += ["stage"] * (2 if len(self.config.refine_choices) + len(self.config.update_choices) > 2 else 0)
        gene = random.choice(genes)
        if gene == "score":
            return score_mutation(ind)
        if gene == "alloc":
            before = copy.deepcopy(ind.alloc)
            mutate_tree(ind.alloc, partial(gp.genFull, min_=0, max_=2), self.alloc_pset)  # the score tree's mutations
            if not self._fits(ind.alloc):
                ind.alloc = before
            return (ind,)
        stage = random.choice([s for s in ("refine", "update") if len(getattr(self.config, f"{s}_choices")) > 1])
        setattr(ind, stage, random.choice(getattr(self.config, f"{stage}_choices")))
        return (ind,)

    def _fits(self, tree: gp.PrimitiveTree) -> bool:
        return len(tree) <= self.config.allocation_max_size and tree.height <= 4


def seconds_bucket(seconds: float) -> float:
    """The seconds objective: the nearest power of two (at least `SECONDS_FLOOR`)."""
    return 2.0 ** round(math.log2(max(seconds, SECONDS_FLOOR)))


def build_search(config: SearchConfig) -> tuple[base.Toolbox, FormulaGenome]:
    """The toolbox and the genome of a config: recipe individuals when any recipe gene is on."""
    tb, pset = build_toolbox(config)
    if not config.recipe_genome:
        return tb, FormulaGenome(pset)
    genome = RecipeGenome(config, pset)
    tb.register("individual", lambda: genome.individual(tb.expr()))
    tb.register("population", tools.initRepeat, list, tb.individual)
    tb.register("mate", genome.mate)
    tb.register("mutate", genome.mutate, score_mutation=partial(mutate_tree, expr=tb.expr_mut, pset=pset))
    limit_variation(tb, config)
    return tb, genome
