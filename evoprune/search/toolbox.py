"""The DEAP toolbox: ramped half-and-half initialisation, tournament selection, subtree crossover, several
mutations, and static height/size limits (bloat control as DEAP's decorator)."""

from __future__ import annotations

import operator
import random

from deap import base, creator, gp, tools

from evoprune.search.config import SearchConfig
from evoprune.search.primitives import build_pset

# creator classes are process-global in DEAP; create them once (individuals never leave the driver).
if not hasattr(creator, "EvoFitness"):
    creator.create("EvoFitness", base.Fitness, weights=(-1.0,))
    creator.create("EvoIndividual", gp.PrimitiveTree, fitness=creator.EvoFitness)


def mutate_tree(individual, expr, pset):
    """One of several mutations, chosen at random: uniform subtree, node replacement, shrink, ephemeral."""
    choice = random.random()
    if choice < 0.4:
        return gp.mutUniform(individual, expr=expr, pset=pset)
    if choice < 0.7:
        return gp.mutNodeReplacement(individual, pset=pset)
    if choice < 0.85:
        return gp.mutShrink(individual)
    return gp.mutEphemeral(individual, mode="one")


def build_toolbox(config: SearchConfig) -> tuple[base.Toolbox, gp.PrimitiveSet]:
    pset = build_pset(config.leaves, config.operators, config.powers, config.constants)
    tb = base.Toolbox()
    tb.register("expr", gp.genHalfAndHalf, pset=pset, min_=config.init_min_height, max_=config.init_max_height)
    tb.register("individual", tools.initIterate, creator.EvoIndividual, tb.expr)
    tb.register("population", tools.initRepeat, list, tb.individual)
    tb.register("select", tools.selTournament, tournsize=config.tournament)
    tb.register("mate", gp.cxOnePoint)
    tb.register("expr_mut", gp.genFull, min_=0, max_=2)
    tb.register("mutate", mutate_tree, expr=tb.expr_mut, pset=pset)
    limit_variation(tb, config)
    return tb, pset


def limit_variation(tb: base.Toolbox, config: SearchConfig) -> None:
    """Bloat control on the registered mate and mutate: an offspring over the limits is its parent again."""
    for name in ("mate", "mutate"):
        tb.decorate(name, gp.staticLimit(key=operator.attrgetter("height"), max_value=config.max_height))
        tb.decorate(name, gp.staticLimit(key=len, max_value=config.max_size))
