"""Parse a formula string into sympy WITHOUT evaluating Python: the text goes through `ast` and only a fixed
vocabulary is accepted (leaves, registry operators, numbers, + - * / **). sympify/parse_expr are never used on
user text because they execute it."""

from __future__ import annotations

import ast
import math

import sympy

from evoprune.errors import EvopruneError
from evoprune.formula.leaves import LEAF_SYMBOLS
from evoprune.formula.operators import OPERATORS

MAX_LENGTH = 4000
_ALIASES = {"Abs": "abs"}  # sympy's printer spells abs this way
_BINARY = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div"}


class FormulaError(EvopruneError):
    """A formula string outside the vocabulary (the message names what was refused)."""


def parse_formula(text: str) -> sympy.Expr:
    if not isinstance(text, str) or not text.strip():
        raise FormulaError("empty formula")
    if len(text) > MAX_LENGTH:
        raise FormulaError(f"formula longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
        return _build(tree.body)
    except SyntaxError as exc:
        raise FormulaError(f"formula is not an expression: {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise FormulaError("formula is nested too deeply") from None


def _constant(node: ast.AST) -> float | None:
    """A numeric literal, possibly signed; None for anything else."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        try:
            value = float(node.value)
        except OverflowError:
            value = math.inf
        if not math.isfinite(value):
            raise FormulaError(f"number out of range: {ast.unparse(node)[:40]}")
        return value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _constant(node.operand)
        if inner is not None:
            return -inner if isinstance(node.op, ast.USub) else inner
    return None


def _build(node: ast.AST) -> sympy.Expr:
    value = _constant(node)
    if value is not None:
        return sympy.Integer(int(value)) if value.is_integer() else sympy.Float(value)
    if isinstance(node, ast.Name):
        if node.id in LEAF_SYMBOLS:
            return LEAF_SYMBOLS[node.id]
        raise FormulaError(f"unknown name {node.id!r} (leaves: {', '.join(LEAF_SYMBOLS)})")
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return OPERATORS[_BINARY[type(node.op)]].sympy(_build(node.left), _build(node.right))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        return _power(node.left, node.right)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return -_build(node.operand) if isinstance(node.op, ast.USub) else _build(node.operand)
    if isinstance(node, ast.Call):
        return _call(node)
    raise FormulaError(f"not allowed in a formula: {type(node).__name__} ({ast.unparse(node)[:40]!r})")


def _exponent(node: ast.AST) -> float:
    """An exponent: a number or + - * / of numbers (so `X**(1/2)` works); never a leaf."""
    value = _constant(node)
    if value is not None:
        return value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _exponent(node.left), _exponent(node.right)
        if isinstance(node.op, ast.Div) and right == 0:
            raise FormulaError("division by zero in an exponent")
        value = {ast.Add: left + right, ast.Sub: left - right, ast.Mult: left * right}.get(type(node.op))
        value = left / right if value is None else value
        if math.isfinite(value):
            return value
    raise FormulaError(f"exponent must be a number, got {ast.unparse(node)[:40]!r}")


def _power(base: ast.AST, exponent: ast.AST) -> sympy.Expr:
    return OPERATORS["pow"].sympy(_build(base), _exponent(exponent))


def _call(node: ast.Call) -> sympy.Expr:
    if not isinstance(node.func, ast.Name) or node.keywords:
        raise FormulaError(f"not allowed in a formula: call of {ast.unparse(node.func)[:40]!r}")
    name = _ALIASES.get(node.func.id, node.func.id)
    if name not in OPERATORS:
        raise FormulaError(f"unknown operator {node.func.id!r} (operators: {', '.join(OPERATORS)})")
    op = OPERATORS[name]
    if len(node.args) != op.arity:
        raise FormulaError(f"{name} takes {op.arity} argument(s), got {len(node.args)}")
    if name == "pow":
        return _power(node.args[0], node.args[1])
    return op.sympy(*(_build(arg) for arg in node.args))
