"""The evaluator worker: a plain class that holds ONE evaluator, and its thin Ray actor wrapper.

The same class runs in-process (`LocalPool`) and inside a Ray actor (`RayEvaluatorPool`), so both paths share one
implementation. Only plain data crosses the process boundary: formula strings in, result dicts out.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from evoprune.distributed.factory import FormulaEvaluator, build_evaluator


def _set_torch_threads(threads: int | None) -> None:
    # Several actors share a node's cores: without a cap each would start one thread per core and they would fight.
    if threads is None:
        return
    try:
        import torch
    except ImportError:  # an evaluator that does not use torch needs no cap
        return
    torch.set_num_threads(threads)


class EvaluatorWorker:
    """Builds one evaluator from `(factory, spec)` and scores formulas with it."""

    def __init__(self, factory: str, spec: Any, torch_threads: int | None = None) -> None:
        _set_torch_threads(torch_threads)
        self._evaluator: FormulaEvaluator = build_evaluator(factory, spec)

    @property
    def evaluator(self) -> FormulaEvaluator:
        return self._evaluator

    def evaluate(self, formula: str) -> dict[str, Any]:
        return self._evaluator.evaluate(formula)

    def whoami(self) -> dict[str, Any]:
        """Where this worker runs: also serves as the readiness probe after a (re)start."""
        info: dict[str, Any] = {"pid": os.getpid(), "host": socket.gethostname(), "node_id": None}
        try:
            import ray

            if ray.is_initialized():
                info["node_id"] = ray.get_runtime_context().get_node_id()
                info["gpu_ids"] = [str(i) for i in ray.get_gpu_ids()]  # what Ray gave this actor (num_gpus)
        except ImportError:
            pass
        return info


def remote_worker_class(num_cpus: float, num_gpus: float, max_restarts: int, resources: dict[str, float] | None):
    """`EvaluatorWorker` as a Ray actor class (imports Ray, so only the Ray pool calls it).

    `max_task_retries=0`: the pool re-queues a dead actor's candidates itself, so they go to any live actor
    instead of waiting for this one to restart.
    """
    import ray

    return ray.remote(EvaluatorWorker).options(
        num_cpus=num_cpus, num_gpus=num_gpus, resources=resources or {}, max_restarts=max_restarts,
        max_task_retries=0, scheduling_strategy="SPREAD",
    )
