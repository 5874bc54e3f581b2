"""The recipe part of an exported module: the stage choices as constants and `layer_sparsity(...)`, the per-layer
sparsity of the recipe's allocation (uniform, or an evolved formula over per-layer descriptors), torch only.

`layer_sparsity` returns the fractions before evoprune's budget step: `allocation.exact_counts` shifts every layer
by one common constant and rounds so that the pruned total is exactly the target (each layer in [0, 0.99]); the
docstring says so. `evoprune prune --metric THIS_FILE.py` applies the whole recipe (RECIPE below).
"""

from __future__ import annotations

import inspect
import pprint

from evoprune.errors import EvopruneError
from evoprune.formula.descriptors import DESCRIPTOR_SYMBOLS, DESCRIPTORS
from evoprune.formula.parse import parse_formula
from evoprune.formula.printing import to_python_vector_source
from evoprune.prune.allocation_tree import TREE_DELTA, normalised_ranks
from evoprune.prune.recipe import Recipe

# the exported module ranks exactly as evoprune does: the same function's source, not a copy of it
_RANKS = inspect.getsource(normalised_ranks).replace("def normalised_ranks(", "def _normalised_ranks(", 1)


def _descriptor_doc() -> str:
    return "\n".join(f"        {name:<8} {doc}" for name, doc in DESCRIPTORS.items())


def recipe_source(recipe: Recipe) -> str:
    """Constants RECIPE, ALLOCATION, REFINE, UPDATE and the function layer_sparsity(descriptors, target)."""
    allocation = recipe.allocation
    head = ["# The recipe around the score: `evoprune prune --metric THIS_FILE.py` applies every stage.",
            "RECIPE = " + pprint.pformat(recipe.to_dict(), sort_dicts=False),
            f"ALLOCATION = {str(allocation)!r}",
            f"REFINE = {str(recipe.refine)!r}  # none, or swaps: greedy 1-swaps lowering each row's error",
            f"UPDATE = {str(recipe.update)!r}  # none; obs: SparseGPT's column sweep over the fixed mask; sweep: the "
            "score picks the mask inside that sweep (its Hinv there: the sweep's own diagonal)", ""]
    doc = ['    """Per-layer sparsity (1-D tensor, model order) of ALLOCATION at the global `target`.',
           "",
           "    `descriptors` maps each name below to a 1-D tensor over the prunable layers (model order):",
           _descriptor_doc(),
           "    evoprune then shifts every layer by one common constant and rounds (allocation.exact_counts) so the",
           "    pruned total is exactly target x all weights, each layer in [0, 0.99]; these are the values before",
           '    that step."""']
    if allocation.name == "uniform":
        body = ["    first = next(iter(descriptors.values()))",
                "    return torch.full(first.shape, float(target), dtype=torch.float64)"]
        return "\n".join([*head, "", "def layer_sparsity(descriptors, target):", *doc, *body]) + "\n"
    if allocation.name != "tree":
        raise EvopruneError(f"export writes uniform and tree allocations; {allocation.name} is not a formula")
    names = tuple(DESCRIPTORS)
    values = to_python_vector_source(parse_formula(allocation.expr, DESCRIPTOR_SYMBOLS), names, "_layer_values")
    delta = allocation.get("delta", TREE_DELTA)
    body = [f"    values = _layer_values(**{{name: descriptors[name] for name in {names!r}}})",
            "    if not torch.isfinite(values).all():",
            '        raise ValueError("the allocation formula is not finite on every layer")',
            f"    return float(target) + {delta!r} * (1 - 2 * _normalised_ranks(values))"]
    return "\n".join([*head, f"ALLOCATION_DELTA = {delta!r}", "", "", values, "", _RANKS, "",
                      "def layer_sparsity(descriptors, target):", *doc, *body]) + "\n"
