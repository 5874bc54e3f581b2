"""The structured search: a GP over per-weight formulas summed over units, fitness the shrunk model's validation
perplexity. Real weights (the embedded model cut to 4 blocks), real wikitext2."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import yaml

from evoprune.cli.app import main
from evoprune.data.perplexity import perplexity
from evoprune.data.tokens import CalibSpec
from evoprune.errors import EvopruneError
from evoprune.fitness.spec import EvalSpec
from evoprune.fitness.structured_evaluator import StructuredEvaluator
from evoprune.fitness.structured_spec import StructuredFitness, StructuredSearchSpec
from evoprune.jobs.structured import StructuredSpec, prune_structured
from evoprune.search import run_dir
from evoprune.search.config import config_from_dict, load_config


def _raw(**changes) -> dict:
    raw = yaml.safe_load(open("search_spaces/structured.yaml"))
    raw.update(changes)
    return raw


def test_the_preset_loads_and_structured_searches_refuse_what_they_cannot_score():
    config = load_config("search_spaces/structured.yaml")
    assert config.structured == StructuredFitness("mlp", 0.2, "uniform", 8, 256, 1)
    assert not config.recipe_genome
    bad = [(dict(update_choices=["obs"]), "bare formulas"),
           (dict(evaluation={**_raw()["evaluation"], "leaves": ["W", "X", "Hinv"]}, leaves=["W", "X", "Hinv"]),
            "W and X only"),
           (dict(reselect_top=2), "reselect_top"),
           (dict(rescore_mode="sequential"), "rescore_mode"),
           (dict(structured={"structure": "blocks"}), "whole blocks"),
           (dict(structured={"ratio": 1.5}), "ratio"),
           (dict(structured={"widths": "wide"}), "widths"),
           (dict(structured={"widths": "profile:auto"}), "give a fixed slope"),
           (dict(structured={"aggregate": "median"}), "structured.aggregate: unknown 'median'"),
           (dict(structured={"depth": 2}), "unknown structured key 'depth'"),
           (dict(structured=[1]), "must be a mapping")]
    for changes, message in bad:
        with pytest.raises(EvopruneError, match=message):
            config_from_dict(_raw(**changes))


@pytest.fixture(scope="module")
def evaluator(truncated_model_dir) -> StructuredEvaluator:
    torch.set_num_threads(2)
    spec = EvalSpec(model=str(truncated_model_dir), device="cpu", dtype="float32", nsamples=4, seqlen=128,
                    leaves=("W", "X"), eval_max_tokens=1024, eval_seqlen=256)
    return StructuredEvaluator(StructuredSearchSpec(spec, StructuredFitness("mlp", 0.2, "uniform", 4, 128, 1)))


def test_fitness_is_the_validation_perplexity_of_the_model_prune_structure_makes(evaluator):
    result = evaluator.evaluate("X*Abs(W)")
    assert result["reason"] is None and result["fitness"] > 1 and not result["cached"]
    # the same formula through `prune --structure mlp --metric FORMULA`, on a fresh copy of the dense model
    loaded = copy.copy(evaluator.loaded)
    loaded.model = copy.deepcopy(evaluator.loaded.model)
    prune_structured(loaded, StructuredSpec("mlp", 0.2, "X*Abs(W)"), CalibSpec("wikitext2", 4, 128, 0))
    assert perplexity(loaded.model, evaluator.objective) == pytest.approx(result["fitness"], rel=1e-6)
    # a rank-equivalent formula keeps the same channels: answered from the selection cache
    again = evaluator.evaluate("2*X*Abs(W)")
    assert again["cached"] and again["fitness"] == result["fitness"] and again["mask_hash"] == result["mask_hash"]
    # another formula keeps other channels and scores differently; the dense model is untouched throughout
    other = evaluator.evaluate("Abs(W)")
    assert other["mask_hash"] != result["mask_hash"] and other["fitness"] != result["fitness"]
    assert evaluator.loaded.model.model.layers[0].mlp.gate_proj.weight.shape[0] == 1536


def test_a_formula_that_fails_is_a_failed_candidate_not_an_exception(evaluator):
    for formula in ("log(W - W)", "not a formula", '{"score": "wanda", "update": "obs"}'):
        result = evaluator.evaluate(formula)
        assert math.isinf(result["fitness"]) and result["reason"], formula


@pytest.mark.slow
def test_a_structured_search_runs_end_to_end_and_tables_its_best_beside_the_summed_baselines(
        truncated_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("EVOPRUNE_CACHE_DIR", str(tmp_path / "cache"))
    torch.set_num_threads(2)
    raw = _raw(population=8, generations=3, seed=3, rescore_top=1, baselines=["wanda", "magnitude"],
               structured={"structure": "mlp", "ratio": 0.2, "objective_windows": 2, "objective_seqlen": 128})
    raw["evaluation"].update(model=str(truncated_model_dir), device="cpu", dtype="float32", nsamples=4, seqlen=128,
                             eval_max_tokens=512, eval_seqlen=256)
    space = tmp_path / "structured.yaml"
    space.write_text(yaml.safe_dump(raw))
    out = tmp_path / "run"
    assert main(["search", "--config", str(space), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / run_dir.CANDIDATES).read_text().splitlines()]
    best_of = [min((r["fitness"] for r in rows if r["generation"] == g and r["fitness"] is not None),
                   default=math.inf) for g in range(3)]
    assert best_of[2] <= best_of[0] < math.inf  # elitism: the best never gets worse
    best = json.loads((out / run_dir.BEST).read_text())
    assert best["protocol"]["fitness"] == "structured" and best["protocol"]["structured"]["ratio"] == 0.2
    assert best["best"][0]["fitness"] == pytest.approx(min(best_of)) and best["best"][0]["perplexity"] > 1
    assert {r["method"] for r in best["baselines"]} == {"wanda", "magnitude"}
    assert all(r["perplexity"] > 1 for r in best["baselines"])
    # resuming a finished run with more generations continues it, still structured
    assert main(["resume", str(out), "--generations", "4"]) == 0
    history = json.loads((out / run_dir.BEST).read_text())["history"]
    assert len(history) == 4


def test_the_selection_hash_tells_residual_subsets_apart():
    from evoprune.fitness.structured_evaluator import selection_hash
    from evoprune.structured.selection import LayerKeep, Selection

    def selection(resid):
        return Selection([LayerKeep(torch.arange(3), torch.arange(1), torch.arange(8), resid_attn=resid)])

    hashes = [selection(None), selection(torch.arange(5)), selection(torch.tensor([0, 1, 2, 3, 5]))]
    assert len({selection_hash(s) for s in hashes}) == 3
