"""`RayEvaluatorPool`: evaluator actors on a private Ray instance or a joined cluster, with the local pool's `map`.

Ray is imported lazily (inside methods), so importing this module costs nothing in a single-process run.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from evoprune.distributed.dispatch import Dispatcher
from evoprune.distributed.factory import DEFAULT_FACTORY
from evoprune.distributed.runtime import LOCAL, RaySession, connect, disconnect
from evoprune.distributed.slots import READY, ActorSlot, DispatchPolicy
from evoprune.distributed.worker import remote_worker_class
from evoprune.errors import EvopruneError

log = logging.getLogger(__name__)


class RayEvaluatorPool:
    """One evaluator actor per GPU when the cluster has GPUs, else `workers` CPU actors; use as a context manager.

    `evaluator_factory` is a "module:Class" path importable on every node, `spec` a picklable value passed to it.
    """

    def __init__(
        self,
        spec: Any,
        *,
        evaluator_factory: str = DEFAULT_FACTORY,
        workers: int | None = None,
        address: str = LOCAL,
        use_gpus: bool | None = None,
        cpus_per_actor: float = 1.0,
        actor_resources: dict[str, float] | None = None,
        policy: DispatchPolicy | None = None,
        startup_timeout_s: float | None = 900.0,
        verbose: bool = False,
        **init_kwargs: Any,
    ) -> None:
        self.policy = policy or DispatchPolicy()
        self._spawned: list[Any] = []  # every actor handle created, so close() can stop even a half-started pool
        local_cpus = None
        if address == LOCAL and workers:  # honour --workers even beyond the core count (Ray would leave actors pending)
            local_cpus = max(os.cpu_count() or 1, int(workers * cpus_per_actor + 0.999))
        self.session: RaySession = connect(address, num_cpus=local_cpus, verbose=verbose, **init_kwargs)
        try:
            self._start_actors(spec, evaluator_factory, workers, use_gpus, cpus_per_actor, actor_resources,
                               startup_timeout_s)
        except BaseException:
            self.close()
            raise

    def _start_actors(self, spec: Any, factory: str, workers: int | None, use_gpus: bool | None,
                      cpus_per_actor: float, resources: dict[str, float] | None, timeout_s: float | None) -> None:
        import ray

        total = ray.cluster_resources()
        gpus = int(total.get("GPU", 0))
        on_gpu = gpus > 0 if use_gpus is None else use_gpus
        if on_gpu:
            if gpus == 0:
                raise EvopruneError("use_gpus=True but the Ray cluster has no GPUs")
            count = min(workers, gpus) if workers else gpus  # one actor per GPU, fewer if asked
        else:
            count = workers or 1
            if count * cpus_per_actor > total.get("CPU", 0):
                raise EvopruneError(f"{count} workers need {count * cpus_per_actor:g} CPUs but the Ray cluster "
                                    f"has {total.get('CPU', 0):g}; lower --workers")
        # Each actor uses the cores Ray reserved for it and no more (a GPU actor keeps 1 host thread).
        threads = max(1, int(cpus_per_actor)) if not on_gpu else 1
        actor_cls = remote_worker_class(num_cpus=cpus_per_actor if not on_gpu else 1, num_gpus=1 if on_gpu else 0,
                                        max_restarts=self.policy.max_restarts, resources=resources)
        # The first actor starts alone: it fills the on-disk statistics cache that the others then read instead of
        # all computing the same statistics at once.
        self._spawned.append(actor_cls.remote(factory, spec, threads))
        infos = self._await_ready(self._spawned, timeout_s)
        self._spawned += [actor_cls.remote(factory, spec, threads) for _ in range(count - 1)]
        infos += self._await_ready(self._spawned[1:], timeout_s)
        pairs = zip(self._spawned, infos, strict=True)
        slots = [ActorSlot(actor=a, index=i, info=info) for i, (a, info) in enumerate(pairs)]
        self._dispatcher = Dispatcher(slots, self.policy)
        log.info("evaluator pool: %d %s actors on %d node(s)", count, "GPU" if on_gpu else "CPU",
                 len({s.info.get("node_id") for s in slots}))

    @staticmethod
    def _await_ready(actors: list[Any], timeout_s: float | None) -> list[dict[str, Any]]:
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        if not actors:
            return []
        try:
            return ray.get([a.whoami.remote() for a in actors], timeout=timeout_s)
        except GetTimeoutError as exc:
            raise EvopruneError(f"evaluator actors not ready after {timeout_s:.0f} s: the cluster may lack the "
                                "resources they need (see `ray status`)") from exc
        except RayActorError as exc:
            raise EvopruneError(f"an evaluator actor failed to start: {exc}") from exc

    @property
    def size(self) -> int:
        """Actors still in the pool (ready or restarting); shrinks when one is lost for good."""
        return len(self._dispatcher.live)

    @property
    def actors(self) -> list[Any]:
        """Handles of the live actors (for inspection and fault-injection tests)."""
        return [s.actor for s in self._dispatcher.live]

    def actor_info(self) -> list[dict[str, Any]]:
        """pid / host / node_id of each live actor as of its last (re)start, plus its state and death count."""
        return [{**s.info, "state": s.state, "deaths": s.deaths} for s in self._dispatcher.live]

    def wait_ready(self, timeout_s: float = 60.0) -> int:
        """Let restarting actors come back (or be given up), at most `timeout_s`; returns the ready actor count.

        `map` never waits for a restart (the other actors take the work), so this is only for callers that want a
        full pool before timing something, and for tests.
        """
        self._dispatcher.settle(timeout_s)
        return sum(s.state == READY for s in self._dispatcher.live)

    def map(self, formulas: list[str]) -> list[dict[str, Any]]:
        """Evaluate every formula; results in input order, equal to an in-process run's whatever the timing."""
        return self._dispatcher.map(list(formulas))

    __call__ = map

    def close(self) -> None:
        """Stop what this pool started: its actors, and the Ray instance only if the pool started it."""
        import ray

        if ray.is_initialized():
            for actor in self._spawned:
                ray.kill(actor, no_restart=True)
        self._spawned.clear()
        disconnect(self.session)

    def __enter__(self) -> RayEvaluatorPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
