"""`fitness_rows`: the layer fitness on a fixed random subset of each layer's rows (an unbiased, cheaper estimate)."""

import dataclasses

import pytest
import torch

from evoprune.errors import EvopruneError
from evoprune.fitness.errors import layer_error
from evoprune.fitness.evaluator import RecipeEvaluator
from evoprune.fitness.spec import EvalSpec
from evoprune.prune.masks import Pattern, select_mask
from tests.synthetic import SYNTHETIC_SPEC, synthetic_evaluator


def _with_rows(fraction: float, seed: int = 0) -> RecipeEvaluator:
    full = synthetic_evaluator()
    spec = dataclasses.replace(SYNTHETIC_SPEC, fitness_rows=fraction, seed=seed)
    return RecipeEvaluator.from_layers(spec, full.fitness.leaves, full.fitness.hessians)


def test_subset_fitness_is_the_layer_error_of_those_rows():
    ev = _with_rows(0.25)
    fitness = ev.evaluate("abs(W)*X")["fitness"]
    errors = []
    for key, leaves in ev.fitness.leaves.items():
        rows = ev.fitness.rows[key]
        assert len(rows) == 6 and torch.equal(rows, rows.sort().values)  # 25 % of 24 rows, sorted
        mask = select_mask((leaves["W"].abs() * leaves["X"])[rows], 0.5, Pattern())
        errors.append(layer_error(leaves["W"][rows], mask, ev.fitness.hessians[key]))
    assert fitness == pytest.approx(float(torch.stack(errors).mean()), rel=1e-6)


def test_all_rows_is_the_exact_fitness_and_the_subset_follows_the_seed():
    exact = synthetic_evaluator().evaluate("abs(W)*X")["fitness"]
    assert _with_rows(1.0).evaluate("abs(W)*X")["fitness"] == exact and _with_rows(1.0).fitness.rows == {}
    a, b, c = _with_rows(0.5, seed=0), _with_rows(0.5, seed=0), _with_rows(0.5, seed=1)
    assert all(torch.equal(a.fitness.rows[k], b.fitness.rows[k]) for k in a.fitness.rows)
    assert any(not torch.equal(a.fitness.rows[k], c.fitness.rows[k]) for k in a.fitness.rows)


def test_rank_order_of_metrics_survives_the_subset():
    formulas = ["abs(W)*X", "abs(W)", "abs(W)*sqrt(X)", "abs(W)/Hinv", "X", "abs(W)*X**2"]
    exact = [synthetic_evaluator().evaluate(f)["fitness"] for f in formulas]
    quarter = [_with_rows(0.5).evaluate(f)["fitness"] for f in formulas]
    assert sorted(range(6), key=exact.__getitem__)[:2] == sorted(range(6), key=quarter.__getitem__)[:2]


@pytest.mark.parametrize("kw", [{"fitness_rows": 0.0}, {"fitness_rows": 1.5},
                                {"fitness_rows": 0.5, "fitness": "block"}, {"fitness_rows": 0.5, "group": "layer"}])
def test_bad_row_fractions_are_user_errors(kw):
    with pytest.raises(EvopruneError, match="fitness_rows"):
        EvalSpec(**kw)


def test_a_formula_needing_a_missing_leaf_is_a_failed_candidate_not_a_crash():
    result = synthetic_evaluator().evaluate("abs(W)*G")  # the synthetic evaluator has W, X, Hinv only
    assert result["fitness"] == float("inf") and "needs leaf G" in result["reason"]
