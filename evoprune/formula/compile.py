"""The ONE compile path: a sympy formula -> a torch function of the leaves, used by search, prune and export
checks alike. A tree walk (not lambdify), so numeric sub-expressions such as sqrt(2) are plain floats and every
protected operator runs its registry definition."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import reduce

import sympy
import torch

from evoprune.formula import protected
from evoprune.formula.canonical import formula_leaves
from evoprune.formula.leaves import LEAF_SYMBOLS
from evoprune.formula.operators import OPERATORS, PROTECTED_BY_NAME

Scorer = Callable[[Mapping[str, torch.Tensor]], torch.Tensor]


def compile_formula(expr: sympy.Expr) -> Scorer:
    """Return `scores(leaves)`: every leaf is broadcast to W's shape first (so row/column/tensor reductions act on
    the full [out, in] matrix), and the result is a float32 tensor shaped like W."""
    missing = {s.name for s in expr.free_symbols} - set(LEAF_SYMBOLS)
    if missing:
        raise ValueError(f"formula uses unknown symbols {sorted(missing)}")
    used = formula_leaves(expr)

    def scores(leaves: Mapping[str, torch.Tensor]) -> torch.Tensor:
        shape = leaves["W"].shape
        env = {name: leaves[name].float().expand(shape) for name in used}
        out = _Walker(env, shape).eval(expr)
        return torch.as_tensor(out, dtype=torch.float32, device=leaves["W"].device).expand(shape)

    return scores


def evaluate_vector(expr: sympy.Expr, env: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """`expr` over same-shaped tensors named by its symbols (e.g. per-layer descriptor vectors), with the registry's
    protected operators; a float32 tensor of that shape (a constant formula gives a constant tensor)."""
    missing = {s.name for s in expr.free_symbols} - set(env)
    if missing:
        raise ValueError(f"formula uses unknown symbols {sorted(missing)}")
    shape = next(iter(env.values())).shape
    return _Walker({k: v.float() for k, v in env.items()}, shape).tensor(expr).float()


def number(expr: sympy.Expr) -> float:
    """A sympy number as a float; beyond float range (10**400 is an exact sympy Integer) it is ±inf."""
    try:
        return float(expr)
    except OverflowError:
        return math.copysign(math.inf, float(sympy.sign(expr)))


class _Walker:
    """Evaluates one expression for one set of leaves; numbers stay Python floats until they meet a tensor."""

    def __init__(self, env: Mapping[str, torch.Tensor], shape: torch.Size) -> None:
        self.env, self.shape = env, shape
        self.device = env["W"].device if "W" in env else None  # constants live where the leaves live (GPU)

    def tensor(self, expr: sympy.Expr) -> torch.Tensor:
        value = self.eval(expr)
        if isinstance(value, torch.Tensor):
            return value.expand(self.shape)
        return torch.full(self.shape, value, dtype=torch.float32, device=self.device)

    def eval(self, expr: sympy.Expr):
        if expr.is_Symbol:
            return self.env[expr.name]
        if expr.is_Number:
            return number(expr)
        if expr.is_Add:
            return reduce(lambda a, b: a + b, (self.eval(a) for a in expr.args))
        if expr.is_Mul:
            return reduce(lambda a, b: a * b, (self.eval(a) for a in expr.args))
        if expr.is_Pow:
            return self.power(*expr.args)
        if isinstance(expr, sympy.Abs):
            return self.tensor(expr.args[0]).abs()
        name = type(expr).__name__
        if name in PROTECTED_BY_NAME:
            return OPERATORS[name].torch(*(self.tensor(a) for a in expr.args))
        if expr.is_number:  # e.g. pi or E, should sympy ever produce them
            return float(expr.evalf())
        raise ValueError(f"cannot compile {name}: {expr}")

    def power(self, base: sympy.Expr, exponent: sympy.Expr) -> torch.Tensor:
        """sympy's own meaning of base**c: a signed power for integer c (W**3 from mul(sqr(W), W) keeps W's
        sign); sympy writes a non-integer power only of a nonnegative base (pow wraps its base in Abs), where
        |b|^c is exact. Negative exponents divide with div's protection at 0."""
        if not exponent.is_Number:
            raise ValueError(f"non-constant exponent {exponent}")
        c = float(exponent)
        if c.is_integer():
            return protected.int_power(self.tensor(base), int(c))
        return protected.power(self.tensor(base), c)
