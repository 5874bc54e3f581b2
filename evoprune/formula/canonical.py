"""Canonical text, size and leaves of a formula. The canonical string is the search's cache key: two formulas
that sympy writes the same way are evaluated once."""

from __future__ import annotations

import sympy
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.str import StrPrinter


def normalize_numbers(expr: sympy.Expr) -> sympy.Expr:
    """Integer-valued floats become integers and fractions become floats, so 1.0 and 1, 1/2 and 0.5 give one
    canonical form (and the text never holds a `1/2` that would re-parse as a protected division)."""
    expr = expr.replace(lambda e: e.is_Float and float(e).is_integer(), lambda e: sympy.Integer(int(e)))
    return expr.replace(lambda e: e.is_Rational and not e.is_Integer, lambda e: sympy.Float(float(e)))


class _CanonicalPrinter(StrPrinter):
    """sympy's str, except a signed odd power: in the formula language `a**c` is pow, |a|^c, so sympy's W**3
    (from W·W·W) would re-parse as |W|^3. It is written W*W**2 instead, which re-parses to W**3 exactly."""

    def _print_Pow(self, expr, rational=False):
        base, exp = expr.args
        if exp.is_Integer and int(exp) % 2 and abs(int(exp)) > 1 and base.is_nonnegative is not True:
            even = sympy.Pow(base, exp - 1, evaluate=False)
            return f"{self.parenthesize(base, PRECEDENCE['Mul'])}*{super()._print_Pow(even, rational)}"
        return super()._print_Pow(expr, rational)


def canonical_string(expr: sympy.Expr) -> str:
    """Deterministic, re-parseable text of the expression (sympy's own ordering of commutative arguments)."""
    return _CanonicalPrinter({"order": "lex"}).doprint(normalize_numbers(expr))


def formula_leaves(expr: sympy.Expr) -> frozenset[str]:
    return frozenset(s.name for s in expr.free_symbols)


def formula_size(expr: sympy.Expr) -> int:
    """Number of nodes in sympy's expression tree (leaves, constants and operators): |W|·X has 4."""
    return sum(1 for _ in sympy.preorder_traversal(expr))
