"""The in-process pool: the same `map` interface as `RayEvaluatorPool`, no Ray (a single-process run)."""

from __future__ import annotations

from typing import Any

from evoprune.distributed.factory import DEFAULT_FACTORY
from evoprune.distributed.worker import EvaluatorWorker


class LocalPool:
    """Evaluates candidates one after another in this process with one `EvaluatorWorker`."""

    def __init__(self, spec: Any, *, evaluator_factory: str = DEFAULT_FACTORY, torch_threads: int | None = None):
        self._worker = EvaluatorWorker(evaluator_factory, spec, torch_threads)

    @property
    def evaluator(self) -> Any:
        """The in-process evaluator: the driver can reuse it (e.g. to re-score the best) instead of loading another."""
        return self._worker.evaluator

    @property
    def size(self) -> int:
        return 1

    def map(self, formulas: list[str]) -> list[dict[str, Any]]:
        return [self._worker.evaluate(f) for f in formulas]

    __call__ = map

    def close(self) -> None:
        """Nothing to release: the evaluator goes with this object."""

    def __enter__(self) -> LocalPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
