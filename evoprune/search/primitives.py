"""DEAP's GP representation built from THE operator registry, and conversion between trees and sympy.

DEAP only varies trees; it never evaluates them (primitives get inert placeholder functions). Meaning comes from
sympy through the registry, so search, prune and export share one definition of every operator.
"""

from __future__ import annotations

import math
import random
import re
from functools import partial

import sympy
from deap import gp

from evoprune.formula.canonical import normalize_numbers
from evoprune.formula.compile import number
from evoprune.formula.descriptors import DESCRIPTOR_SYMBOLS
from evoprune.formula.leaves import LEAF_SYMBOLS
from evoprune.formula.operators import OPERATORS


class NotExpressible(ValueError):
    """A sympy expression that the configured primitive set cannot write as a tree."""


_TOKENS = re.compile(r"[\s(),]+")


def _inert(*_args):
    raise RuntimeError("GP trees are converted through sympy, never called")


def power_name(c: float) -> str:
    """The unary primitive for pow(a, c): pow0p5, pow1p5, powm1 (DEAP names must be identifiers)."""
    return "pow" + str(float(c)).replace(".", "p").replace("-", "m").removesuffix("p0")


def build_pset(leaves, operators, powers, constants) -> gp.PrimitiveSet:
    """Terminals: the leaves (renamed arguments) and one ephemeral drawing from `constants`; primitives: the
    registry operators, plus one unary `pow<c>` per exponent (the registry's pow with that constant)."""
    pset = gp.PrimitiveSet("MAIN", len(leaves))
    pset.renameArguments(**{f"ARG{i}": name for i, name in enumerate(leaves)})
    for name in operators:
        pset.addPrimitive(_inert, OPERATORS[name].arity, name=name)
    for c in powers:
        pset.addPrimitive(_inert, 1, name=power_name(c))
    if constants:
        # Plain Python floats (numpy floats print as np.float64(...) and break string round trips).
        # DEAP 1.4 keys ephemerals per primitive set, so one name serves every set.
        pset.addEphemeralConstant("const", partial(random.choice, [float(c) for c in constants]))
    pset.powers = {power_name(c): float(c) for c in powers}
    return pset


def tree_from_string(text: str, pset: gp.PrimitiveSet) -> gp.PrimitiveTree:
    """Read a tree printed by `str(tree)`. Unlike `PrimitiveTree.from_string` it never `eval`s a token (the text
    comes from a run directory on disk), and numbers come back as the pset's ephemeral constants (DEAP makes them
    plain terminals, which `mutEphemeral` then skips: a resumed run would diverge). Consumes no randomness."""
    ephemeral = next((t for t in pset.terminals[pset.ret] if isinstance(t, gp.MetaEphemeral)), None)
    nodes, open_slots = [], 1
    for token in filter(None, _TOKENS.split(text)):
        if open_slots == 0:
            raise NotExpressible(f"trailing tokens in tree {text[:60]!r}")
        node = pset.mapping.get(token)
        if node is None:
            node = _constant_node(token, ephemeral)
        nodes.append(node)
        open_slots += getattr(node, "arity", 0) - 1
    if open_slots != 0 or not nodes:
        raise NotExpressible(f"incomplete tree {text[:60]!r}")
    return gp.PrimitiveTree(nodes)


def _constant_node(token: str, ephemeral):
    try:
        value = float(token)
    except ValueError:
        raise NotExpressible(f"unknown token {token[:30]!r} in a tree") from None
    if not math.isfinite(value):
        raise NotExpressible(f"non-finite constant {token!r} in a tree")
    if ephemeral is None:
        return gp.Terminal(value, False, object)
    constant = ephemeral.__new__(ephemeral)  # skips __init__, which would draw a new random value
    constant.value = value
    return constant


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
            return OPERATORS["pow"].sympy(args[0], pset.powers[node.name])
        return OPERATORS[node.name].sympy(*args)
    name = node.value if isinstance(node.value, str) else None  # renamed argument: readable name in .value
    if name in LEAF_SYMBOLS:
        return LEAF_SYMBOLS[name]
    if name in DESCRIPTOR_SYMBOLS:  # an allocation tree's terminals
        return DESCRIPTOR_SYMBOLS[name]
    return sympy.Float(float(node.value)) if not float(node.value).is_integer() else sympy.Integer(int(node.value))


def sympy_to_tree(expr: sympy.Expr, pset: gp.PrimitiveSet) -> gp.PrimitiveTree:
    """A tree with the same meaning as `expr` (for seeding); NotExpressible if the primitives cannot write it."""
    return tree_from_string(_prefix(expr, pset), pset)


def _prefix(expr: sympy.Expr, pset) -> str:
    prims = {p.name for ps in pset.primitives.values() for p in ps}
    if expr.is_Symbol:
        return expr.name
    if expr.is_Number:
        value = number(expr)
        if not math.isfinite(value):
            raise NotExpressible(f"constant {expr} is beyond float range")
        return repr(value)
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
    """base**e as a tree with the same meaning (compile.py: integer powers are signed, others are of |base|)."""
    e = float(exponent)
    absolute = isinstance(base, sympy.Abs) or bool(base.is_nonnegative) or (e.is_integer() and e % 2 == 0)
    inner = base.args[0] if isinstance(base, sympy.Abs) else base
    for name, c in pset.powers.items():
        if e == c and absolute:  # pow<c>(a) = |a|^c
            return f"{name}({_prefix(inner, pset)})"
    if e == 1:
        return _prefix(base, pset)
    if e == 2 and "sqr" in prims:
        return f"sqr({_prefix(base, pset)})"
    if e == 0.5 and absolute and "sqrt" in prims:
        return f"sqrt({_prefix(inner, pset)})"
    if e.is_integer() and e > 2 and "mul" in prims:
        return f"mul({_power_prefix(base, sympy.Integer(int(e) - 1), pset, prims)}, {_prefix(base, pset)})"
    if e < 0 and "div" in prims:
        positive = sympy.Integer(int(-e)) if e.is_integer() else sympy.Float(-e)
        return f"div(1.0, {_power_prefix(base, positive, pset, prims)})"
    raise NotExpressible(f"power {exponent} not in the primitive set")
