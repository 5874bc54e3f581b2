"""DEAP's GP representation built from THE operator registry, and conversion between trees and sympy.

DEAP only varies trees; it never evaluates them (primitives get inert placeholder functions). Meaning comes from
sympy through the registry, so search, prune and export share one definition of every operator.
"""

from __future__ import annotations

import itertools
import random
from functools import partial

import sympy
from deap import gp

from evoprune.formula.compile import normalize_numbers
from evoprune.formula.leaves import LEAF_SYMBOLS
from evoprune.formula.operators import OPERATORS, power_sympy

_counter = itertools.count()


def _inert(*_args):
    raise RuntimeError("GP trees are converted through sympy, never called")


def power_name(c: float) -> str:
    return "pow" + str(c).replace(".", "p").replace("-", "m")


def build_pset(leaves, operators, powers, constants) -> gp.PrimitiveSet:
    pset = gp.PrimitiveSet("MAIN", len(leaves))
    pset.renameArguments(**{f"ARG{i}": name for i, name in enumerate(leaves)})
    for name in operators:
        pset.addPrimitive(_inert, OPERATORS[name].arity, name=name)
    for c in powers:
        pset.addPrimitive(_inert, 1, name=power_name(c))
    if constants:
        # Plain Python floats (numpy floats print as np.float64(...) and break string round trips).
        pset.addEphemeralConstant(f"const{next(_counter)}", partial(random.choice, [float(c) for c in constants]))
    pset.powers = {power_name(c): float(c) for c in powers}
    return pset


def tree_from_string(text: str, pset: gp.PrimitiveSet) -> gp.PrimitiveTree:
    """`PrimitiveTree.from_string`, but numeric terminals come back as the pset's ephemeral constants (DEAP makes
    them plain terminals, which `mutEphemeral` then skips: a resumed run would diverge). Consumes no randomness."""
    tree = gp.PrimitiveTree.from_string(text, pset)
    ephemerals = [t for t in pset.terminals[pset.ret] if isinstance(t, gp.MetaEphemeral)]
    if not ephemerals:
        return tree
    cls = ephemerals[0]
    for i, node in enumerate(tree):
        if isinstance(node, gp.Terminal) and not isinstance(node.value, str):
            constant = cls.__new__(cls)  # skips __init__, which would draw a new random value
            constant.value = node.value
            tree[i] = constant
    return tree


def tree_to_sympy(tree: gp.PrimitiveTree, pset: gp.PrimitiveSet) -> sympy.Expr:
    stack: list[tuple[object, list]] = []
    result = None
    for node in tree:
        stack.append((node, []))
        while stack and len(stack[-1][1]) == stack[-1][0].arity:
            node, args = stack.pop()
            value = _node_to_sympy(node, args, pset)
            if not stack:
                result = normalize_numbers(value)
                break
            stack[-1][1].append(value)
    return result


def _node_to_sympy(node, args, pset) -> sympy.Expr:
    if isinstance(node, gp.Primitive):
        if node.name in pset.powers:
            return power_sympy(args[0], pset.powers[node.name])
        return OPERATORS[node.name].sympy(*args)
    name = node.value if isinstance(node.value, str) else None  # renamed argument: readable name in .value
    if name in LEAF_SYMBOLS:
        return LEAF_SYMBOLS[name]
    return sympy.Float(float(node.value)) if not float(node.value).is_integer() else sympy.Integer(int(node.value))


class NotExpressible(ValueError):
    """A sympy expression that the configured primitive set cannot write as a tree."""


def sympy_to_tree(expr: sympy.Expr, pset: gp.PrimitiveSet) -> gp.PrimitiveTree:
    return gp.PrimitiveTree.from_string(_prefix(expr, pset), pset)


def _prefix(expr: sympy.Expr, pset) -> str:
    prims = {p.name for ps in pset.primitives.values() for p in ps}
    if expr.is_Symbol:
        return expr.name
    if expr.is_Number:
        return repr(float(expr))
    if expr.is_Add or expr.is_Mul:
        op = "add" if expr.is_Add else "mul"
        if op not in prims:
            raise NotExpressible(f"{op} not in the primitive set")
        parts = [_prefix(a, pset) for a in expr.args]
        out = parts[0]
        for part in parts[1:]:
            out = f"{op}({out}, {part})"
        return out
    if expr.is_Pow:
        return _power_prefix(expr.args[0], expr.args[1], pset, prims)
    name = "abs" if isinstance(expr, sympy.Abs) else type(expr).__name__
    if name not in prims:
        raise NotExpressible(f"{name} not in the primitive set")
    return f"{name}({', '.join(_prefix(a, pset) for a in expr.args)})"


def _power_prefix(base, exponent, pset, prims) -> str:
    inner = base.args[0] if isinstance(base, sympy.Abs) else base
    e = float(exponent)
    for name, c in pset.powers.items():
        if e == c:
            return f"{name}({_prefix(inner, pset)})"
    if e == 1:
        return _prefix(base, pset)
    if e == 2 and "sqr" in prims:
        return f"sqr({_prefix(base, pset)})"
    if e.is_integer() and e > 2 and "mul" in prims:
        return f"mul({_power_prefix(base, sympy.Integer(int(e) - 1), pset, prims)}, {_prefix(base, pset)})"
    if e == -1 and "div" in prims:
        return f"div(1.0, {_prefix(base, pset)})"
    raise NotExpressible(f"power {exponent} not in the primitive set")
