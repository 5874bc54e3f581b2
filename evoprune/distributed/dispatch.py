"""The dispatch loop: keeps every live actor busy with `ray.wait`, re-queues the candidates of actors that die.

Results are written by input index, so the outcome never depends on which actor finished first.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from evoprune.distributed.factory import penalty_result
from evoprune.distributed.slots import DEAD, READY, RECOVERING, ActorSlot, DispatchPolicy
from evoprune.errors import EvopruneError


def _death_errors() -> tuple[type[BaseException], ...]:
    from ray.exceptions import ActorUnschedulableError, RayActorError

    return RayActorError, ActorUnschedulableError


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

        deaths = _death_errors()
        results: list[dict[str, Any] | None] = [None] * len(formulas)
        queue: deque[int] = deque(range(len(formulas)))
        attempts = [0] * len(formulas)
        tasks: dict[Any, tuple[ActorSlot, int, int]] = {}  # ref -> (slot, candidate index, slot epoch at submit)
        remaining = len(formulas)
        while remaining:
            self._submit(formulas, queue, tasks)
            probes = {s.probe: s for s in self.slots if s.state == RECOVERING}
            if not tasks and not probes:
                raise self._all_gone()
            ready, _ = ray.wait([*tasks, *probes], num_returns=1, timeout=self.policy.tick_s)
            for ref in ready:
                if ref in probes:
                    self._settle_probe(probes[ref], ref, deaths)
                    continue
                slot, idx, epoch = tasks.pop(ref)
                try:
                    results[idx] = ray.get(ref)
                    remaining -= 1
                except deaths as exc:
                    slot.died(epoch, exc)
                    attempts[idx] += 1
                    if attempts[idx] >= self.policy.max_attempts:
                        reason = f"evaluator worker died {attempts[idx]} times on this candidate ({slot.last_error})"
                        results[idx] = penalty_result(formulas[idx], reason)
                        remaining -= 1
                    else:
                        queue.appendleft(idx)  # next free actor takes it
            for slot in self.slots:
                if slot.overdue(self.policy.recovery_timeout_s):
                    slot.last_error = f"did not restart within {self.policy.recovery_timeout_s:.0f} s"
                    slot.give_up()
        return results  # type: ignore[return-value]  # every index was filled before `remaining` reached 0

    def settle(self, timeout_s: float) -> None:
        """Wait until no actor is restarting (each is back or given up), at most `timeout_s` seconds."""
        import time

        import ray

        deaths = _death_errors()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            probes = {s.probe: s for s in self.slots if s.state == RECOVERING}
            if not probes:
                return
            ready, _ = ray.wait(list(probes), num_returns=1, timeout=self.policy.tick_s)
            for ref in ready:
                self._settle_probe(probes[ref], ref, deaths)
            for slot in self.slots:
                if slot.overdue(self.policy.recovery_timeout_s):
                    slot.last_error = f"did not restart within {self.policy.recovery_timeout_s:.0f} s"
                    slot.give_up()

    def _submit(self, formulas: list[str], queue: deque[int], tasks: dict[Any, tuple[ActorSlot, int, int]]) -> None:
        """Top every ready actor up to `queue_depth` in-flight candidates, round-robin so work spreads evenly."""
        load = {id(s): 0 for s in self.slots}
        for slot, _, _ in tasks.values():
            load[id(slot)] += 1
        while queue:
            free = [s for s in self.slots if s.state == READY and load[id(s)] < self.policy.queue_depth]
            if not free:
                return
            for slot in free:
                if not queue:
                    return
                idx = queue.popleft()
                tasks[slot.actor.evaluate.remote(formulas[idx])] = (slot, idx, slot.epoch)
                load[id(slot)] += 1

    def _settle_probe(self, slot: ActorSlot, ref: Any, deaths: tuple[type[BaseException], ...]) -> None:
        import ray

        try:
            slot.probe_answered(ray.get(ref))
        except deaths as exc:
            slot.probe_failed(exc, self.policy.max_restarts)

    def _all_gone(self) -> EvopruneError:
        errors = "; ".join(f"actor {s.index}: {s.last_error or 'gone'}" for s in self.slots)
        return EvopruneError(f"all {len(self.slots)} evaluator actors are gone, cannot finish the evaluation "
                             f"({errors}). Check the worker logs under the Ray session directory.")
