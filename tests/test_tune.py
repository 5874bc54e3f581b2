"""`evoprune tune` (AdaPruner's loop): TPE reproducible from its seed, a stopped study continued equals an
uninterrupted one, the validation pool and objective windows are disjoint, bad input is one `error:` line.

Real weights: the embedded SmolLM2 cut to 4 blocks (conftest), 32-token windows, a handful of trials.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
import yaml

from evoprune.cli.app import main
from evoprune.jobs.tune_config import TuneConfig
from evoprune.jobs.tune_space import anchors, run_tune
from evoprune.structured.tpe import complete_trials, open_study

TINY = {"device": "cpu", "dtype": "float32", "ratio": 0.2, "seqlen": 32, "pool": 6, "choose": 2,
        "objective_windows": 2, "n_trials": 3, "n_startup_trials": 2, "eval_seqlen": 128, "eval_max_tokens": 512,
        "latency_repeats": 0}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from a second thread, and on a busy 2-core machine two threads each wait on the
    other (measured: a trial 0.6 s with one thread, 3-10 s with two)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(truncated_model_dir) -> TuneConfig:
    return TuneConfig(model=str(truncated_model_dir), **TINY, metrics=("taylor", "wanda"))


@pytest.fixture(scope="module")
def problem(tiny):
    from evoprune.jobs.tune_problem import TuneProblem
    from evoprune.model.loading import load_model

    return TuneProblem(load_model(tiny.model, "cpu", "float32"), tiny)


def _history(study) -> list[tuple[dict, float]]:
    return [(t.params, t.value) for t in complete_trials(study)]


def _toy(params: dict) -> float:
    """A cheap deterministic objective over the real search space (TPE's behaviour, not the model's)."""
    return sum(v for k, v in params.items() if k.startswith("weight_")) + 0.1 * params["window_0"]


def _run(cfg: TuneConfig, objective, storage=None, n: int | None = None):
    study = open_study(storage)
    run_tune(study, cfg, objective, n_trials=n)
    return study


def test_tpe_is_reproducible_from_its_seed():
    cfg = TuneConfig(n_trials=12, n_startup_trials=4, pool=16, choose=3, metrics=("flap", "wanda", "magnitude"))
    first, again = _history(_run(cfg, _toy)), _history(_run(cfg, _toy))
    other = _history(_run(replace(cfg, seed=1), _toy))
    assert first == again and len(first) == 12
    assert [p for p, _ in first] != [p for p, _ in other]
    assert min(v for _, v in first[4:]) < min(v for _, v in first[:4])  # TPE's trials improve on the random ones


def test_a_continued_study_equals_an_uninterrupted_one(tiny, problem, tmp_path):
    """Stop after 1 trial and leave the next RUNNING (as a killed process does), reopen the SQLite storage as a
    new process would, continue to 4: the completed trials equal those of one uninterrupted run, values included.
    Trials 0-1 are the anchors (Taylor alone, Wanda alone; the stale one is asked again), 2-3 are TPE's."""
    spec = problem.spec()

    def objective(params):
        return problem.objective(params, spec)

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    stopped = _run(tiny, objective, storage, n=1)
    stopped.enqueue_trial(anchors(tiny)[1])  # what run_trials does for slot 1, then the process dies mid-trial
    stopped.ask()
    continued = _run(tiny, objective, storage, n=4)
    uninterrupted = _run(tiny, objective, None, n=4)
    assert _history(continued) == _history(uninterrupted)
    assert [t.state.name for t in continued.trials].count("FAIL") == 1  # the stale trial; its slot asked again
    weights = [(p["weight_taylor"], p["weight_wanda"]) for p, _ in _history(continued)]
    assert weights[:2] == [(1.0, 0.0), (0.0, 1.0)] and len(set(weights)) == 4


def test_pool_and_objective_windows_are_disjoint():
    from evoprune.structured.pool import split_validation

    ids = torch.arange(1000)
    pool, objective = split_validation(ids, 16, 40, 10, seed=3)
    assert pool.shape == (40, 16) and objective.shape == (10, 16)
    assert not set(pool.flatten().tolist()) & set(objective.flatten().tolist())


