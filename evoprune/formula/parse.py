"""Parse a formula string into sympy WITHOUT evaluating Python: the text goes through `ast` and only a fixed
vocabulary is accepted (leaves, registry operators, numbers, + - * / **). sympify/parse_expr are never used on
user text because they execute it."""

from __future__ import annotations

import ast

import sympy

from evoprune.errors import EvopruneError
from evoprune.formula.leaves import LEAF_SYMBOLS
from evoprune.formula.operators import OPERATORS, power_sympy

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
    except SyntaxError as exc:
        raise FormulaError(f"formula is not an expression: {exc.msg}") from None
    return _build(tree.body)


def _constant(node: ast.AST) -> float | None:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return float(node.value)
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
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_build(node.operand)
    if isinstance(node, ast.Call):
        return _call(node)
    raise FormulaError(f"not allowed in a formula: {type(node).__name__} ({ast.unparse(node)[:40]!r})")


def _power(base: ast.AST, exponent: ast.AST) -> sympy.Expr:
    value = _constant(exponent)
    if value is None:
        raise FormulaError(f"exponent must be a number, got {ast.unparse(exponent)[:40]!r}")
    return power_sympy(_build(base), value)


def _call(node: ast.Call) -> sympy.Expr:
    if not isinstance(node.func, ast.Name) or node.keywords:
        raise FormulaError(f"not allowed in a formula: call of {ast.unparse(node.func)[:40]!r}")
    name = _ALIASES.get(node.func.id, node.func.id)
    if name == "pow":
        if len(node.args) != 2:
            raise FormulaError("pow takes 2 arguments (base, constant exponent)")
        return _power(node.args[0], node.args[1])
    if name not in OPERATORS:
        raise FormulaError(f"unknown operator {node.func.id!r} (operators: {', '.join([*OPERATORS, 'pow'])})")
    op = OPERATORS[name]
    if len(node.args) != op.arity:
        raise FormulaError(f"{name} takes {op.arity} argument(s), got {len(node.args)}")
    return op.sympy(*(_build(arg) for arg in node.args))
