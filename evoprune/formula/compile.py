"""The ONE compile path: a sympy formula -> a torch function of the leaves. Used by search, prune and export
checks alike. A tree walk (not lambdify) so numeric sub-expressions such as sqrt(2) are plain floats."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import reduce

import sympy
import torch

from evoprune.formula.leaves import LEAF_SYMBOLS
from evoprune.formula.operators import OPERATORS, PROTECTED_BY_NAME, protected_power

_SHAPE = "__shape__"  # the weight's shape travels in the environment under a name no leaf can have
Scorer = Callable[[Mapping[str, torch.Tensor]], torch.Tensor]


def compile_formula(expr: sympy.Expr) -> Scorer:
    """Return `scores(leaves)`: leaves are broadcast to W's shape, the result is a float tensor shaped like W."""
    missing = {s.name for s in expr.free_symbols} - set(LEAF_SYMBOLS)
    if missing:
        raise ValueError(f"formula uses unknown symbols {sorted(missing)}")

    def scores(leaves: Mapping[str, torch.Tensor]) -> torch.Tensor:
        shape = leaves["W"].shape
        env = {name: leaves[name].float().expand(shape) for name in formula_leaves(expr)}
        env[_SHAPE] = shape
        out = _eval(expr, env)
        return torch.as_tensor(out, dtype=torch.float32).expand(shape)

    return scores


def _eval(expr: sympy.Expr, env: Mapping[str, torch.Tensor]):
    if expr.is_Symbol:
        return env[expr.name]
    if expr.is_Number:
        return float(expr)
    if expr.is_Add:
        return reduce(lambda a, b: a + b, (_eval(a, env) for a in expr.args))
    if expr.is_Mul:
        return reduce(lambda a, b: a * b, (_eval(a, env) for a in expr.args))
    if expr.is_Pow:
        base, exponent = expr.args
        if not exponent.is_Number:
            raise ValueError(f"non-constant exponent in {expr}")
        value = _eval(base, env)
        if exponent == -1:  # x**-1 comes from sympy folding, e.g. 1/abs(x): keep it protected like div
            return OPERATORS["div"].torch(torch.ones_like(torch.as_tensor(value)), torch.as_tensor(value))
        return protected_power(torch.as_tensor(value), float(exponent))
    if isinstance(expr, sympy.Abs):
        return torch.as_tensor(_eval(expr.args[0], env)).abs()
    name = type(expr).__name__
    if name in PROTECTED_BY_NAME:  # broadcast to W's shape: reductions are defined on the full matrix
        args = [torch.as_tensor(_eval(a, env), dtype=torch.float32).expand(env[_SHAPE]) for a in expr.args]
        return OPERATORS[name].torch(*args)
    if expr.is_Number or expr.is_number:
        return float(expr.evalf())
    raise ValueError(f"cannot compile {type(expr).__name__}: {expr}")


def formula_leaves(expr: sympy.Expr) -> frozenset[str]:
    return frozenset(s.name for s in expr.free_symbols)


def formula_size(expr: sympy.Expr) -> int:
    """Number of nodes in the expression tree (leaves, constants and operators)."""
    return sum(1 for _ in sympy.preorder_traversal(expr))


def normalize_numbers(expr: sympy.Expr) -> sympy.Expr:
    """Integer-valued floats become integers, so 1.0 and 1 give one canonical form."""
    return expr.replace(lambda e: e.is_Float and float(e).is_integer(), lambda e: sympy.Integer(int(e)))


def canonical_string(expr: sympy.Expr) -> str:
    """Deterministic, re-parseable text of the expression (sympy's own ordering of commutative arguments)."""
    return sympy.sstr(normalize_numbers(expr), order="lex")
