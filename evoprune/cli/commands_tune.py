"""`evoprune tune`: AdaPruner's TPE search over calibration windows and metric weights (evoprune.jobs.tune),
validated before the model loads and before --out is touched."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer
from rich.console import Console

from evoprune.cli import options as opt

console = Console()


def tune(
    config: Path = typer.Option(Path("search_spaces/adapruner.yaml"), "--config", help="Tune config YAML."),
    out: Path = typer.Option(..., "--out", help="Run directory; rerunning the same config on it continues the "
                             "study (another config is refused)."),
    trials: int = typer.Option(None, "--trials", help="Override the config's n_trials (extend a run)."),
    save: Path = typer.Option(None, "--save", help="Also write the shrunk model (an HF directory) here."),
    force: bool = typer.Option(False, "--force", help="Overwrite a non-empty --save directory."),
) -> None:
    """Search calibration windows and metric weights with Optuna TPE, prune with the best, report test ppl."""
    from evoprune.jobs.tune import check_run_dir, check_tune_inputs, tune_job
    from evoprune.jobs.tune_config import load_tune_config
    from evoprune.paths import check_output_dir

    cfg = load_tune_config(config)
    if trials is not None:
        cfg = replace(cfg, n_trials=trials)
    check_tune_inputs(cfg)
    check_run_dir(out, cfg)
    if save is not None:
        check_output_dir(save, force, what="--save directory")
    loaded = opt.load(cfg.model, cfg.device, cfg.dtype)

    def on_trial(trial) -> None:
        console.print(f"trial {trial.number}: objective perplexity {trial.value:.3f}", highlight=False, soft_wrap=True)

    report = tune_job(loaded, cfg, out, save, force, on_trial)
    best, params = report["best"], report["params"]
    weights = ", ".join(f"{m} {w:.2f}" for m, w in best["weights"].items())
    console.print(f"best trial {best['number']} of {best['complete_trials']}: objective perplexity "
                  f"{best['value']:.3f} (dense {best['dense_objective']:.3f}); weights {weights}; windows "
                  f"{best['windows']}", highlight=False, soft_wrap=True)
    latency = f"; forward latency {report['latency']['ratio']:.2f}x dense" if report["latency"] else ""
    saved = (f"; saved to {report['saved']} (reload max |Δlogit| {report['reload_max_abs_diff']:.2e})"
             if "saved" in report else "")
    console.print(f"pruned {cfg.structure} ({cfg.widths}): removed {params['removed_decoder']:,} decoder parameters "
                  f"({params['removed_fraction_of_decoder']:.4f}); {cfg.eval_data} test perplexity "
                  f"{report['test_perplexity']:.2f}{latency}{saved} -> {out}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("tune")(tune)
