"""Parse a formula string into sympy WITHOUT evaluating Python: the text goes through `ast` and only a fixed
vocabulary is accepted (leaves, registry operators, numbers, + - * / **). sympify/parse_expr are never used on
user text because they execute it.

Numbers are bounded so that parsing and canonicalisation of any input finish in a fixed time: sympy computes
constant arithmetic exactly (`pow(9, 1e18)` would be an integer of 10^18 digits), so a constant, literal or computed
from constants, must satisfy |c| <= MAX_CONSTANT, and an exponent |e| <= MAX_EXPONENT. A formula string must be
ASCII after NFKC normalisation (fullwidth `Ｗ` becomes `W`); a lone surrogate (undecodable bytes on a command line)
is refused as not UTF-8 text."""

from __future__ import annotations

import ast
import math
import unicodedata
from collections.abc import Mapping

import sympy

from evoprune.errors import EvopruneError
from evoprune.formula.leaves import LEAF_SYMBOLS
from evoprune.formula.operators import OPERATORS

MAX_LENGTH = 4000
# float32's range: a larger constant can only turn every score into inf. Also keeps exact integer arithmetic small.
MAX_CONSTANT = 1e38
# Covers the search's deepest trees (sqr nested max_height=8 times gives W**256) with room to spare; with
# MAX_CONSTANT it caps any one exact power at ~40,000 digits, computed in microseconds.
MAX_EXPONENT = 1024
_ALIASES = {"Abs": "abs"}  # sympy's printer spells abs this way
_BINARY = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div"}


class FormulaError(EvopruneError):
    """A formula string outside the vocabulary (the message names what was refused)."""


def parse_formula(text: str, names: Mapping[str, sympy.Symbol] | None = None) -> sympy.Expr:
    """`names`: the symbols a formula may use (default: the leaves W, X, G, Hinv; an allocation formula uses the
    per-layer descriptors of `descriptors.py`)."""
    names = LEAF_SYMBOLS if names is None else names
    if not isinstance(text, str) or not text.strip():
        raise FormulaError("empty formula")
    if len(text) > MAX_LENGTH:
        raise FormulaError(f"formula longer than {MAX_LENGTH} characters")
    text = _ascii(text)
    try:
        tree = ast.parse(text.strip(), mode="eval")
        return _build(tree.body, names)
    except SyntaxError as exc:
        raise FormulaError(f"formula is not an expression: {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise FormulaError("formula is nested too deeply") from None


def _ascii(text: str) -> str:
    """The formula vocabulary is ASCII; NFKC maps look-alikes (fullwidth, mathematical letters) onto it, as Python
    itself does for identifiers. Anything else is named, never passed on (ast would choke on a surrogate)."""
    for i, char in enumerate(text):
        if 0xD800 <= ord(char) <= 0xDFFF:
            raise FormulaError(f"formula is not UTF-8 text (lone surrogate U+{ord(char):04X} at position {i})")
    if text.isascii():
        return text
    normal = unicodedata.normalize("NFKC", text)
    for i, char in enumerate(normal):
        if not char.isascii():
            raise FormulaError(f"formula holds the non-ASCII character U+{ord(char):04X} at position {i} "
                               "(formulas use leaves, operators, numbers and + - * / ** ( ) ,)")
    return normal


def _bounded(value: float, node: ast.AST, limit: float = MAX_CONSTANT, what: str = "constant") -> float:
    if not math.isfinite(value) or abs(value) > limit:
        raise FormulaError(f"{what} out of range (|{what}| <= {limit:g}): {ast.unparse(node)[:40]}")
    return value


def _check_numbers(expr: sympy.Expr, node: ast.AST) -> sympy.Expr:
    """A number, or the numeric coefficient of a sum or product (sympy keeps it first in `args`), stays within
    MAX_CONSTANT, so the next operation on it computes at most a bounded exact number: checked after every
    operator, whose inputs were all bounded. O(1) a node: a check that walked the tree made long formulas slow."""
    number = expr.args[0] if (expr.is_Add or expr.is_Mul) and expr.args[0].is_Number else expr
    if number.is_Number:
        try:
            magnitude = abs(float(number))
        except OverflowError:  # an exact integer beyond float's range
            magnitude = math.inf
        _bounded(magnitude, node)
    # sympy merges powers, pow(pow(W, 27), 38) = W**1026: the merged exponent is bounded too, so every canonical
    # text re-parses (found by the fuzz in tests/test_hostile_inputs.py).
    for factor in expr.args if expr.is_Mul else (expr,):
        if factor.is_Pow and factor.exp.is_Number:
            _bounded(abs(float(factor.exp)), node, MAX_EXPONENT, "exponent")
    return expr


def _constant(node: ast.AST) -> float | None:
    """A numeric literal, possibly signed; None for anything else."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        try:
            value = float(node.value)
        except OverflowError:
            value = math.inf
        return _bounded(value, node)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _constant(node.operand)
        if inner is not None:
            return -inner if isinstance(node.op, ast.USub) else inner
    return None


def _build(node: ast.AST, names: Mapping[str, sympy.Symbol]) -> sympy.Expr:
    value = _constant(node)
    if value is not None:
        return sympy.Integer(int(value)) if value.is_integer() else sympy.Float(value)
    if isinstance(node, ast.Name):
        if node.id in names:
            return names[node.id]
        raise FormulaError(f"unknown name {node.id!r} (leaves: {', '.join(names)})")
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _build(node.left, names), _build(node.right, names)
        return _check_numbers(OPERATORS[_BINARY[type(node.op)]].sympy(left, right), node)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        return _check_numbers(_power(node.left, node.right, names), node)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return -_build(node.operand, names) if isinstance(node.op, ast.USub) else _build(node.operand, names)
    if isinstance(node, ast.Call):
        return _check_numbers(_call(node, names), node)
    raise FormulaError(f"not allowed in a formula: {type(node).__name__} ({ast.unparse(node)[:40]!r})")


def _exponent(node: ast.AST) -> float:
    """An exponent: a number or + - * / of numbers (so `X**(1/2)` works); never a leaf."""
    value = _constant(node)
    if value is not None:
        return _bounded(value, node, MAX_EXPONENT, "exponent")
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _exponent(node.left), _exponent(node.right)
        if isinstance(node.op, ast.Div) and right == 0:
            raise FormulaError("division by zero in an exponent")
        value = {ast.Add: left + right, ast.Sub: left - right, ast.Mult: left * right}.get(type(node.op))
        value = left / right if value is None else value
        return _bounded(value, node, MAX_EXPONENT, "exponent")
    raise FormulaError(f"exponent must be a number, got {ast.unparse(node)[:40]!r}")


def _power(base: ast.AST, exponent: ast.AST, names: Mapping[str, sympy.Symbol]) -> sympy.Expr:
    return OPERATORS["pow"].sympy(_build(base, names), _exponent(exponent))


def _call(node: ast.Call, names: Mapping[str, sympy.Symbol]) -> sympy.Expr:
    if not isinstance(node.func, ast.Name) or node.keywords:
        raise FormulaError(f"not allowed in a formula: call of {ast.unparse(node.func)[:40]!r}")
    name = _ALIASES.get(node.func.id, node.func.id)
    if name not in OPERATORS:
        raise FormulaError(f"unknown operator {node.func.id!r} (operators: {', '.join(OPERATORS)})")
    op = OPERATORS[name]
    if len(node.args) != op.arity:
        raise FormulaError(f"{name} takes {op.arity} argument(s), got {len(node.args)}")
    if name == "pow":
        return _power(node.args[0], node.args[1], names)
    return op.sympy(*(_build(arg, names) for arg in node.args))
