"""Search configs, presets and the search/resume commands' bad-input paths (nothing here loads a model)."""

import pytest
import yaml

from evoprune.cli.app import main
from evoprune.errors import EvopruneError
from evoprune.jobs.search import resume_config
from evoprune.search import run_dir
from evoprune.search.config import (
    SearchConfig,
    config_from_dict,
    load_config,
    parse_overrides,
    pin_run_defining,
    with_overrides,
)


@pytest.fixture(autouse=True)
def no_model(monkeypatch):
    """Bad input must be refused before any evaluator (and its model) is built: fail fast if one is."""
    import evoprune.distributed

    def refuse(*args, **kwargs):
        raise AssertionError("an evaluation pool was opened")

    monkeypatch.setattr(evoprune.distributed, "open_pool", refuse)


def test_config_rejects_unknown_keys_and_bad_values():
    for raw, message in [({"popsize": 3}, "unknown search config key 'popsize'"),
                         ({"evaluation": {"nsample": 3}}, "unknown evaluation key 'nsample'"),
                         ({"operators": ["add", "frobnicate"]}, "operator 'frobnicate'"),
                         ({"operators": ["pow"]}, "powers"),
                         ({"population": 4, "elitism": 4}, "elitism"),
                         ({"population": "ten"}, "'population' must be int"),
                         ({"population": True}, "'population' must be int"),
                         ({"cx_prob": 1.5}, "cx_prob"),
                         ({"constants": [0.5, "x"]}, "'constants' item must be float"),
                         ({"evaluation": {"nsamples": 1.5}}, "'nsamples' must be int"),
                         ({"leaves": ["W", "G"], "evaluation": {"leaves": ["W", "X"]}}, "need evaluation.leaves")]:
        with pytest.raises(EvopruneError, match=message):
            config_from_dict(raw)


def test_typed_overrides():
    cfg = with_overrides(SearchConfig(), parse_overrides(["population=16", "evaluation.nsamples=8",
                                                          "operators=[add, mul]", "cx_prob=1"]))
    assert cfg.population == 16 and cfg.evaluation.nsamples == 8 and cfg.operators == ("add", "mul")
    assert cfg.cx_prob == 1.0 and isinstance(cfg.cx_prob, float)
    for bad, message in [(["population"], "KEY=VALUE"), (["a.b=1"], "dotted"), (["seed=1.5"], "must be int"),
                         (["nope=1"], "unknown search config key 'nope'")]:
        with pytest.raises(EvopruneError, match=message):
            with_overrides(SearchConfig(), parse_overrides(bad))


def test_pin_run_defining_keeps_the_checkpoint_values():
    saved = SearchConfig(population=12, seed=5).to_dict()
    pinned, changed = pin_run_defining(SearchConfig(population=30, generations=20, rescore_top=1), saved)
    assert (pinned.population, pinned.seed, pinned.generations, pinned.rescore_top) == (12, 5, 20, 1)
    assert changed == ["population", "seed"]


@pytest.mark.parametrize("name", ["quick", "quick-formula", "default", "pruner_zero", "metric-only", "reconstruct"])
def test_presets_load(name):
    cfg = load_config(f"search_spaces/{name}.yaml")
    assert set(cfg.leaves) <= set(cfg.evaluation.leaves)
    if name in ("quick", "quick-formula"):  # ~1-2 s per new candidate (a quarter of the rows): 10 min on 2 cores
        assert cfg.population * cfg.generations <= 320 and cfg.evaluation.fitness in ("layer", "fisher")
        assert cfg.evaluation.fitness_rows <= 0.25 and cfg.rescore_top <= 2
    if name == "pruner_zero":
        assert cfg.leaves == ("W", "X", "G") and cfg.constants == () and "zscore" in cfg.operators
    if name == "quick-formula":  # the formula search of earlier releases, as it was timed
        assert not cfg.recipe_genome
    if name in ("quick", "metric-only", "reconstruct"):  # recipe searches; allocation trees need a loss-aware fitness
        assert cfg.recipe_genome and cfg.selection == "nsga2" and cfg.allocation_tree
        assert cfg.evaluation.fitness == ("model" if name == "reconstruct" else "fisher")
    if name == "metric-only":  # no weight update: comparable to Wanda, RIA, Pruner-Zero
        assert cfg.update_choices == ("none",) and cfg.rescore_mode == "sequential"
    if name == "reconstruct":  # the update always on: comparable to SparseGPT
        assert cfg.update_choices == ("obs", "sweep") and cfg.rescore_mode == "sequential"
        assert cfg.seed_baselines and cfg.reselect_top == 0  # SparseGPT's own recipe is in generation 0


def test_search_refuses_an_existing_run_dir_without_force(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("precious")
    assert main(["search", "--config", "search_spaces/quick.yaml", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists" in err[0] and "--force" in err[0]
    assert (tmp_path / "run" / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize("args,message", [(["--set", "population=ten"], "'population' must be int"),
                                          (["--set", "bogus=1"], "unknown search config key 'bogus'"),
                                          (["--config", "nope.yaml"], "config file not found")])
def test_search_bad_input_is_one_line(args, message, tmp_path, capsys):
    assert main(["search", "--out", str(tmp_path / "run"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "run").exists()


def test_resume_refuses_to_change_what_defines_the_run(tmp_path, capsys):
    assert main(["resume", str(tmp_path / "missing")]) == 2
    run_dir.write_config(tmp_path, SearchConfig().to_dict())
    assert resume_config(tmp_path, {}) == SearchConfig()  # stopped before its first checkpoint: from generation 0
    run_dir.save_checkpoint(tmp_path, {"generation": 0})
    with pytest.raises(EvopruneError, match="population defines the run"):
        resume_config(tmp_path, {"population": 3})
    cfg = resume_config(tmp_path, {"generations": 20, "evaluation": {"device": "cpu"}})
    assert cfg.generations == 20 and cfg.evaluation.device == "cpu"
    assert yaml.safe_load((tmp_path / run_dir.CONFIG).read_text())["generations"] == 20
