"""Rich progress bars for long steps in a terminal; one plain line per stage otherwise (CI logs stay short)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

err_console = Console(stderr=True)


@contextmanager
def stage_progress() -> Iterator[Callable[[str, int, int], None]]:
    """Yields `report(stage, increment, total)`; a stage restarts when its bar completes."""
    if not err_console.is_terminal:
        started: set[str] = set()

        def plain(stage: str, _k: int, total: int) -> None:
            if stage not in started:
                started.add(stage)
                print(f"[evoprune] {stage} ({total} steps)", file=sys.stderr, flush=True)

        yield plain
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as bars:
        tasks: dict[str, int] = {}

        def report(stage: str, k: int, total: int) -> None:
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
