"""The standalone Python module of one formula: `importance(W, X=None, G=None, Hinv=None) -> torch.Tensor`, torch
only. The arithmetic comes from `evoprune.formula.printing.to_python_source` (the printer the formula tests check
against `compile_formula`); this file adds the documentation around it: the formula as text and LaTeX, the leaves
with their exact definitions, the protected operators used, the tie rule and the provenance."""

from __future__ import annotations

import ast
import pprint
import textwrap

import sympy

from evoprune.export.formula_text import ExportFormula
from evoprune.export.provenance import describe, json_safe
from evoprune.export.recipe_source import recipe_source
from evoprune.formula import LEAVES, OPERATORS, to_latex, to_text
from evoprune.formula.operators import PROTECTED_BY_NAME
from evoprune.formula.printing import to_python_source
from evoprune.prune.recipe import Recipe

WIDTH = 116  # docstring text width (the module stays readable at 120 columns)
SCORES = "_scores"  # the printer's function; `importance` checks its inputs and calls it


def ordered_leaves(expr: sympy.Expr) -> tuple[str, ...]:
    used = {s.name for s in expr.free_symbols}
    return tuple(name for name in LEAVES if name in used)


def protected_operators(expr: sympy.Expr) -> list[str]:
    """Registry names of the protected operators in `expr`, in registry order."""
    used = {type(node).__name__ for node in sympy.preorder_traversal(expr)}
    return [name for name in OPERATORS if name in used and name in PROTECTED_BY_NAME]


def _block(title: str, lines: list[str], hang: int | None = 4) -> list[str]:
    """A titled block; long lines wrap with a hanging indent of `hang` columns past the block's own indent
    (`hang=None`: never wrap, so a formula or LaTeX line stays copyable in one piece)."""
    out = ["", title]
    for line in lines:
        if hang is None:
            out.append("    " + line)
            continue
        out.extend(textwrap.wrap(line, WIDTH, initial_indent="    ", subsequent_indent=" " * (4 + hang),
                                 break_on_hyphens=False) or [""])
    return out


def _value_column(line: str) -> int:
    """Where the value of an aligned `key:   value` line starts."""
    colon = line.index(":") + 1
    return colon + len(line[colon:]) - len(line[colon:].lstrip())


def docstring(formula: ExportFormula, record: dict | None) -> str:
    expr, leaves = formula.expr, ordered_leaves(formula.expr)
    width = max(len(name) for name in LEAVES)
    lines = ["Pruning metric discovered by evoprune (exported; needs torch only, not evoprune).",
             "",
             "importance(W, X=None, G=None, Hinv=None) returns float32 scores shaped like W [out, in]; a higher",
             "score means a more important weight, which is kept."]
    lines += _block("Formula", [f"text:      {to_text(expr)}", f"LaTeX:     {to_latex(expr)}",
                                f"formula:   {formula.text}",
                                "(`evoprune prune --metric FORMULA` computes exactly the same scores)"], hang=None)
    lines += _block("Leaves it needs (float tensors; each is broadcast to W's shape [out, in] first)",
                    [f"{name:<{width}} {LEAVES[name].shape:<9} {LEAVES[name].doc}" for name in leaves]
                    + ["(T = number of calibration tokens; see evoprune's CONTRACTS.md)"], hang=width + 11)
    ops = protected_operators(expr)
    if ops:
        lines += _block("Protected operators (written out inline below; they never produce NaN)",
                        [f"{name}: {OPERATORS[name].doc}" for name in ops], hang=8)
    if record is not None:
        described = describe(record)
        lines += _block("Provenance", described, hang=_value_column(described[0]))
    lines += _block("Masks", [
        "evoprune keeps the highest scores and ranks them with a stable ascending sort: among equal scores the "
        "weight with the lower index in its comparison group is pruned first. 50 % per output row, as evoprune:"],
                    hang=0)
    lines += ["        scores = importance(W, X=X)",
              "        order = torch.sort(scores, dim=-1, stable=True).indices",
              "        keep = torch.ones_like(scores, dtype=torch.bool)",
              "        keep.scatter_(-1, order[:, : W.shape[1] // 2], False)"]
    text = "\n".join(lines).replace('"""', "'''")  # nothing a formula or a path holds may close the docstring
    return 'r"""' + text + '\n"""'


def module_source(formula: ExportFormula, record: dict | None = None, recipe: Recipe | None = None) -> str:
    """The module's text; parsed once here so a broken export can never be written. With a `recipe` (not plain)
    the module adds its stage choices and `layer_sparsity(...)` (`recipe_source.py`)."""
    expr, leaves = formula.expr, ordered_leaves(formula.expr)
    printed = to_python_source(expr, name=SCORES)
    head, sep, body = printed.partition("\n\n\n")
    if head != "import torch" or not sep:
        raise RuntimeError("evoprune.formula.printing changed its module layout; update module_source.py")
    checks = [name for name in leaves if name != "W"]
    importance = [
        "def importance(W, X=None, G=None, Hinv=None) -> torch.Tensor:",
        f'    """Scores of FORMULA (higher = keep); needs {", ".join(("W", *checks))} (see the module docstring)."""',
    ]
    if checks:
        importance += [f"    given = {{{', '.join(f'{n!r}: {n}' for n in checks)}}}",
                       "    missing = [name for name, value in given.items() if value is None]",
                       "    if missing:",
                       '        raise ValueError(f"this metric needs the leaves {missing} (see the module docstring)")']
    importance.append(f"    return {SCORES}(W, X, G, Hinv)")
    parts = [docstring(formula, record), "", "import torch", "",
             "# The formula as text: `evoprune prune --metric` parses it over a fixed vocabulary (never executed).",
             f"FORMULA = {formula.text!r}",
             f"LEAVES = {leaves!r}"]
    if record is not None:
        literal = pprint.pformat(json_safe(record), sort_dicts=False, width=WIDTH - len("PROVENANCE = "))
        parts.append("PROVENANCE = " + literal.replace("\n", "\n" + " " * len("PROVENANCE = ")))
    source = "\n".join([*parts, "", "", *importance, "", "", body.rstrip("\n"), ""])
    if recipe is not None and not recipe.plain:
        source += "\n\n" + recipe_source(recipe)
    try:
        ast.parse(source)
    except SyntaxError as exc:  # a bug, not bad input: the printer produced something Python cannot read
        raise RuntimeError(f"generated module does not parse: {exc}") from exc
    return source
