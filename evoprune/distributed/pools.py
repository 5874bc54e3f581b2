"""Pick the evaluation pool for a run: in-process when one worker suffices, Ray otherwise."""

from __future__ import annotations

from typing import Any

from evoprune.distributed.factory import DEFAULT_FACTORY
from evoprune.distributed.local import LocalPool
from evoprune.distributed.runtime import LOCAL
from evoprune.distributed.slots import DispatchPolicy


def _local_gpu_count() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def open_pool(
    spec: Any,
    *,
    workers: int | None = None,
    address: str | None = None,
    evaluator_factory: str = DEFAULT_FACTORY,
    policy: DispatchPolicy | None = None,
    **ray_kwargs: Any,
) -> Any:
    """A context-managed pool whose `map(formulas) -> results` (input order) is the search's `map_fn`.

    - `address` given ("local", "auto", "HOST:PORT", "ray://HOST:PORT"): Ray, joining or starting as asked;
    - else `workers > 1`, or more than one local GPU: a private local Ray instance;
    - else: `LocalPool`, in this process, without importing Ray.
    """
    if address is None and (workers or 1) <= 1 and _local_gpu_count() <= 1:
        return LocalPool(spec, evaluator_factory=evaluator_factory)
    from evoprune.distributed.pool import RayEvaluatorPool

    return RayEvaluatorPool(spec, evaluator_factory=evaluator_factory, workers=workers, address=address or LOCAL,
                            policy=policy, **ray_kwargs)
