"""`--metric` beyond the built-in names: a formula string, an exported JSON file or an exported (or hand-written)
Python file, each turned into a pruning `Method`.

Strings and JSON files are DATA: the formula goes through `evoprune.formula.parse` (ast over a fixed vocabulary,
never eval/sympify), so `__import__('os').system(...)` is refused. A .py file is CODE: it is imported and runs with
your permissions, like any Python module you import; only use .py files you trust.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import sympy
import torch

from evoprune.errors import EvopruneError
from evoprune.export.formats import JSON_KIND
from evoprune.formula import LEAVES, FormulaError, canonical_string, compile_formula, formula_leaves, parse_formula
from evoprune.prune.method import Method
from evoprune.prune.metrics import BUILTIN_METRICS
from evoprune.prune.recipe import Recipe

FILE_SUFFIXES = (".py", ".json")
MAX_FILE_BYTES = 1 << 20  # a metric file is a formula and some text; refuse anything far bigger
HINT = f"a built-in ({', '.join(BUILTIN_METRICS)}), a formula over W, X, G, Hinv such as 'abs(W)*X', or an " \
       "exported .py/.json file"


def _one_line(text: str, limit: int = 300) -> str:
    """The CLI prints errors on one line: no newline from a file or a formula may break that."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def load_metric(metric: str) -> Method:
    """A Method for a formula string, a .json file or a .py file (built-in names are resolved by the caller)."""
    if not isinstance(metric, str) or not metric.strip():
        raise EvopruneError(f"empty --metric (use {HINT})")
    path = Path(metric)
    if path.suffix in FILE_SUFFIXES:
        if not path.is_file():
            raise EvopruneError(f"metric file not found: {_one_line(metric)}")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise EvopruneError(f"metric file {path} is larger than {MAX_FILE_BYTES} bytes")
        method = method_from_json(path) if path.suffix == ".json" else method_from_python(path)
    else:
        method = method_from_formula(metric)
    _smoke_test(method)
    return method


# -- formulas (strings and JSON): parsed, never executed ---------------------------------------------------------
def _parse(text: str, origin: str) -> sympy.Expr:
    try:
        return parse_formula(text)
    except FormulaError as exc:
        if _is_bare_name(text):  # `--metric wandaa`: a misspelt built-in, not a formula
            raise EvopruneError(f"unknown metric {text.strip()!r} (use {HINT})") from None
        raise EvopruneError(_one_line(f"bad formula in {origin}: {exc}")) from None


def _is_bare_name(text: str) -> bool:
    """A lone word such as `wandaa` or `prunerzero` (hyphens allowed, like pruner-zero) that is not a leaf."""
    return re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", text.strip()) is not None and text.strip() not in LEAVES


def method_from_expr(expr: sympy.Expr, name: str) -> Method:
    leaves = formula_leaves(expr)
    if not leaves:
        raise EvopruneError(_one_line(f"formula {canonical_string(expr)!r} uses no leaf (W, X, G or Hinv): "
                                      "its scores cannot rank weights"))
    return Method(name, compile_formula(expr), tuple(n for n in LEAVES if n in leaves or n == "W"))


def method_from_formula(text: str) -> Method:
    expr = _parse(text, f"--metric {_one_line(repr(text), 80)}")
    return method_from_expr(expr, canonical_string(expr))


def method_from_json(path: Path) -> Method:
    """An exported JSON metric: {"kind": "evoprune-metric", "formula": CANONICAL, ...}; only `formula` is used."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EvopruneError(_one_line(f"metric file {path} is not JSON: {exc}")) from None
    if isinstance(payload, dict) and "formula" not in payload and "kind" not in payload and "score" in payload:
        payload = {"formula": payload["score"]}  # a plain recipe (a best.json row's `recipe`): its score
    if not isinstance(payload, dict) or not isinstance(payload.get("formula"), str):
        raise EvopruneError(f"metric file {path} has no \"formula\" string (expected an `evoprune export "
                            f"--format json` file, kind {JSON_KIND!r})")
    if payload.get("kind", JSON_KIND) != JSON_KIND:
        raise EvopruneError(f"metric file {path} is of kind {_one_line(repr(payload['kind']), 60)}, not {JSON_KIND!r}")
    expr = _parse(payload["formula"], f"metric file {path}")
    return method_from_expr(expr, canonical_string(expr))


# -- Python files: executed ----------------------------------------------------------------------------------------
def _import_file(path: Path):
    """Import `path` as a module named after its content's hash (two different files never collide)."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    name = f"evoprune_metric_{digest}"
    if sys.modules.get(name) is not None:  # the CLI resolves a metric twice (check, then prune): import once
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise EvopruneError(f"metric file {path} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 -- any failure of user code is bad input: one line, exit 2
        del sys.modules[name]
        raise EvopruneError(_one_line(f"metric file {path} failed to import: {type(exc).__name__}: {exc}")) from None
    return module


def _python_leaves(module, fn: Callable, path: Path) -> tuple[str, ...]:
    """LEAVES if the module defines it (exports do); otherwise the leaf-named parameters without a default."""
    declared = getattr(module, "LEAVES", None)
    if declared is None:
        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):
            params = []
        declared = [p.name for p in params if p.name in LEAVES and p.default is inspect.Parameter.empty]
    if isinstance(declared, str) or not all(isinstance(n, str) for n in declared):
        raise EvopruneError(f"metric file {path}: LEAVES must be a tuple of leaf names")
    unknown = sorted(set(declared) - set(LEAVES))
    if unknown:
        raise EvopruneError(f"metric file {path}: unknown leaves {unknown} (use {', '.join(LEAVES)})")
    return tuple(n for n in LEAVES if n in declared or n == "W")


