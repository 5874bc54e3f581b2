"""A read-only view of a run directory (format: evoprune/search/run_dir.py). Every file but config.yaml is
optional, so a run that is still going (checkpoint, no best.json yet) can be exported, plotted and listed: what
best.json would hold is then derived from the checkpoint's canonical-form cache. Nothing here runs code from the
directory (all files are JSON/YAML)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from evoprune.errors import EvopruneError
from evoprune.fitness.candidate import parse_candidate
from evoprune.formula import parse_formula, to_text
from evoprune.search import run_dir
from evoprune.search.ranking import pareto_front
from evoprune.search.report import best_rows as report_rows
from evoprune.search.report import recipe_text

STATUSES = ("finished", "in progress", "empty")


def display_text(canonical: str) -> str:
    """The one-line unicode rendering (|W|·X^0.5) of a canonical formula or recipe (`|W|·X + obs`); the text
    itself if it does not parse."""
    try:
        if canonical.lstrip().startswith("{"):
            return recipe_text(parse_candidate(canonical))
        return to_text(parse_formula(canonical))
    except EvopruneError:
        return canonical


@dataclass
class RunView:
    path: Path
    config: dict
    checkpoint: dict | None = None
    best_payload: dict | None = None

    @classmethod
    def open(cls, path: Path) -> RunView:
        path = Path(path)
        if not path.is_dir():
            raise EvopruneError(f"run directory not found: {path}")
        config = run_dir.read_config(path) or {}
        if not isinstance(config, dict):
            raise EvopruneError(f"{path / run_dir.CONFIG} is not a mapping")
        return cls(path, config, run_dir.load_checkpoint(path), run_dir.read_best(path))

    # -- progress -------------------------------------------------------------------------------------------
    @property
    def generations_done(self) -> int:
        if self.checkpoint is not None:
            return int(self.checkpoint.get("generation", -1)) + 1
        return len(self.best_payload.get("history", [])) if self.best_payload else 0

    @property
    def generations_total(self) -> int | None:
        total = self.config.get("generations")
        return total if isinstance(total, int) else None

    @property
    def status(self) -> str:
        """finished: best.json covers the last checkpoint (a resumed, extended run is in progress again until
        its new best.json); in progress: a generation is checkpointed; empty: nothing evaluated yet."""
        if self.best_payload is not None and len(self.best_payload.get("history", [])) >= self.generations_done:
            return "finished"
        return "in progress" if self.generations_done > 0 else "empty"

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    # -- results (best.json when finished, else derived from the checkpoint) --------------------------------
    @property
    def history(self) -> list[dict]:
        if self.finished:
            return self.best_payload.get("history", [])
        return (self.checkpoint or {}).get("history", [])

    @property
    def cache(self) -> dict:
        """canonical formula -> {fitness, size, ...}: every formula the run evaluated (checkpoint only)."""
        return (self.checkpoint or {}).get("cache", {})

    @cached_property
    def best_rows(self) -> list[dict]:
        """Best first: formula, canonical, fitness, size, perplexity (None unless measured), text, latex."""
        if self.finished:
            return list(self.best_payload.get("best", []))
        return report_rows({"cache": self.cache}, rescore_top=0, perplexity_fn=None)  # as best.json would hold

    @property
    def pareto(self) -> list[dict]:
        if self.finished:
            return self.best_payload.get("pareto", [])
        return pareto_front(self.cache)

    @property
    def baselines(self) -> list[dict]:
        return (self.best_payload or {}).get("baselines", []) if self.finished else []

    @property
    def protocol(self) -> dict:
        return (self.best_payload or {}).get("protocol", {}) or {}

    def evaluated_points(self) -> list[tuple[int, float, str]]:
        """(size, fitness, canonical) of every distinct formula with a finite fitness."""
        points = [(int(r["size"]), float(r["fitness"]), form) for form, r in self.cache.items()
                  if r.get("fitness") is not None and math.isfinite(r["fitness"]) and "size" in r]
        return sorted(points)
