"""Printers for export: standalone Python source (torch only, every protected operator written inline, one line
per node), LaTeX, and a pretty unicode form for terminals. The Python source computes exactly what
`compile_formula` computes (same operations in the same order; a test checks it)."""

from __future__ import annotations

import math

import sympy
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter

from evoprune.formula.canonical import canonical_string, normalize_numbers
from evoprune.formula.compile import number
from evoprune.formula.leaves import LEAVES
from evoprune.formula.protected import EPS, EXP_MAX

_DEN = "torch.where({0}.abs() < {eps!r}, torch.full_like({0}, {eps!r}), {0})"
# The protected semantics of `protected.py`, as source: `{0}` is the argument's variable; `{d}` a spare name.
PROTECTED_SOURCE = {
    "div": ["{d} = " + _DEN.replace("{0}", "{1}"), "{0} / {d}"],
    "sqrt": ["{0}.abs().sqrt()"],
    "log": ["torch.log({0}.abs() + {eps!r})"],
    "exp": ["torch.exp({0}.clamp(max={exp_max!r}))"],
    "tanh": ["torch.tanh({0})"],
    "mms": ["torch.where({0}.max() > {0}.min(), ({0} - {0}.min()) / ({0}.max() - {0}.min()), "
            "torch.zeros_like({0}))"],
    "zscore": ["torch.where({0}.std(unbiased=False) > 0, ({0} - {0}.mean()) / {0}.std(unbiased=False), "
               "torch.zeros_like({0}))"],
    "rownorm": ["{d} = {0}.abs().sum(dim=-1, keepdim=True)", "{0} / " + _DEN.replace("{0}", "{d}")],
    "colnorm": ["{d} = {0}.abs().sum(dim=0, keepdim=True)", "{0} / " + _DEN.replace("{0}", "{d}")],
}


def _literal(expr: sympy.Expr) -> str:
    value = number(expr)
    return repr(value) if math.isfinite(value) else f"float('{value}')"


class _SourceWriter:
    """Post-order walk emitting `tN = ...` lines; identical sub-expressions are written once."""

    def __init__(self, ref: str = "W") -> None:
        self.lines: list[str] = []
        self.names: dict[sympy.Expr, str] = {}
        self.ref = ref  # the variable whose device constants are created on

    def fresh(self) -> str:
        return f"t{len(self.lines)}"

    def emit(self, expr: sympy.Expr, code: str) -> str:
        name = self.fresh()
        self.lines.append(f"    {name} = {code}")
        self.names[expr] = name
        return name

    def name(self, expr: sympy.Expr) -> str:
        if expr in self.names:
            return self.names[expr]
        if expr.is_Symbol:
            return expr.name
        if expr.is_Number:
            return self.emit(expr, f"torch.full(shape, {_literal(expr)}, device={self.ref}.device)")
        return self.node(expr)

    def node(self, expr: sympy.Expr) -> str:
        if expr.is_Add or expr.is_Mul:
            op = " + " if expr.is_Add else " * "
            return self.emit(expr, op.join(_literal(a) if a.is_Number else self.name(a) for a in expr.args))
        if isinstance(expr, sympy.Abs):
            return self.emit(expr, f"{self.name(expr.args[0])}.abs()")
        if expr.is_Pow:
            return self.power(expr)
        template = PROTECTED_SOURCE.get(type(expr).__name__)
        if template is None:
            raise ValueError(f"cannot print {type(expr).__name__}: {expr}")
        args = [self.name(a) for a in expr.args]
        if len(template) == 2:
            spare = self.fresh()
            self.lines.append("    " + template[0].format(*args, d=spare, eps=EPS))
            return self.emit(expr, template[1].format(*args, d=spare, eps=EPS))
        return self.emit(expr, template[0].format(*args, eps=EPS, exp_max=EXP_MAX))

    def power(self, expr: sympy.Expr) -> str:
        base, c = self.name(expr.args[0]), float(expr.args[1])
        if c.is_integer():  # signed, as sympy means it (compile.py: protected.int_power)
            powered = self.emit(sympy.Dummy(), f"{base}.pow({abs(int(c))})")
        else:  # only ever of a nonnegative base (compile.py: protected.power)
            powered = self.emit(sympy.Dummy(), f"{base}.abs().pow({abs(c)!r})")
        if c >= 0:
            self.names[expr] = powered
            return powered
        spare = self.fresh()
        self.lines.append("    " + f"{spare} = " + _DEN.format(powered, eps=EPS))
        return self.emit(expr, f"torch.ones_like({powered}) / {spare}")


