"""THE operator registry: one entry per operator, with its sympy form, its protected torch form and its cost.

Arithmetic (add, sub, mul, neg, sqr, abs, pow) is native sympy, so sympy can simplify it. Every operator with a
domain problem (x/0, log 0, sqrt of a negative, exp overflow, normalising a constant tensor) is an opaque
`sympy.Function` whose only numeric meaning is its torch implementation in `protected.py`: simplification can
never move it into a NaN-producing form, and search, prune and export share one definition of what it does.

All leaves are broadcast to the weight's shape [out, in] before an operator runs, so row/column/tensor
reductions are unambiguous (colnorm(X) therefore divides by `out` copies of X_j).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sympy
import torch

from evoprune.formula import protected
from evoprune.formula.protected import EPS

ELEMENTWISE = ("div", "sqrt", "log", "exp", "tanh")  # protected ops that may fold on numeric arguments


def _fold(value: float) -> sympy.Expr | None:
    if value != value or abs(value) == float("inf"):
        return None
    return sympy.Integer(int(value)) if value.is_integer() else sympy.Float(value)


class _Protected(sympy.Function):
    """An operator sympy keeps opaque. On constant arguments it folds to a number computed by OUR protected
    torch form (without this, sympy would evaluate e.g. log(-0.5) through mpmath and produce a complex number)."""

    @classmethod
    def eval(cls, *args):
        name = cls.__name__
        # Reductions of a constant depend on the tensor's shape (rownorm(c) = 1/in), so only elementwise fold.
        if name in ELEMENTWISE and all(a.is_Number for a in args):
            values = [torch.tensor(float(a), dtype=torch.float64) for a in args]
            return _fold(float(OPERATORS[name].torch(*values)))
        if name == "div" and args[1].is_Number and abs(float(args[1])) >= EPS:
            return args[0] / args[1]  # a nonzero constant denominator is plain division: 2*W/4 folds to W/2
        return None

    def _eval_evalf(self, prec):  # never let mpmath evaluate a protected operator
        return None


NONNEGATIVE = ("sqrt", "exp", "mms")  # exp too: float32 may underflow it to 0


def _opaque(name: str, nargs: int) -> type[sympy.Function]:
    # Real-valued (and for some nonnegative), so sympy folds Abs(mms(G))**2 to mms(G)**2 and |sqrt(a)| to sqrt(a)
    assumptions = {"is_real": True} | ({"is_nonnegative": True} if name in NONNEGATIVE else {})
    return type(name, (_Protected,), {"nargs": nargs, **assumptions})


def power_sympy(base: sympy.Expr, exponent: float | sympy.Expr) -> sympy.Expr:
    """Sympy form of pow(a, c) = |a|^c (sympy folds Abs(a)**2 to a**2 for real a). A numeric base folds through
    the protected torch form, so 0**-1 is a large finite number, never sympy's complex infinity."""
    c = float(exponent)
    if base.is_Number:
        folded = _fold(float(protected.power(torch.tensor(float(base), dtype=torch.float64), c)))
        if folded is not None:
            return folded
    return sympy.Abs(base) ** (sympy.Integer(int(c)) if c.is_integer() else sympy.Float(c))


@dataclass(frozen=True)
class Operator:
    """`constant_args`: argument positions that must be numeric constants (pow's exponent)."""

    name: str
    arity: int
    sympy: Callable[..., sympy.Expr]
    torch: Callable[..., torch.Tensor]
    cost: float
    doc: str
    constant_args: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        validate_operator(self)


_EDGE_INPUTS = {"zeros": torch.zeros(2, 3), "negatives": torch.full((2, 3), -4.0),
                "mixed": torch.tensor([[0.0, -1e-30, 3.0], [-2.5, 7.0, 1e-3]]),
                "huge": torch.tensor([[1e30, -1e30, 0.0], [3.0, -2.0, 1e30]])}
