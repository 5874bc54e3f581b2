"""Per-actor bookkeeping for the dispatcher: is an actor ready, restarting, or gone for good."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

READY = "ready"
RECOVERING = "recovering"  # died; Ray is restarting it; a whoami() probe tells us when it is back
DEAD = "dead"              # restarts exhausted, its node is gone, or it did not come back in time


@dataclass(frozen=True)
class DispatchPolicy:
    """Knobs of the dispatch loop (all have working defaults)."""

    queue_depth: int = 2             # tasks queued per actor: the next candidate is already there when one ends
    max_restarts: int = 4            # Ray restarts of one actor before it is given up (a poison candidate: ≤ 4)
    max_attempts: int = 3            # deaths one candidate may cause before it is scored as a penalty
    recovery_timeout_s: float = 300.0  # a restart that takes longer (e.g. no node can host it) drops the actor
    tick_s: float = 0.5              # how often the loop wakes up to check recovery deadlines


@dataclass(eq=False)
class ActorSlot:
    """One actor handle plus its state. `epoch` grows at each death so late errors of an old life are told apart."""

    actor: Any
    index: int
    state: str = READY
    epoch: int = 0
    probe: Any = None
    probe_failures: int = 0
    recovering_since: float = 0.0
    deaths: int = 0
    last_error: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def died(self, epoch: int, error: BaseException) -> bool:
        """Record a death seen by a task of life `epoch`; True if it is news (the first error of that life)."""
        self.last_error = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        if self.state != READY or epoch != self.epoch:
            return False
        self.epoch += 1
        self.deaths += 1
        self.state = RECOVERING
        self.recovering_since = time.monotonic()
        self.probe_failures = 0
        self.probe = self.actor.whoami.remote()
        return True

    def probe_answered(self, info: dict[str, Any]) -> None:
        self.state, self.probe, self.probe_failures, self.info = READY, None, 0, info

    def probe_failed(self, error: BaseException, max_restarts: int) -> None:
        """A failed probe means it died again or is dead for good; Ray stops restarting after `max_restarts`."""
        self.last_error = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        self.probe_failures += 1
        if self.probe_failures > max_restarts:
            self.give_up()
        else:
            self.probe = self.actor.whoami.remote()

    def overdue(self, timeout_s: float) -> bool:
        return self.state == RECOVERING and time.monotonic() - self.recovering_since > timeout_s

    def give_up(self) -> None:
        import ray

        self.state, self.probe = DEAD, None
        # Cancels a restart Ray may still be trying (e.g. waiting forever for a lost node's custom resource).
        ray.kill(self.actor, no_restart=True)
