"""THE operator registry: one entry per operator, with its sympy form, its protected torch form and its cost.

Arithmetic (add, sub, mul, neg, sqr, abs, pow) is native sympy, so sympy can simplify it. Every operator with a
domain problem (x/0, log 0, sqrt of a negative, exp overflow, normalising a constant tensor) is an opaque
`sympy.Function` whose only numeric meaning is its torch implementation here: simplification can never move it
into a NaN-producing form, and search, prune and export share one definition of what it does.

All leaves are broadcast to the weight's shape [out, in] first, so row/column/tensor reductions are unambiguous.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sympy
import torch

EPS = 1e-12  # protection constant: denominators and log arguments never get closer to 0 than this
EXP_MAX = 30.0  # exp(30) ~ 1e13: large, and products of a few such terms stay finite in float32


def _safe_den(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x.abs() < EPS, torch.full_like(x, EPS), x)


def _mms(x: torch.Tensor) -> torch.Tensor:
    lo, hi = x.min(), x.max()
    return (x - lo) / (hi - lo) if hi > lo else torch.zeros_like(x)


def _zscore(x: torch.Tensor) -> torch.Tensor:
    std = x.std(unbiased=False)
    return (x - x.mean()) / std if std > 0 else torch.zeros_like(x)


ELEMENTWISE = ("div", "sqrt", "log", "exp", "tanh")


class _Protected(sympy.Function):
    """An operator sympy keeps opaque. On constant arguments it folds to a number computed by OUR protected
    torch form (without this, sympy would evaluate e.g. log(-0.5) through mpmath and produce a complex number)."""

    @classmethod
    def eval(cls, *args):
        # Reductions of a constant depend on the tensor's shape (rownorm(c) = 1/in), so only elementwise fold.
        if cls.__name__ in ELEMENTWISE and all(a.is_Number for a in args):
            values = [torch.tensor(float(a), dtype=torch.float64) for a in args]
            result = float(OPERATORS[cls.__name__].torch(*values))
            if result == result and abs(result) != float("inf"):
                return sympy.Integer(int(result)) if result.is_integer() else sympy.Float(result)
        return None

    def _eval_evalf(self, prec):  # never let mpmath evaluate a protected operator
        return None


def _opaque(name: str, nargs: int) -> type[sympy.Function]:
    return type(name, (_Protected,), {"nargs": nargs})


@dataclass(frozen=True)
class Operator:
    name: str
    arity: int
    sympy: Callable[..., sympy.Expr]
    torch: Callable[..., torch.Tensor]
    cost: float
    doc: str


_div, _sqrt, _log, _exp, _tanh = (_opaque(n, a) for n, a in
                                  [("div", 2), ("sqrt", 1), ("log", 1), ("exp", 1), ("tanh", 1)])
_mms_f, _zscore_f, _rownorm, _colnorm = (_opaque(n, 1) for n in ("mms", "zscore", "rownorm", "colnorm"))

OPERATORS: dict[str, Operator] = {op.name: op for op in [
    Operator("add", 2, lambda a, b: a + b, torch.add, 1, "a + b"),
    Operator("sub", 2, lambda a, b: a - b, torch.sub, 1, "a - b"),
    Operator("mul", 2, lambda a, b: a * b, torch.mul, 1, "a * b"),
    Operator("div", 2, _div, lambda a, b: a / _safe_den(b), 2, "a / b, with |b| < 1e-12 replaced by 1e-12"),
    Operator("abs", 1, sympy.Abs, torch.abs, 1, "|a|"),
    Operator("neg", 1, lambda a: -a, torch.neg, 1, "-a"),
    Operator("sqr", 1, lambda a: a**2, torch.square, 1, "a²"),
    Operator("sqrt", 1, _sqrt, lambda a: a.abs().sqrt(), 2, "sqrt(|a|)"),
    Operator("log", 1, _log, lambda a: torch.log(a.abs() + EPS), 2, "log(|a| + 1e-12)"),
    Operator("exp", 1, _exp, lambda a: torch.exp(a.clamp(max=EXP_MAX)), 2, "exp(min(a, 30))"),
    Operator("tanh", 1, _tanh, torch.tanh, 2, "tanh(a)"),
    Operator("mms", 1, _mms_f, _mms, 3, "(a - min a) / (max a - min a) over the tensor; 0 if constant"),
    Operator("zscore", 1, _zscore_f, _zscore, 3, "(a - mean a) / std a over the tensor; 0 if constant"),
    Operator("rownorm", 1, _rownorm, lambda a: a / _safe_den(a.abs().sum(dim=1, keepdim=True)), 3,
             "a / Σ_j |a_ij| (each output row over its inputs)"),
    Operator("colnorm", 1, _colnorm, lambda a: a / _safe_den(a.abs().sum(dim=0, keepdim=True)), 3,
             "a / Σ_i |a_ij| (each input column over its outputs)"),
]}


def protected_power(base: torch.Tensor, exponent: float) -> torch.Tensor:
    """pow(a, c) = |a|^c for a constant c; for c < 0 the base is |a| + 1e-12 so 0 maps to a large finite value."""
    if float(exponent).is_integer() and exponent >= 0:
        return base.pow(int(exponent)) if int(exponent) % 2 == 0 else base.abs().pow(int(exponent))
    return (base.abs() + (EPS if exponent < 0 else 0.0)).pow(exponent)


def power_sympy(base: sympy.Expr, exponent: float) -> sympy.Expr:
    """Sympy form of pow: Abs(a)**c (sympy folds Abs(a)**2 to a**2 for real a)."""
    c = sympy.Integer(int(exponent)) if float(exponent).is_integer() else sympy.Float(exponent)
    return sympy.Abs(base) ** c


PROTECTED_BY_NAME: dict[str, type[sympy.Function]] = {
    cls.__name__: cls for cls in (_div, _sqrt, _log, _exp, _tanh, _mms_f, _zscore_f, _rownorm, _colnorm)}
