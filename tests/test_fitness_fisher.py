"""The `fisher` fitness: layer errors weighted by the loss's output sensitivities, so that layers pruned to
different sparsities are compared by what they cost the loss."""

import dataclasses

import pytest
import torch

from evoprune.fitness.evaluator import Evaluator
from evoprune.fitness.layer_fitness import LayerFitness
from evoprune.fitness.spec import EvalSpec
from evoprune.prune.masks import Pattern
from evoprune.prune.recipe import Recipe
from evoprune.stats.sensitivity import output_sensitivities
from tests.synthetic import synthetic_evaluator


def _counts(fitness: LayerFitness, sparsity) -> dict[str, int]:
    """Per-layer weight counts to prune: `sparsity` a fraction for every layer or a function of the key."""
    frac = sparsity if callable(sparsity) else (lambda _k: sparsity)
    return {k: round(frac(k) * lv["W"].numel()) for k, lv in fitness.leaves.items()}


def _pruned(fitness: LayerFitness, scorer, sparsity=0.5):
    return fitness.prune(scorer, Recipe(score="wanda"), _counts(fitness, sparsity), Pattern())


def test_uniform_sensitivity_on_one_layer_is_the_relative_layer_error():
    base = synthetic_evaluator().fitness
    key = sorted(base.leaves)[0]
    leaves, hessians = {key: base.leaves[key]}, {key: base.hessians[key]}
    plain = LayerFitness(leaves, hessians)
    fisher = LayerFitness(leaves, hessians, sensitivity={key: torch.ones(leaves[key]["W"].shape[0])})
    scorer = lambda lv: lv["W"].abs() * lv["X"]  # noqa: E731
    assert fisher.error(_pruned(fisher, scorer)) == pytest.approx(plain.error(_pruned(plain, scorer)), rel=1e-5)


def test_a_layer_the_loss_ignores_costs_nothing_and_dense_is_zero():
    base = synthetic_evaluator().fitness
    keys = sorted(base.leaves)
    sens = {k: torch.ones(base.leaves[k]["W"].shape[0]) * (0.0 if k == keys[0] else 1.0) for k in keys}
    fisher = LayerFitness(base.leaves, base.hessians, sensitivity=sens)
    scorer = lambda lv: lv["W"].abs() * lv["X"]  # noqa: E731
    # pruning only the ignored layer hard (99 %) and every other layer lightly equals pruning all lightly
    light = fisher.error(_pruned(fisher, scorer, 0.1))
    mixed = _pruned(fisher, scorer, lambda k: 0.99 if k == keys[0] else 0.1)
    assert fisher.error(mixed) == pytest.approx(light, rel=1e-6)
    plain = LayerFitness(base.leaves, base.hessians)  # the mean of relative errors does count the ignored layer
    assert plain.error(_pruned(plain, scorer, lambda k: 0.99 if k == keys[0] else 0.1)) > 2 * plain.error(
        _pruned(plain, scorer, 0.1))
    dense = {k: (torch.ones_like(lv["W"], dtype=torch.bool), lv["W"]) for k, lv in fisher.leaves.items()}
    assert fisher.error(dense) == 0.0


def test_output_sensitivities_are_positive_per_row_and_leave_the_model_untouched(truncated_model_dir):
    from evoprune.data.protocol import calib_windows
    from evoprune.data.tokens import CalibSpec
    from evoprune.model.layers import prunable_layers
    from evoprune.model.loading import load_model

    loaded = load_model(str(truncated_model_dir), "cpu", "float32")
    model = loaded.model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    windows = calib_windows(loaded, CalibSpec("wikitext2", 2, 64, 0))
    sens = output_sensitivities(model, windows)
    layers = prunable_layers(model)
    assert set(sens) == set(layers)
    for key, ref in layers.items():
        assert sens[key].shape == (ref.weight().shape[0],) and bool((sens[key] >= 0).all())
        assert float(sens[key].sum()) > 0
    assert all(torch.equal(before[n], p) and p.grad is None and p.requires_grad == flags[n]
               for n, p in model.named_parameters())
    again = output_sensitivities(model, windows)  # deterministic
    assert all(torch.allclose(sens[k], again[k]) for k in sens)


def test_fisher_evaluator_on_the_real_model_orders_baselines(truncated_model_dir):
    spec = EvalSpec(model=str(truncated_model_dir), device="cpu", dtype="float32", nsamples=4, seqlen=64,
                    leaves=("W", "X", "Hinv"), fitness="fisher", fitness_rows=0.5)
    ev = Evaluator(spec)
    wanda, magnitude = ev.evaluate("wanda")["fitness"], ev.evaluate("magnitude")["fitness"]
    obs = ev.evaluate('{"score": "wanda", "update": "obs"}')["fitness"]
    assert 0 < obs < wanda < magnitude < 1
    layer = Evaluator(dataclasses.replace(spec, fitness="layer"))
    assert layer.evaluate("wanda")["fitness"] != pytest.approx(wanda)  # a different measure, same candidates


def test_model_fitness_is_the_model_strategy_of_any_evaluator(truncated_model_dir):
    spec = EvalSpec(model=str(truncated_model_dir), device="cpu", dtype="float32", nsamples=4, seqlen=64,
                    leaves=("W", "X", "Hinv"), fitness="fisher", fitness_rows=0.5, fitness_samples=2)
    fisher, model = Evaluator(spec), Evaluator(dataclasses.replace(spec, fitness="model", fitness_rows=1.0))
    for candidate in ("wanda", '{"score": "wanda", "allocation": "tree:delta=0.1;depth", "update": "obs"}'):
        assert fisher.model_fitness(candidate) == pytest.approx(model.evaluate(candidate)["fitness"], rel=1e-5)
