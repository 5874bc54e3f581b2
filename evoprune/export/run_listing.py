"""`evoprune runs`: one summary per run directory under a folder (a directory is a run if it holds config.yaml)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from evoprune.errors import EvopruneError
from evoprune.export.run_view import RunView
from evoprune.search import run_dir


@dataclass(frozen=True)
class RunSummary:
    path: Path
    status: str  # finished | in progress | empty | unreadable (with the reason in `formula`)
    generations_done: int
    generations_total: int | None
    best_fitness: float | None
    best_formula: str | None
    updated: float  # seconds since the newest file changed (a stopped run stays "in progress": this tells)


def _age(path: Path) -> float:
    mtimes = [p.stat().st_mtime for p in path.iterdir() if p.is_file()]
    return time.time() - max(mtimes, default=path.stat().st_mtime)


def summarize(path: Path) -> RunSummary:
    try:
        run = RunView.open(path)
        best = run.best_rows[0] if run.best_rows else None
        return RunSummary(path, run.status, run.generations_done, run.generations_total,
                          best["fitness"] if best else None,
                          (best.get("text") or best["canonical"]) if best else None, _age(path))
    except EvopruneError as exc:  # a damaged directory is listed, not fatal to the listing
        return RunSummary(path, "unreadable", 0, None, None, str(exc), _age(path))


def list_runs(root: Path) -> list[RunSummary]:
    """Every run directory directly under `root` (or `root` itself if it is one), by name."""
    root = Path(root)
    if not root.is_dir():
        raise EvopruneError(f"runs folder not found: {root}")
    if (root / run_dir.CONFIG).is_file():
        return [summarize(root)]
    return [summarize(p) for p in sorted(root.iterdir()) if p.is_dir() and (p / run_dir.CONFIG).is_file()]


def format_age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return "just now"
