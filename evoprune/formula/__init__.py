"""Formulas: the operator registry, safe parsing, canonical text and the one sympy -> torch compile path."""

from evoprune.formula.compile import canonical_string, compile_formula, formula_leaves, formula_size
from evoprune.formula.operators import OPERATORS, Operator
from evoprune.formula.parse import FormulaError, parse_formula

__all__ = ["OPERATORS", "FormulaError", "Operator", "canonical_string", "compile_formula", "formula_leaves",
           "formula_size", "parse_formula"]
