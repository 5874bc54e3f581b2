"""The dispatch loop: keeps every live actor busy with `ray.wait`, re-queues the candidates of actors that die.

Results are written by input index, so the outcome never depends on which actor finished first.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from evoprune.distributed.factory import penalty_result
from evoprune.distributed.slots import DEAD, READY, RECOVERING, ActorSlot, DispatchPolicy
from evoprune.errors import EvopruneError


def _death_errors() -> tuple[type[BaseException], ...]:
    from ray.exceptions import ActorUnschedulableError, RayActorError

    return RayActorError, ActorUnschedulableError


@dataclass(frozen=True)
class _Task:
    slot: ActorSlot
    idx: int     # candidate index in the input list
    epoch: int   # the slot's life when submitted
    alone: bool  # nothing else was or will be in flight on that actor while it runs: a death is its own doing


@dataclass
class _Run:
    """State of one `map` call."""

    formulas: list[str]
    results: list[dict[str, Any] | None]
    queue: deque[int]
    attempts: list[int]
    tasks: dict[Any, _Task] = field(default_factory=dict)   # ObjectRef -> task
    isolate: set[int] = field(default_factory=set)  # candidates in flight with others when their actor died
    remaining: int = 0


class Dispatcher:
    """Maps formula lists over a fixed set of actor slots; slots that die for good are dropped (the pool shrinks)."""

    def __init__(self, slots: list[ActorSlot], policy: DispatchPolicy) -> None:
        self.slots = slots
        self.policy = policy

    @property
    def live(self) -> list[ActorSlot]:
        return [s for s in self.slots if s.state != DEAD]

    def map(self, formulas: list[str]) -> list[dict[str, Any]]:
        import ray

        n = len(formulas)
        run = _Run(formulas, [None] * n, deque(range(n)), [0] * n, remaining=n)
        while run.remaining:
            self._submit(run)
            probes = {s.probe: s for s in self.slots if s.state == RECOVERING}
            if not run.tasks and not probes:
                raise self._all_gone()
            ready, _ = ray.wait([*run.tasks, *probes], num_returns=1, timeout=self.policy.tick_s)
            for ref in ready:
                if ref in probes:
                    self._settle_probe(probes[ref], ref)
                else:
                    self._collect(run, ref)
            self._expire_recoveries()
        return run.results  # type: ignore[return-value]  # every index was filled before `remaining` reached 0

    def _collect(self, run: _Run, ref: Any) -> None:
        import ray

        task = run.tasks.pop(ref)
        try:
            run.results[task.idx] = ray.get(ref)
            run.remaining -= 1
            return
        except _death_errors() as exc:
            task.slot.died(task.epoch, exc)
        if task.alone:
            run.attempts[task.idx] += 1
        else:
            # Which of the actor's tasks killed it is unknown: the one it was running, or one behind it, or one
            # that had finished but whose reply died with the process. Each runs again alone before any is blamed.
            run.isolate.add(task.idx)
        if run.attempts[task.idx] >= self.policy.max_attempts:
            reason = f"evaluator worker died {run.attempts[task.idx]} times on this candidate ({task.slot.last_error})"
            run.results[task.idx] = penalty_result(run.formulas[task.idx], reason)
            run.remaining -= 1
        else:
            run.queue.appendleft(task.idx)  # the next free actor takes it

    def _submit(self, run: _Run) -> None:
        """Top every ready actor up to `queue_depth` in-flight candidates, round-robin so work spreads evenly. A
        candidate to isolate waits for an idle actor and has it to itself (the queue waits behind it)."""
        load = {id(s): 0 for s in self.slots}
        solo: set[int] = set()
        for task in run.tasks.values():
            load[id(task.slot)] += 1
            if task.alone:
                solo.add(id(task.slot))
        while run.queue:
            free = [s for s in self.slots
                    if s.state == READY and id(s) not in solo and load[id(s)] < self.policy.queue_depth]
            submitted = False
            for slot in free:
                if not run.queue:
                    break
                idx = run.queue[0]
                isolated = idx in run.isolate
                if isolated and load[id(slot)]:
                    continue
                run.queue.popleft()
                alone = isolated or self.policy.queue_depth == 1
                ref = slot.actor.evaluate.remote(run.formulas[idx])
                run.tasks[ref] = _Task(slot, idx, slot.epoch, alone)
                load[id(slot)] += 1
                if alone:
                    solo.add(id(slot))
                submitted = True
            if not submitted:
                return

    def settle(self, timeout_s: float) -> None:
        """Wait until no actor is restarting (each is back or given up), at most `timeout_s` seconds."""
        import ray

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            probes = {s.probe: s for s in self.slots if s.state == RECOVERING}
            if not probes:
                return
            ready, _ = ray.wait(list(probes), num_returns=1, timeout=self.policy.tick_s)
            for ref in ready:
                self._settle_probe(probes[ref], ref)
            self._expire_recoveries()

    def _settle_probe(self, slot: ActorSlot, ref: Any) -> None:
        import ray

        try:
            slot.probe_answered(ray.get(ref))
        except _death_errors() as exc:
            slot.probe_failed(exc, self.policy.max_restarts)

    def _expire_recoveries(self) -> None:
        for slot in self.slots:
            if slot.overdue(self.policy.recovery_timeout_s):
                slot.last_error = f"did not restart within {self.policy.recovery_timeout_s:.0f} s"
                slot.give_up()

    def _all_gone(self) -> EvopruneError:
        errors = "; ".join(f"actor {s.index}: {s.last_error or 'gone'}" for s in self.slots)
        return EvopruneError(f"all {len(self.slots)} evaluator actors are gone, cannot finish the evaluation "
                             f"({errors}). Check the worker logs under the Ray session directory.")