def test_pool_moments_of_chosen_windows_equal_a_pass_over_them(problem):
    """A trial's statistics are sums of per-window rows: the same as calibrating on its windows alone."""
    from evoprune.structured.calibration import calibrate

    chosen = [4, 1, 4]  # a repeated slot weighs its window twice
    direct = calibrate(problem.loaded.model, problem.pool[chosen]).moments
    for key, acc in problem.moments.items():
        summed = acc.chosen(chosen)
        assert summed.tokens == direct[key].tokens
        torch.testing.assert_close(summed.variance(), direct[key].variance(), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(summed.rms(), direct[key].rms(), rtol=1e-5, atol=1e-6)


def _write(path, cfg: dict):
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.mark.slow
def test_cli_runs_continues_and_saves(truncated_model_dir, tmp_path, capsys):
    config = _write(tmp_path / "tune.yaml", {"model": str(truncated_model_dir), **TINY, "n_trials": 2})
    run, saved = tmp_path / "run", tmp_path / "model"
    assert main(["tune", "--config", config, "--out", str(run)]) == 0
    first = json.loads((run / "trials.json").read_text())
    assert main(["tune", "--config", config, "--out", str(run), "--trials", "3", "--save", str(saved)]) == 0
    trials = json.loads((run / "trials.json").read_text())
    assert trials[:2] == first and len(trials) == 3
    best, report = json.loads((run / "best.json").read_text()), json.loads((run / "report.json").read_text())
    assert best["complete_trials"] == 3 and len(best["windows"]) == TINY["choose"]
    assert report["test_perplexity"] > 1 and report["protocol"]["evaluation"]["split"] == "eval"
    assert report["params"]["removed_fraction_of_decoder"] >= 0.2
    assert report["reload_max_abs_diff"] < 1e-4 and (saved / "config.json").is_file()
    assert "test perplexity" in capsys.readouterr().out


def _bad(truncated_model_dir, **changes) -> dict:
    return {"model": str(truncated_model_dir), **TINY, **changes}


@pytest.mark.parametrize(("changes", "message"), [
    ({"popsize": 3}, "unknown tune config key 'popsize'"),
    ({"ratio": "lots"}, "'ratio' must be float"),
    ({"choose": 9}, "must not exceed pool"),
    ({"metrics": ["sparsegpt"]}, "not a per-weight score"),
    ({"structure": "blocks"}, "blocks is not supported"),
    ({"ratio": 0.99}, "out of reach"),
    ({"pool": 100000}, "cannot hold pool"),
])
def test_bad_config_is_one_error_line_and_writes_nothing(truncated_model_dir, tmp_path, capsys, changes, message):
    config = _write(tmp_path / "tune.yaml", _bad(truncated_model_dir, **changes))
    out = tmp_path / "run"
    assert main(["tune", "--config", config, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err
    assert not out.exists()


def test_calibrating_on_the_test_split_is_refused(truncated_model_dir, tmp_path, capsys):
    from evoprune.data.text import describe_source

    test_file = describe_source("wikitext2", "eval")
    config = _write(tmp_path / "tune.yaml", _bad(truncated_model_dir, data=test_file))
    assert main(["tune", "--config", config, "--out", str(tmp_path / "run")]) == 2
    assert "test split" in capsys.readouterr().err


def test_an_existing_directory_is_never_overwritten(truncated_model_dir, tmp_path, capsys):
    """Another config on a tune run, or a directory that is not a tune run: refused, every file untouched."""
    run = tmp_path / "run"
    run.mkdir()
    kept = yaml.safe_dump(TuneConfig(model=str(truncated_model_dir), **TINY).to_dict())
    (run / "config.yaml").write_text(kept)
    (run / "notes.txt").write_text("mine")
    config = _write(tmp_path / "tune.yaml", _bad(truncated_model_dir, seed=1))
    assert main(["tune", "--config", config, "--out", str(run)]) == 2
    assert "another config (seed: 0 there, 1 here)" in capsys.readouterr().err
    (run / "config.yaml").unlink()
    assert main(["tune", "--config", config, "--out", str(run)]) == 2
    assert "is not a tune run" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"] and (run / "notes.txt").read_text() == "mine"