def method_from_python(path: Path) -> Method:
    """A module defining `importance(W, X=None, G=None, Hinv=None) -> torch.Tensor` (what `evoprune export`
    writes). Its leaves come from `LEAVES` (or, for a hand-written file, the parameters without a default)."""
    module = _import_file(path)
    fn = getattr(module, "importance", None)
    if not callable(fn):
        raise EvopruneError(f"metric file {path} defines no function importance(W, X=None, G=None, Hinv=None)")
    leaves = _python_leaves(module, fn, path)
    name = f"{path.name} ({module.FORMULA})" if isinstance(getattr(module, "FORMULA", None), str) else path.name

    def scores(values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        weight = values["W"]
        out = fn(**{leaf: values[leaf] for leaf in leaves})
        if not isinstance(out, torch.Tensor):
            raise EvopruneError(f"metric file {path}: importance() returned {type(out).__name__}, not a tensor")
        try:  # exactly what compile_formula does with a formula's result
            return torch.as_tensor(out, dtype=torch.float32, device=weight.device).expand(weight.shape)
        except RuntimeError:
            raise EvopruneError(f"metric file {path}: importance() returned shape {tuple(out.shape)} for a weight "
                                f"of shape {tuple(weight.shape)}") from None

    return Method(_one_line(name, 200), scores, leaves)


# -- a check on a tiny input, before any model is loaded ------------------------------------------------------------
def _smoke_test(method: Method) -> None:
    """Run the scorer once on random 8x16 leaves, so a broken metric fails in a second, not after the model and
    the calibration statistics have loaded."""
    gen = torch.Generator().manual_seed(0)
    leaves = {"W": torch.randn(8, 16, generator=gen), "X": torch.rand(1, 16, generator=gen) + 0.1,
              "G": torch.rand(8, 16, generator=gen) + 0.1, "Hinv": torch.rand(1, 16, generator=gen) + 0.1}
    try:
        out = method.scorer({k: v for k, v in leaves.items() if k in method.leaves})
    except EvopruneError:
        raise
    except Exception as exc:  # noqa: BLE001 -- user code: report it as bad input, on one line
        raise EvopruneError(_one_line(f"metric {method.name!r} fails on a test input: {type(exc).__name__}: "
                                      f"{exc}")) from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (8, 16):
        raise EvopruneError(f"metric {method.name!r} does not return scores shaped like W")


# -- recipes carried by metric files ---------------------------------------------------------------------------------
def load_recipe_file(metric: str) -> Recipe | None:
    """The recipe a metric file carries: `recipe` of an exported .json, a plain recipe .json ({"score": ...,
    "allocation": ..., ...}, e.g. a best.json row's `recipe`), or RECIPE of an exported .py (imported: it is code).
    None for anything else. The score inside stays whatever the file's formula loader reads."""
    path = Path(metric)
    if path.suffix not in FILE_SUFFIXES or not path.is_file() or path.stat().st_size > MAX_FILE_BYTES:
        return None
    if path.suffix == ".py":
        raw = getattr(_import_file(path), "RECIPE", None)
    else:
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None  # load_metric reports the file
        if not isinstance(payload, dict):
            return None
        plain = "score" in payload and "formula" not in payload and "kind" not in payload  # a bare recipe object
        raw = payload if plain else payload.get("recipe")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise EvopruneError(f"metric file {path}: its recipe is not an object")
    try:
        return Recipe.from_dict(raw)
    except EvopruneError as exc:
        raise EvopruneError(_one_line(f"metric file {path}: {exc}")) from None
