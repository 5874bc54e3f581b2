"""`evoprune tune`: AdaPruner's loop. Optuna TPE picks calibration windows from a validation pool and the weights
of a mix of structured metrics, scored by perplexity on other validation windows; the best trial then prunes
the model, which is measured on the test split once, at the end.

A run directory holds `config.yaml` (written first), `study.db` (Optuna's SQLite storage: every trial),
`trials.json`, `best.json` and `report.json`. Running the same config on it again continues the study up to
`n_trials` (the one key that may change); another config, or a directory that is not a tune run, is refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from evoprune.data.protocol import PerplexitySpec, evaluation_windows, protocol_record
from evoprune.data.text import describe_source, load_text
from evoprune.errors import EvopruneError
from evoprune.jobs.structured import StructuredSpec, latency_ids
from evoprune.jobs.tune_config import FREE_KEYS, TuneConfig, config_from_dict
from evoprune.jobs.tune_problem import TuneProblem
from evoprune.jobs.tune_space import decode, run_tune
from evoprune.model.loading import LoadedModel, model_path
from evoprune.structured.measure import count_params, forward_latency
from evoprune.structured.save import reload_max_abs_diff, save_shrunk
from evoprune.structured.tpe import complete_trials, open_study

CONFIG_FILE, STUDY_FILE = "config.yaml", "study.db"


def check_tune_inputs(cfg: TuneConfig) -> None:
    """Everything checkable before the model loads: data (never a test split for the search), device, windows
    that fit the model's context, and a structure/ratio/widths the model's shape admits."""
    from transformers import AutoConfig

    from evoprune.jobs.inputs import check_calibration_text, check_model_inputs, check_not_test_split
    from evoprune.model.loading import resolve_device, resolve_dtype

    check_not_test_split(cfg.data, cfg.eval_data)
    check_calibration_text(cfg.data, cfg.seqlen)
    size, windows = len(load_text(cfg.data, "calib").encode("utf-8")), cfg.pool + cfg.objective_windows
    if size < windows * cfg.seqlen:  # a token is at least a byte; the exact count is checked once tokenized
        raise EvopruneError(f"the validation text ({size:,} bytes) cannot hold pool + objective_windows = {windows} "
                            f"windows of {cfg.seqlen} tokens")
    load_text(cfg.eval_data, "eval")
    resolve_dtype(cfg.dtype, resolve_device(cfg.device))
    check_model_inputs(cfg.model, [], None, {"seqlen": cfg.seqlen, "eval_seqlen": cfg.eval_seqlen})
    try:
        config = AutoConfig.from_pretrained(model_path(cfg.model))
    except (OSError, ValueError) as exc:
        raise EvopruneError(f"cannot read the config of {cfg.model!r}: {str(exc).splitlines()[0]}") from exc
    StructuredSpec(cfg.structure, cfg.ratio, "mix", cfg.widths, cfg.tolerance).check(config)


def check_run_dir(out: Path, cfg: TuneConfig) -> bool:
    """True when `out` holds a tune run of the same config (to continue); False when it is new or empty."""
    if out.exists() and not out.is_dir():
        raise EvopruneError(f"run directory {out} exists and is not a directory")
    saved_file = out / CONFIG_FILE
    if not saved_file.is_file():
        if out.exists() and any(out.iterdir()):
            raise EvopruneError(f"{out} exists, is not empty and is not a tune run (no {CONFIG_FILE}); choose "
                                "another --out")
        return False
    try:
        saved = config_from_dict(yaml.safe_load(saved_file.read_text()) or {}).to_dict()
    except (yaml.YAMLError, EvopruneError) as exc:
        raise EvopruneError(f"{saved_file} cannot be read back ({str(exc).splitlines()[0]}); choose another "
                            "--out") from None
    mine = cfg.to_dict()
    differ = [k for k in mine if k not in FREE_KEYS and mine[k] != saved[k]]
    if differ:
        key = differ[0]
        raise EvopruneError(f"{out} holds a tune run with another config ({key}: {saved[key]!r} there, "
                            f"{mine[key]!r} here); rerun with {saved_file} or choose another --out")
    return True


def _trial_row(trial) -> dict:
    return {"number": trial.number, "state": trial.state.name, "value": trial.value, "params": trial.params}


def _write_json(path: Path, payload: dict | list) -> None:
    path.write_text(json.dumps(payload, indent=2) + "\n")


def tune_job(loaded: LoadedModel, cfg: TuneConfig, out: Path, save: Path | None = None, force: bool = False,
             on_trial: Callable | None = None) -> dict:
    """Run (or continue) the study in `out`, prune `loaded.model` in place with the best trial, measure it on
    the test split; `save`: also write the shrunk model there. Returns the report written to `out/report.json`."""
    resumed = check_run_dir(out, cfg)
    start = time.perf_counter()
    problem = TuneProblem(loaded, cfg)  # before `out` is touched: too short a validation text fails here
    out.mkdir(parents=True, exist_ok=True)
    # before any trial, so a stopped run is recognised; rewritten on a rerun, whose n_trials may differ
    (out / CONFIG_FILE).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    spec = problem.spec()
    study = open_study(f"sqlite:///{(out / STUDY_FILE).resolve()}")
    run_tune(study, cfg, lambda params: problem.objective(params, spec), on_trial)
    search_seconds = time.perf_counter() - start
    best = study.best_trial
    choice = decode(best.params, cfg)
    _write_json(out / "trials.json", [_trial_row(t) for t in study.trials])
    best_record = {**_trial_row(best), "objective": "perplexity on the objective windows (validation)",
                   "windows": list(choice.windows), "weights": choice.weights,
                   "dense_objective": problem.dense_objective, "complete_trials": len(complete_trials(study))}
    _write_json(out / "best.json", best_record)
    report = final_report(loaded, problem, best.params, spec, cfg)
    report.update(best=best_record, resumed=resumed, seconds={"search": search_seconds, **report["seconds"]})
    if save is not None:
        from evoprune.paths import StagedDir

        with StagedDir(save, force, what="--save directory") as staged:
            save_shrunk(loaded.model, loaded.tokenizer, staged.path, report)
            report["reload_max_abs_diff"] = reload_max_abs_diff(loaded.model, staged.path,
                                                                latency_ids(loaded)[:, :128])
            _write_json(staged.path / "report.json", report)
        report["saved"] = str(save)
    _write_json(out / "report.json", report)
    return report


def final_report(loaded: LoadedModel, problem: TuneProblem, params: dict, spec: StructuredSpec,
                 cfg: TuneConfig) -> dict:
    """Shrink `loaded.model` by `params`; test perplexity (the prune --structure protocol), exact parameter
    counts and forward latency against the dense model, measured in this run."""
    from evoprune.data.perplexity import perplexity

    ids, repeats = latency_ids(loaded), cfg.latency_repeats
    dense_params = count_params(loaded.model)
    dense_latency = forward_latency(loaded.model, ids, repeats) if repeats else None
    start = time.perf_counter()
    selection = problem.apply(loaded.model, params, spec)
    prune_seconds = time.perf_counter() - start
    evaluation = PerplexitySpec(cfg.eval_data, cfg.eval_seqlen, cfg.eval_max_tokens or None)
    test_ppl = perplexity(loaded.model, evaluation_windows(loaded, evaluation))
    pruned = count_params(loaded.model)
    latency = None
    if repeats:
        pruned_latency = forward_latency(loaded.model, ids, repeats)
        latency = {"input": list(ids.shape), "repeats": repeats, "dense_s": dense_latency, "pruned_s": pruned_latency,
                   "ratio": pruned_latency / dense_latency}
    protocol = protocol_record(loaded, None, evaluation)
    protocol["calibration"] = {"data": cfg.data, "split": "calib", "source": describe_source(cfg.data, "calib"),
                               "seqlen": cfg.seqlen, "pool": cfg.pool, "choose": cfg.choose,
                               "objective_windows": cfg.objective_windows, "split_seed": cfg.split_seed}
    return {
        "protocol": protocol, "config": cfg.to_dict(),
        "test_perplexity": test_ppl, "widths": selection.widths(),
        "params": {"dense": dense_params, "pruned": pruned, "removed_decoder": dense_params["decoder"]
                   - pruned["decoder"], "removed_fraction_of_decoder": (dense_params["decoder"]
                                                                         - pruned["decoder"])
                   / dense_params["decoder"]},
        "latency": latency,
        "seconds": {"final_prune": prune_seconds},
    }
