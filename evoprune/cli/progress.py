"""Rich progress bars for long steps in a terminal; plain lines otherwise: a stage's start, its count every
10 s, its end (a log file shows where a long run is without filling up)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

err_console = Console(stderr=True)


class LineProgress:
    """`report(stage, increment, total)` as plain lines: the stage's start, then its count at most every
    `every` seconds, and its end with the time taken. A stage restarts when it completes; total 0 = a message."""

    def __init__(self, every: float = 10.0, stream: TextIO | None = None) -> None:
        self.every = every
        self.stream = stream
        self.stages: dict[str, list[float]] = {}  # stage -> [done, total, start, last line]

    def _print(self, text: str) -> None:
        print(f"[evoprune] {text}", file=self.stream or sys.stderr, flush=True)

    def __call__(self, stage: str, k: int, total: int) -> None:
        if total <= 0:
            self._print(stage)
            return
        now = time.monotonic()
        state = self.stages.get(stage)
        if state is None or state[0] >= state[1]:
            state = self.stages[stage] = [0, total, now, now]
            self._print(f"{stage} ({total} steps)")
        state[0] += k
        if state[0] >= state[1]:
            self._print(f"{stage} {int(state[0])}/{total} done in {now - state[2]:.1f} s")
        elif now - state[3] >= self.every:
            state[3] = now
            self._print(f"{stage} {int(state[0])}/{total} ({now - state[2]:.0f} s)")


@contextmanager
def stage_progress() -> Iterator[Callable[[str, int, int], None]]:
    """Yields `report(stage, increment, total)`; a stage restarts when its bar completes."""
    if not err_console.is_terminal:
        yield LineProgress()
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as bars:
        tasks: dict[str, int] = {}

        def report(stage: str, k: int, total: int) -> None:
            if total <= 0:  # a message, not a stage
                bars.console.print(f"[evoprune] {stage}")
                return
            if stage not in tasks or bars.tasks[tasks[stage]].finished:
                if stage in tasks:
                    bars.remove_task(tasks[stage])
                tasks[stage] = bars.add_task(stage, total=total)
            bars.advance(tasks[stage], k)

        yield report


@contextmanager
def status(message: str) -> Iterator[None]:
    """A spinner for one opaque step (model loading)."""
    if err_console.is_terminal:
        with err_console.status(message):
            yield
    else:
        print(f"[evoprune] {message}", file=sys.stderr, flush=True)
        yield


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of each record (a test may have replaced it)."""

    evoprune_cli = True

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def show_library_log() -> None:
    """Library modules report through `logging` (never print): show evoprune's INFO and above as `[evoprune] ...`
    lines on stderr, once."""
    logger = logging.getLogger("evoprune")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("[evoprune] %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
