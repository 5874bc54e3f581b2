"""`evoprune search | resume`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from evoprune.cli.dashboard import Dashboard
from evoprune.cli.progress import show_library_log
from evoprune.errors import EvopruneError
from evoprune.export.run_view import display_text

console = Console()
SET_HELP = "Typed override KEY=VALUE (YAML value; evaluation.KEY for the evaluation section); repeatable."


def search(
    config: Path = typer.Option(Path("search_spaces/quick.yaml"), "--config", help="Search space YAML."),
    out: Path = typer.Option(..., "--out", help="Run directory (refused if it exists, unless --force)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing run directory."),
    generations: int = typer.Option(None, "--generations", help="Override the config's generations."),
    population: int = typer.Option(None, "--population", help="Override the config's population."),
    seed: int = typer.Option(None, "--seed", help="Override the config's seed."),
    overrides: list[str] = typer.Option(None, "--set", help=SET_HELP),
    workers: int = typer.Option(None, "--workers", help="Evaluator processes (Ray); default 1, in-process."),
    address: str = typer.Option(None, "--address", help="Ray cluster: auto or ray://HOST:PORT."),
) -> None:
    """Evolve pruning metrics; writes config, candidates.jsonl, checkpoints and best.json into --out."""
    from evoprune.jobs.search import search_job

    show_library_log()
    from evoprune.search.config import load_config, parse_overrides, with_overrides

    flags = {"generations": generations, "population": population, "seed": seed}
    changes = {**parse_overrides(overrides), **{k: v for k, v in flags.items() if v is not None}}
    cfg = with_overrides(load_config(config), changes)
    _check_workers(workers)
    with Dashboard(cfg.generations) as dashboard:
        payload = search_job(cfg, out, force=force, workers=workers, address=address, on_generation=dashboard.update)
    console.print(results_table(payload))


def resume(
    run: Path = typer.Argument(..., help="Run directory to continue."),
    generations: int = typer.Option(None, "--generations", help="Extend the run to this many generations."),
    overrides: list[str] = typer.Option(None, "--set", help=SET_HELP + " Run-defining keys cannot change."),
    workers: int = typer.Option(None, "--workers", help="Evaluator processes (Ray)."),
    address: str = typer.Option(None, "--address", help="Ray cluster: auto or ray://HOST:PORT."),
) -> None:
    """Continue a run from its last checkpoint (same seed, same result as an uninterrupted run)."""
    from evoprune.jobs.search import resume_config, search_job

    show_library_log()
    from evoprune.search.config import parse_overrides

    if not run.is_dir():
        raise EvopruneError(f"run directory not found: {run}")
    _check_workers(workers)
    changes = parse_overrides(overrides) | ({} if generations is None else {"generations": generations})
    cfg = resume_config(run, changes)
    with Dashboard(cfg.generations) as dashboard:
        payload = search_job(cfg, run, resume=True, workers=workers, address=address,
                             on_generation=dashboard.update)
    console.print(results_table(payload))


def _check_workers(workers: int | None) -> None:
    if workers is not None and workers < 1:
        raise EvopruneError(f"--workers must be >= 1, got {workers}")


def _ppl(row: dict) -> str:
    if row["perplexity"] is not None:
        return f"{row['perplexity']:.2f}"
    return "failed" if row.get("perplexity_error") else "-"


def results_table(payload: dict) -> Table:
    """The best formulas and the built-in baselines in one table, perplexity under the same protocol."""
    protocol = payload.get("protocol", {})
    mode = protocol.get("rescore_mode", "dense")
    setting = protocol.get("rescore_setting") or {}
    at = f", {setting.get('sparsity')} {setting.get('pattern')}" if setting else ""
    table = Table(title=f"best recipes and baselines (perplexity: {mode} protocol{at}, evaluation split)")
    second = any(row.get("model_fitness") is not None for row in payload["best"])  # reselect_top was on
    columns = ("", "recipe", "fitness", *(("KL (reselect)",) if second else ()), "size", "perplexity")
    for col in columns:
        table.add_column(col)
    for i, row in enumerate(payload["best"][:5]):
        kl = () if not second else (f"{row['model_fitness']:.4f}" if row.get("model_fitness") is not None else "-",)
        table.add_row(f"#{i + 1}", row["text"], f"{row['fitness']:.5f}", *kl, str(row["size"]), _ppl(row))
    for row in payload["baselines"]:
        table.add_row(row["method"], display_text(row["formula"]), "-", *(("-",) if second else ()), "-", _ppl(row))
    cache = payload.get("cache", {})
    if cache:
        table.caption = (f"{cache['candidates']} candidates, {cache['evaluations']} evaluated; canonical-cache hits "
                         f"{cache['canonical_hit_rate']:.0%}, mask-hash hits {cache['mask_hash_hit_rate']:.0%}")
    return table


def register(app: typer.Typer) -> None:
    app.command("search")(search)
    app.command("resume")(resume)
