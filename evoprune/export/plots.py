"""The report's figures, as PNG files: fitness per generation, the Pareto front of fitness vs size, and the
perplexity of the best formulas beside the baselines. matplotlib's object API with the Agg canvas: no pyplot, no
global backend switch, no display needed. A figure without data is not drawn (its function returns None)."""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from evoprune.export.run_view import RunView, display_text

FITNESS_PNG, PARETO_PNG, PERPLEXITY_PNG = "fitness.png", "pareto.png", "perplexity.png"
LABEL_CHARS = 38


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _label(canonical: str) -> str:
    text = display_text(canonical)
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _spans_decades(values: list[float]) -> bool:
    """Fitness and perplexity may span decades: then a log axis (only if every value is positive)."""
    return bool(values) and min(values) > 0 and max(values) / min(values) > 20


def fitness_plot(run: RunView, path: Path) -> Path | None:
    """Best and median fitness of every generation (lower is better)."""
    history = [h for h in run.history if _finite(h.get("best"))]
    if not history:
        return None
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    gens = [h["generation"] for h in history]
    best = [h["best"] for h in history]
    medians = [(h["generation"], h["median"]) for h in history if _finite(h.get("median"))]
    ax.plot(gens, best, "o-", color="tab:blue", label="best")
    if medians:
        ax.plot(*zip(*medians, strict=True), "s--", color="tab:orange", label="median")
    values = best + [m for _, m in medians]
    if _spans_decades(values):
        ax.set_yscale("log")
    ax.set_xlabel("generation")
    ax.set_ylabel(f"fitness ({run.config.get('evaluation', {}).get('fitness', '?')}; lower is better)")
    ax.set_xticks(gens if len(gens) <= 20 else gens[:: math.ceil(len(gens) / 20)])
    ax.set_title(f"{run.path.name}: fitness per generation ({run.status})")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def pareto_plot(run: RunView, path: Path) -> Path | None:
    """Every distinct evaluated formula (grey) and the non-dominated ones (fitness vs number of nodes)."""
    front = [p for p in run.pareto if _finite(p.get("fitness"))]
    points = run.evaluated_points()
    if not front and not points:
        return None
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    if points:
        ax.scatter([p[0] for p in points], [p[1] for p in points], s=14, color="0.65", label="evaluated formulas")
    if front:
        sizes, fits = [p["size"] for p in front], [p["fitness"] for p in front]
        ax.step(sizes, fits, where="post", color="tab:red", alpha=0.6)
        ax.scatter(sizes, fits, s=36, color="tab:red", zorder=3, label="Pareto front")
        for p in front[:8]:
            ax.annotate(_label(p["canonical"]), (p["size"], p["fitness"]), textcoords="offset points",
                        xytext=(5, 4), fontsize=7)
    values = [p[1] for p in points] + [p["fitness"] for p in front]
    if _spans_decades(values):
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("formula size (nodes)")
    ax.set_ylabel("fitness (lower is better)")
    ax.set_title(f"{run.path.name}: fitness vs size")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def perplexity_rows(run: RunView) -> list[tuple[str, float, str]]:
    """(label, perplexity, kind) for every best formula with a measured perplexity, then every baseline."""
    rows = [(f"#{i + 1} {_label(r['canonical'])}", float(r["perplexity"]), "found")
            for i, r in enumerate(run.best_rows) if _finite(r.get("perplexity"))]
    rows += [(f"{b['method']}", float(b["perplexity"]), "baseline") for b in run.baselines
             if _finite(b.get("perplexity"))]
    return rows


def perplexity_plot(run: RunView, path: Path) -> Path | None:
    """Horizontal bars: the re-scored best formulas (blue) beside the built-in baselines (grey), same protocol."""
    rows = perplexity_rows(run)
    if not rows:
        return None
    fig = Figure(figsize=(6.8, 1.2 + 0.42 * len(rows)))
    ax = fig.add_subplot()
    labels, values = [r[0] for r in rows], [r[1] for r in rows]
    colors = ["tab:blue" if r[2] == "found" else "0.6" for r in rows]
    ys = list(range(len(rows)))[::-1]
    ax.barh(ys, values, color=colors)
    ax.set_yticks(ys, labels, fontsize=8)
    if _spans_decades(values):
        ax.set_xscale("log")
    for y, v in zip(ys, values, strict=True):
        ax.annotate(f"{v:.4g}", (v, y), textcoords="offset points", xytext=(3, -3), fontsize=7)
    ax.set_xlabel("perplexity (evaluation split; lower is better)")
    ax.set_title(f"{run.path.name}: best formulas (blue) vs baselines (grey)")
    ax.margins(x=0.15)
    return _save(fig, path)


def write_plots(run: RunView, out: Path) -> dict[str, Path | None]:
    """All three figures into `out`; None for a figure the run has no data for yet (and an older file of that
    name is removed, so the report never shows a figure of an earlier state)."""
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for key, draw, name in (("fitness", fitness_plot, FITNESS_PNG), ("pareto", pareto_plot, PARETO_PNG),
                            ("perplexity", perplexity_plot, PERPLEXITY_PNG)):
        written[key] = draw(run, out / name)
        if written[key] is None:
            (out / name).unlink(missing_ok=True)
    return written
