"""Live view of a search: a rich dashboard in a terminal, one plain line per generation otherwise (CI logs)."""

from __future__ import annotations

import sys
import time

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from evoprune.search.loop import ranked


class Dashboard:
    def __init__(self, total_generations: int, console: Console | None = None) -> None:
        self.console = console or Console()
        self.total = total_generations
        self.start = time.perf_counter()
        self.history: list[dict] = []
        self.live = Live(console=self.console, refresh_per_second=2) if self.console.is_terminal else None

    def __enter__(self) -> Dashboard:
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def update(self, stats: dict, cache: dict) -> None:
        self.history.append(stats)
        evals = sum(h["evaluations"] for h in self.history)
        rate = evals / max(time.perf_counter() - self.start, 1e-9)
        hits = sum(h["cache_hits"] for h in self.history) / max(sum(h["candidates"] for h in self.history), 1)
        best = ranked(cache)[:1]
        if self.live is None:
            formula = best[0][0] if best else "-"
            print(f"[evoprune] generation {stats['generation'] + 1}/{self.total} best {stats['best']} "
                  f"median {stats['median']} evals {stats['evaluations']} ({rate:.2f}/s) cache hits {hits:.0%} "
                  f"failures {stats['failures']} best formula {formula}", file=sys.stderr, flush=True)
            return
        self.live.update(self._render(cache, rate, hits))

    def _render(self, cache: dict, rate: float, hits: float) -> Group:
        progress = Table.grid()
        progress.add_row(f"generation {self.history[-1]['generation'] + 1}/{self.total}   "
                         f"{rate:.2f} evals/s   cache hits {hits:.0%}")
        top = Table(title="best formulas")
        for col in ("fitness", "formula"):
            top.add_column(col)
        for form, result in ranked(cache)[:5]:
            top.add_row(f"{result['fitness']:.5f}", form)
        trend = Table(title="fitness history")
        for col in ("gen", "best", "median", "evals", "failures"):
            trend.add_column(col, justify="right")
        for h in self.history[-8:]:
            trend.add_row(str(h["generation"]), _fmt(h["best"]), _fmt(h["median"]), str(h["evaluations"]),
                          str(h["failures"]))
        return Group(progress, top, trend)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.5f}"
