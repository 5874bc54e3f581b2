"""`evoprune search | resume`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from evoprune.errors import EvopruneError

console = Console()


def search(
    config: Path = typer.Option(Path("search_spaces/quick.yaml"), "--config", help="Search space YAML."),
    out: Path = typer.Option(..., "--out", help="Run directory (refused if it exists, unless --force)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing run directory."),
    generations: int = typer.Option(None, "--generations", help="Override the config's generations."),
    population: int = typer.Option(None, "--population", help="Override the config's population."),
    seed: int = typer.Option(None, "--seed", help="Override the config's seed."),
    workers: int = typer.Option(None, "--workers", help="Evaluator processes (Ray); default 1, in-process."),
    address: str = typer.Option(None, "--address", help="Ray cluster: auto, HOST:PORT or ray://HOST:PORT."),
) -> None:
    """Evolve pruning metrics; writes config, candidates.jsonl, checkpoints and best.json into --out."""
    from evoprune.jobs.search import search_job
    from evoprune.search.config import load_config, with_overrides

    cfg = with_overrides(load_config(config), generations=generations, population=population, seed=seed)
    _check_workers(workers)
    payload = search_job(cfg, out, force=force, workers=workers, address=address)
    console.print(results_table(payload))


def resume(
    run: Path = typer.Argument(..., help="Run directory to continue."),
    generations: int = typer.Option(None, "--generations", help="Extend the run to this many generations."),
    workers: int = typer.Option(None, "--workers", help="Evaluator processes (Ray)."),
    address: str = typer.Option(None, "--address", help="Ray cluster: auto, HOST:PORT or ray://HOST:PORT."),
) -> None:
    """Continue a run from its last checkpoint (same seed, same result as an uninterrupted run)."""
    from evoprune.jobs.search import resume_config, search_job

    if not run.is_dir():
        raise EvopruneError(f"run directory not found: {run}")
    _check_workers(workers)
    cfg = resume_config(run, {"generations": generations})
    payload = search_job(cfg, run, resume=True, workers=workers, address=address)
    console.print(results_table(payload))


def _check_workers(workers: int | None) -> None:
    if workers is not None and workers < 1:
        raise EvopruneError(f"--workers must be >= 1, got {workers}")


def results_table(payload: dict) -> Table:
    table = Table(title="best formulas and baselines (perplexity: dense statistics, evaluation split)")
    for col in ("formula", "fitness", "size", "perplexity"):
        table.add_column(col)
    for row in payload["best"][:5]:
        ppl = "-" if row["perplexity"] is None else f"{row['perplexity']:.2f}"
        table.add_row(row["canonical"], f"{row['fitness']:.5f}", str(row["size"]), ppl)
    for row in payload["baselines"]:
        table.add_row(f"[baseline] {row['method']}: {row['formula']}", "-", "-", f"{row['perplexity']:.2f}")
    return table


def register(app: typer.Typer) -> None:
    app.command("search")(search)
    app.command("resume")(resume)
