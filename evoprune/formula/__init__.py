"""Formulas: the operator registry, safe parsing, canonical text, the one sympy -> torch compile path and the
printers (standalone Python source, LaTeX)."""

from evoprune.formula.canonical import canonical_string, formula_leaves, formula_size
from evoprune.formula.compile import Scorer, compile_formula
from evoprune.formula.leaves import LEAVES, Leaf
from evoprune.formula.operators import OPERATORS, Operator
from evoprune.formula.parse import FormulaError, parse_formula
from evoprune.formula.printing import to_latex, to_python_source, to_text

__all__ = ["LEAVES", "OPERATORS", "FormulaError", "Leaf", "Operator", "Scorer", "canonical_string",
           "compile_formula", "formula_leaves", "formula_size", "parse_formula", "to_latex", "to_python_source",
           "to_text"]
