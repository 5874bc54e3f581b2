"""`evoprune export | report | runs`: a discovered metric out of the engine (a torch-only Python module, JSON,
LaTeX), a run as figures + report.md, and the list of runs. Nothing here loads a model."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from evoprune.errors import EvopruneError

console = Console()


def export(
    run: Path = typer.Argument(..., help="Run directory (finished or still going)."),
    rank: int = typer.Option(1, "--rank", help="Which formula: 1 = the best of the run."),
    out: Path = typer.Option(None, "--out", help="Output file (default: print to stdout)."),
    fmt: str = typer.Option(None, "--format", help="python, json or latex (default: from --out's suffix "
                            ".py/.json/.tex, else python)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out file."),
) -> None:
    """Export a discovered formula: a standalone torch-only module with importance(W, X, G, Hinv), JSON or LaTeX."""
    from evoprune.export.export_run import check_out, export_run, write_text
    from evoprune.export.formats import choose_format

    if rank < 1:
        raise EvopruneError(f"--rank must be >= 1, got {rank}")
    chosen = choose_format(fmt, out)
    if out is not None:
        check_out(out, force)  # before any work: an existing file is never replaced without --force
    text = export_run(run, rank, chosen)
    if out is None:
        sys.stdout.write(text)
        return
    write_text(out, text, force)
    console.print(escape(f"exported rank {rank} of {run} as {chosen} -> {out}"))


def report(
    run: Path = typer.Argument(..., help="Run directory (finished or still going)."),
    out: Path = typer.Option(None, "--out", help="Folder for report.md and the PNGs (default: the run directory)."),
) -> None:
    """Figures (fitness per generation, Pareto front, perplexity vs baselines) and report.md for a run."""
    from evoprune.export.run_report import write_report

    if out is not None and out.exists() and not out.is_dir():
        raise EvopruneError(f"--out {out} exists and is not a directory")
    path, figures = write_report(run, out)
    drawn = [p.name for p in figures.values() if p is not None]
    missing = [k for k, p in figures.items() if p is None]
    console.print(escape(f"report -> {path} (figures: {', '.join(drawn) or 'none'}"
                         + (f"; no data yet for: {', '.join(missing)})" if missing else ")")))


def runs(
    folder: Path = typer.Argument(Path("runs"), help="Folder holding run directories (default ./runs)."),
) -> None:
    """List run directories: status, generations, best fitness and best formula."""
    from evoprune.export.run_listing import list_runs

    summaries = list_runs(folder)
    if not summaries:
        console.print(escape(f"no run directories in {folder}"))
        return
    console.print(runs_table(summaries, folder))


def runs_table(summaries: list, folder: Path) -> Table:
    from evoprune.export.run_listing import format_age

    table = Table(title=escape(f"evoprune runs in {folder}"))
    for col, justify in (("run", "left"), ("status", "left"), ("generations", "right"), ("best fitness", "right"),
                         ("best formula", "left"), ("updated", "right")):
        table.add_column(col, justify=justify)
    styles = {"finished": "green", "in progress": "yellow", "empty": "dim", "unreadable": "red"}
    for s in summaries:
        fitness = "-" if s.best_fitness is None else f"{s.best_fitness:.5f}"
        table.add_row(escape(s.path.name), f"[{styles.get(s.status, 'default')}]{s.status}[/]",
                      f"{s.generations_done}/{s.generations_total or '?'}", fitness, escape(s.best_formula or "-"),
                      format_age(s.updated))
    return table


def register(app: typer.Typer) -> None:
    app.command("export")(export)
    app.command("report")(report)
    app.command("runs")(runs)