OVERFLOWS = ("add", "sub", "mul", "div", "sqr", "exp", "pow")  # may reach ±inf on huge inputs, by definition


def validate_operator(op: Operator) -> None:
    """gplearn-style check on creation: the right arity, W's shape out, finite on zeros and negatives, never NaN
    (huge inputs may overflow to inf only for the operators that overflow by definition)."""
    symbols = sympy.symbols(f"a0:{op.arity}", real=True)
    args = [sympy.Float(0.5) if i in op.constant_args else s for i, s in enumerate(symbols)]
    if not isinstance(op.sympy(*args), sympy.Expr):
        raise TypeError(f"operator {op.name}: sympy form is not an expression")
    for label, x in _EDGE_INPUTS.items():
        for const in (0.5, -1.0, 2.0) if op.constant_args else (None,):
            inputs = [const if i in op.constant_args else (x if i == 0 else x.flip(1)) for i in range(op.arity)]
            out = op.torch(*inputs)
            if out.shape != x.shape:
                raise ValueError(f"operator {op.name}: shape {tuple(out.shape)} on {label}, expected {tuple(x.shape)}")
            may_overflow = label == "huge" and op.name in OVERFLOWS
            if torch.isnan(out).any() or not (may_overflow or torch.isfinite(out).all()):
                raise ValueError(f"operator {op.name}: non-finite output on {label} inputs")


_div, _sqrt, _log, _exp, _tanh = (_opaque(n, a) for n, a in
                                  [("div", 2), ("sqrt", 1), ("log", 1), ("exp", 1), ("tanh", 1)])
_mms, _zscore, _rownorm, _colnorm = (_opaque(n, 1) for n in ("mms", "zscore", "rownorm", "colnorm"))

OPERATORS: dict[str, Operator] = {op.name: op for op in [
    Operator("add", 2, lambda a, b: a + b, torch.add, 1, "a + b"),
    Operator("sub", 2, lambda a, b: a - b, torch.sub, 1, "a - b"),
    Operator("mul", 2, lambda a, b: a * b, torch.mul, 1, "a * b"),
    Operator("div", 2, _div, protected.div, 2, f"a / b, with |b| < {EPS:g} replaced by {EPS:g}"),
    Operator("abs", 1, sympy.Abs, torch.abs, 1, "|a|"),
    Operator("neg", 1, lambda a: -a, torch.neg, 1, "-a"),
    Operator("sqr", 1, lambda a: a**2, torch.square, 1, "a²"),
    Operator("sqrt", 1, _sqrt, protected.sqrt, 2, "sqrt(|a|)"),
    Operator("log", 1, _log, protected.log, 2, f"log(|a| + {EPS:g})"),
    Operator("exp", 1, _exp, protected.exp, 2, f"exp(min(a, {protected.EXP_MAX:g}))"),
    Operator("tanh", 1, _tanh, torch.tanh, 2, "tanh(a)"),
    Operator("mms", 1, _mms, protected.mms, 3, "(a - min a) / (max a - min a) over the tensor; 0 if constant"),
    Operator("zscore", 1, _zscore, protected.zscore, 3, "(a - mean a) / std a over the tensor; 0 if constant"),
    Operator("rownorm", 1, _rownorm, protected.rownorm, 3, "a / Σ_j |a_ij| (each output row over its inputs)"),
    Operator("colnorm", 1, _colnorm, protected.colnorm, 3, "a / Σ_i |a_ij| (each input column over its outputs)"),
    Operator("pow", 2, power_sympy, protected.power, 2, "|a|^c for a constant c (c < 0: 1/|a|^-c, protected at 0)",
             constant_args=(1,)),
]}

PROTECTED_BY_NAME: dict[str, type[sympy.Function]] = {
    cls.__name__: cls for cls in (_div, _sqrt, _log, _exp, _tanh, _mms, _zscore, _rownorm, _colnorm)}
