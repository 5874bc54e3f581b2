"""Build one evaluator from an importable "module:Class" path and a picklable spec.

The pool ships only these two plain values to each worker process, never an evaluator object: the evaluator holds
a model and statistics that must be built where they will be used (see docs/distributed.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol

from evoprune.errors import EvopruneError

DEFAULT_FACTORY = "evoprune.fitness.evaluator:Evaluator"


class FormulaEvaluator(Protocol):
    """What the pool needs from an evaluator (the CONTRACTS.md Evaluator satisfies it)."""

    def evaluate(self, formula: str) -> dict[str, Any]: ...


def load_factory(path: str) -> Callable[[Any], FormulaEvaluator]:
    """Import `"package.module:Name"` and return the callable it names (usually an evaluator class)."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise EvopruneError(f"evaluator factory {path!r} must look like 'package.module:ClassName'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EvopruneError(f"cannot import evaluator module {module_name!r} ({exc}); is it on PYTHONPATH "
                            "on every node?") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise EvopruneError(f"{module_name!r} has no callable named {attr!r}")
    return factory


def build_evaluator(path: str, spec: Any) -> FormulaEvaluator:
    """`load_factory(path)(spec)`: the one way both the in-process pool and the Ray actors make an evaluator."""
    return load_factory(path)(spec)


def penalty_result(formula: str, reason: str) -> dict[str, Any]:
    """A result dict in the Evaluator contract's shape for a candidate that could not be evaluated."""
    return {"formula": formula, "fitness": float("inf"), "reason": reason, "seconds": 0.0,
            "mask_hash": None, "cached": False}
