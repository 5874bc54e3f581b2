"""The Evaluator on real weights and text: the embedded model's first 4 blocks, wikitext2 calibration."""

import math

import pytest
import torch

from evoprune.errors import EvopruneError
from evoprune.fitness.errors import layer_error
from evoprune.fitness.evaluator import Evaluator
from evoprune.fitness.spec import EvalSpec
from evoprune.prune.recipe import Recipe

pytestmark = pytest.mark.slow


def spec_for(model_dir, fitness):
    return EvalSpec(model=str(model_dir), device="cpu", dtype="float32", nsamples=8, seqlen=128,
                    fitness=fitness, fitness_samples=4, leaves=("W", "X", "Hinv"))


def score(evaluator, scorer, name):
    return evaluator.evaluate_recipe(scorer, Recipe(name), name).to_dict()


@pytest.fixture(scope="module", params=["layer", "block", "model"])
def evaluator(request, truncated_model_dir):
    return Evaluator(spec_for(truncated_model_dir, request.param))


def test_wanda_reconstructs_better_than_magnitude(evaluator):
    wanda, magnitude = evaluator.evaluate("wanda"), evaluator.evaluate("magnitude")
    assert math.isfinite(wanda["fitness"]) and wanda["reason"] is None
    assert 0 < wanda["fitness"] < magnitude["fitness"], (evaluator.spec.fitness, wanda, magnitude)


def test_rank_equivalent_formulas_hit_the_mask_cache(evaluator):
    first = score(evaluator, lambda lv: lv["W"].abs() * lv["X"], "abs(W)*X")
    again = score(evaluator, lambda lv: torch.log(lv["W"].abs() * lv["X"] + 1e-30), "log(abs(W)*X)")
    assert again["cached"] and again["mask_hash"] == first["mask_hash"] and again["fitness"] == first["fitness"]


def test_model_is_restored_after_scoring(evaluator):
    before = {k: ref.weight().clone() for k, ref in evaluator.layers.items()}
    score(evaluator, lambda lv: lv["W"].abs() * lv["Hinv"], "abs(W)*Hinv")
    assert all(torch.equal(before[k], ref.weight()) for k, ref in evaluator.layers.items())


def test_perplexity_is_measured_once_per_mask_and_restores_the_model(truncated_model_dir):
    ev = Evaluator(EvalSpec(**{**vars(spec_for(truncated_model_dir, "layer")), "eval_max_tokens": 512,
                               "eval_seqlen": 128}))
    before = {k: ref.weight().clone() for k, ref in ev.layers.items()}
    wanda = ev.perplexity("wanda")
    assert ev.perplexity("log(abs(W)*X)") == wanda and len(ev.perplexity_cache) == 1  # same masks: no new run
    assert ev.perplexity("magnitude") != wanda and len(ev.perplexity_cache) == 2
    assert all(torch.equal(before[k], ref.weight()) for k, ref in ev.layers.items())


@pytest.mark.parametrize("scorer,reason", [
    (lambda lv: lv["W"] / 0.0, "non-finite"),
    (lambda lv: torch.full_like(lv["W"], 3.0), "constant"),
    (lambda lv: lv["W"][:, :3], "RuntimeError"),
    (lambda lv: torch.log(lv["W"]), "non-finite"),
])
def test_bad_formulas_get_worst_fitness_and_a_reason(evaluator, scorer, reason):
    result = score(evaluator, scorer, "bad")
    assert result["fitness"] == math.inf and reason in result["reason"]


def test_recipes_score_as_their_stages_promise(evaluator):
    """Refinement and update lower the reconstruction error under every fitness; a bad recipe is a failure."""
    plain = evaluator.evaluate("wanda")["fitness"]
    swaps = evaluator.evaluate('{"score": "wanda", "refine": "swaps:budget=8"}')
    obs = evaluator.evaluate('{"score": "abs(W)*X", "update": "obs"}')
    assert swaps["reason"] is None and obs["reason"] is None
    assert obs["fitness"] < swaps["fitness"] < plain
    owl = evaluator.evaluate('{"score": "wanda", "allocation": "owl:lambda=0.2"}')
    assert math.isfinite(owl["fitness"]) and owl["mask_hash"] != evaluator.evaluate("wanda")["mask_hash"]
    assert "besa" in evaluator.evaluate('{"score": "wanda", "allocation": "besa"}')["reason"]
    assert "unknown refine" in evaluator.evaluate('{"score": "wanda", "refine": "swapz"}')["reason"]


def test_layer_fitness_of_an_update_is_the_error_of_the_updated_weights(truncated_model_dir):
    from evoprune.fitness.errors import weight_error
    from evoprune.prune.masks import select_mask_counts
    from evoprune.prune.update import obs_update

    ev = Evaluator(spec_for(truncated_model_dir, "layer"))
    errors = []
    for key, leaves in ev.fitness.leaves.items():
        w, h = leaves["W"], ev.fitness.hessians[key]
        mask = select_mask_counts(w.abs() * leaves["X"], w.numel() // 2)
        errors.append(weight_error(w, obs_update(w, h, mask), h))
    fitness = ev.evaluate('{"score": "abs(W)*X", "update": "obs"}')["fitness"]
    assert fitness == pytest.approx(float(torch.stack(errors).mean()), rel=1e-5)


def test_unknown_spec_keys_are_user_errors():
    with pytest.raises(EvopruneError, match="unknown evaluation key 'sparsty'"):
        EvalSpec.from_dict({"sparsty": [0.5]})
    with pytest.raises(EvopruneError, match="unknown fitness"):
        EvalSpec(fitness="ppl")


def test_layer_error_by_hand():
    w = torch.tensor([[1.0, 2.0]])
    h = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    mask = torch.tensor([[False, True]])
    # removed = [1, 0]: 1*2*1 = 2; full: 1*2*1 + 2*1*2 = 6
    assert float(layer_error(w, mask, h)) == pytest.approx(2 / 6)
