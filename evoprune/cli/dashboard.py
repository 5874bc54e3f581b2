"""Live view of a search: a rich dashboard in a terminal, one plain line per generation otherwise (CI logs)."""

from __future__ import annotations

import sys
import time

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from evoprune.export.run_view import display_text
from evoprune.search.ranking import hall_of_fame

SPARK = "▁▂▃▄▅▆▇█"


class Dashboard:
    """Pass `update` as `run_search(on_generation=...)`; use as a context manager around the run."""

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
        best = hall_of_fame(cache, 5)
        if self.live is None:
            formula = best[0][0] if best else "-"
            print(f"[evoprune] generation {stats['generation'] + 1}/{self.total} best {_fmt(stats['best'])} "
                  f"median {_fmt(stats['median'])} evals {stats['evaluations']} ({rate:.2f}/s) cache hits {hits:.0%} "
                  f"failures {stats['failures']} best formula {formula}", file=sys.stderr, flush=True)
            return
        self.live.update(self._render(best, rate, hits))

    def _render(self, best: list, rate: float, hits: float) -> Group:
        done = self.history[-1]["generation"] + 1
        bar = "█" * round(20 * done / self.total) + "·" * (20 - round(20 * done / self.total))
        head = f"generation {done}/{self.total} {bar}   {rate:.2f} evals/s   cache hits {hits:.0%}"
        top = Table(title="hall of fame", expand=True)
        for col, justify in (("fitness", "right"), ("size", "right"), ("formula", "left")):
            top.add_column(col, justify=justify)
        for form, result in best:
            top.add_row(f"{result['fitness']:.5f}", str(result["size"]), display_text(form))
        trend = Table(title=f"fitness history {_spark([h['best'] for h in self.history])}")
        for col in ("gen", "best", "median", "evals", "failures", "s"):
            trend.add_column(col, justify="right")
        for h in self.history[-8:]:
            trend.add_row(str(h["generation"]), _fmt(h["best"]), _fmt(h["median"]), str(h["evaluations"]),
                          str(h["failures"]), f"{h['seconds']:.1f}")
        return Group(Panel(head, title="evoprune search"), top, trend)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.5f}"


def _spark(values: list) -> str:
    """Best fitness per generation as a sparkline (lower is better, so a falling line is progress)."""
    finite = [v for v in values if v is not None]
    if not finite:
        return ""
    lo, hi = min(finite), max(finite)
    scale = (len(SPARK) - 1) / (hi - lo) if hi > lo else 0
    return "".join(" " if v is None else SPARK[round((v - lo) * scale)] for v in values[-30:])