def to_python_source(expr: sympy.Expr, name: str = "score") -> str:
    """A standalone module: `score(W, X, G, Hinv)` -> a float32 tensor shaped like W (needs torch only)."""
    expr = normalize_numbers(expr)
    writer = _SourceWriter()
    result = writer.name(expr)
    header = [f"def {name}(W, X=None, G=None, Hinv=None):",
              f'    """Pruning scores (higher = keep) for {canonical_string(expr)}"""',
              "    shape = W.shape",
              "    W = W.float()"]
    for leaf in sorted(s.name for s in expr.free_symbols if s.name != "W"):
        header.append(f"    {leaf} = {leaf}.float().expand(shape)  # {LEAVES[leaf].shape}: broadcast to W's shape")
    body = writer.lines + [f"    return {result}.float().expand(shape)"]
    return "\n".join(["import torch", "", "", *header, *body]) + "\n"


def to_python_vector_source(expr: sympy.Expr, args: tuple[str, ...], name: str) -> str:
    """A function `name(*args)` of same-shaped float tensors (e.g. per-layer descriptor vectors) computing `expr`
    with the same protected operations as `compile.evaluate_vector`; torch only. Returned without the import."""
    expr = normalize_numbers(expr)
    writer = _SourceWriter(ref="ref")
    result = writer.name(expr)
    header = [f"def {name}({', '.join(args)}):",
              f'    """Per-layer values of {canonical_string(expr)}"""',
              f"    ref = {args[0]}",
              "    shape = ref.shape"]
    header += [f"    {arg} = {arg}.float()" for arg in args]
    return "\n".join([*header, *writer.lines, f"    return {result}.float().expand(shape)"]) + "\n"


# LaTeX of the protected operators as their math ("@" stands for the argument); the others print by name.
_LATEX = {"sqrt": r"\sqrt{\left|@\right|}", "log": r"\log\left|@\right|", "exp": r"e^{@}",
          "tanh": r"\tanh\left(@\right)"}


class _Latex(LatexPrinter):
    def _print_Function(self, expr, exp=None):
        # sympy would read the suffix of rownorm/colnorm as a ‖·‖ modifier; write every name as it is
        name = type(expr).__name__
        args = [self._print(a) for a in expr.args]
        if name == "div":
            text = r"\frac{" + args[0] + "}{" + args[1] + "}"
        elif name in _LATEX:
            text = _LATEX[name].replace("@", args[0])
        else:
            text = r"\operatorname{" + name + r"}\left(" + ", ".join(args) + r"\right)"
        return text if exp is None else "{" + text + "}^{" + exp + "}"

    def _print_Symbol(self, expr, style="plain"):
        return r"H^{-1}" if expr.name == "Hinv" else super()._print_Symbol(expr, style)


for _name in PROTECTED_SOURCE:  # LatexPrinter has its own _print_log, _print_exp, ... for sympy's functions
    setattr(_Latex, f"_print_{_name}", _Latex._print_Function)


def to_latex(expr: sympy.Expr) -> str:
    """LaTeX; protected operators are written as their math (their protection is documented in the registry)."""
    return _Latex().doprint(normalize_numbers(expr))


class _Text(StrPrinter):
    def _print_Abs(self, expr):
        return f"|{self._print(expr.args[0])}|"


def to_text(expr: sympy.Expr) -> str:
    """A one-line unicode rendering for terminals and tables: |W|·X^0.5 (not re-parseable; use canonical_string)."""
    text = _Text({"order": "lex"}).doprint(normalize_numbers(expr))
    return text.replace("**", "^").replace("*", "·")
