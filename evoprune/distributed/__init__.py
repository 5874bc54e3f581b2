"""Distributed evaluation: evaluator actors on Ray (local instance or cluster) behind a plain `map` function.

Importing this package does not import Ray; only `RayEvaluatorPool` does, when it is constructed.
"""

from evoprune.distributed.factory import DEFAULT_FACTORY, build_evaluator, load_factory
from evoprune.distributed.local import LocalPool
from evoprune.distributed.pool import RayEvaluatorPool
from evoprune.distributed.pools import open_pool
from evoprune.distributed.slots import DispatchPolicy

__all__ = ["DEFAULT_FACTORY", "DispatchPolicy", "LocalPool", "RayEvaluatorPool", "build_evaluator", "load_factory",
           "open_pool"]
