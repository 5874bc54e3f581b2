"""The `sweep` update: masks chosen inside the OBS sweep by any score (SparseGPT when the score is W**2/Hinv)."""

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from evoprune.data.protocol import calib_windows
from evoprune.data.tokens import CalibSpec
from evoprune.errors import EvopruneError
from evoprune.fitness.candidate import compile_score
from evoprune.fitness.layer_fitness import CandidateFailure, LayerFitness
from evoprune.jobs.prune import PruneSpec, prune_loaded, resolve_method, snapshot
from evoprune.model.layers import prunable_layers
from evoprune.model.loading import load_model
from evoprune.prune.masks import parse_pattern
from evoprune.prune.method import layer_leaves
from evoprune.prune.recipe import Recipe
from evoprune.prune.sparsegpt import inverse_factor, sparsegpt_prune
from evoprune.prune.sweep import SPARSEGPT_SCORE, step_counts, sweep_prune
from evoprune.prune.update import obs_update
from evoprune.search.config import SearchConfig
from evoprune.stats.collect import collect_dense_stats

CALIB = CalibSpec("wikitext2", 8, 64, 0)
SAL = compile_score(SPARSEGPT_SCORE, CALIB.seqlen)


@settings(max_examples=200, deadline=None)
@given(cols=st.integers(1, 700), step=st.integers(1, 200), rows=st.integers(1, 9), frac=st.floats(0, 1))
def test_step_counts_meet_the_layer_count_exactly(cols, step, rows, frac):
    count = round(frac * rows * cols)
    counts = step_counts(count, cols, step)
    widths = [min(step, cols - a) for a in range(0, cols, step)]
    assert sum(counts) == count and len(counts) == len(widths)
    assert all(0 <= c <= rows * w for c, w in zip(counts, widths, strict=True))


def _synthetic(rows=48, cols=256, seed=0):
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(rows, cols, generator=gen)
    inputs = torch.randn(800, cols, generator=gen) * torch.rand(cols, generator=gen) * 3
    hessian = inputs.T @ inputs / 800
    return weight, hessian, inputs.pow(2).mean(0).sqrt().unsqueeze(0)


@pytest.mark.parametrize("pattern,sparsity", [("unstructured", 0.5), ("unstructured", 0.7), ("2:4", 0.5),
                                              ("4:8", 0.5)])
def test_sparsegpt_saliency_in_the_sweep_is_sparsegpt(pattern, sparsity):
    weight, hessian, x = _synthetic()
    parsed = parse_pattern(pattern)
    expected, expected_mask = sparsegpt_prune(weight, hessian, sparsity, parsed)
    factor, dead = inverse_factor(hessian, 0.01)
    # SparseGPT prunes floor(sparsity·rows·128) in every 128-column block; so does the sweep, given their sum
    count = None if parsed.structured else 2 * int(sparsity * weight.shape[0] * 128)
    new, mask = sweep_prune({"W": weight, "X": x}, SAL, factor, dead, count, parsed)
    assert torch.equal(mask, expected_mask)
    assert torch.allclose(new, expected, atol=1e-4)
    # given its final mask, the sweep's weights are the OBS update's: a mask hash keys them
    assert torch.allclose(new, obs_update(weight, hessian, mask), atol=1e-4)


def test_another_score_changes_the_mask_and_counts_stay_exact():
    weight, hessian, x = _synthetic(cols=300)  # 300 = two full steps and a partial one
    factor, dead = inverse_factor(hessian, 0.01)
    wanda = compile_score("abs(W)*X", 64)
    count = 7001  # odd: apportioned over uneven steps
    sal_new, sal_mask = sweep_prune({"W": weight, "X": x}, SAL, factor, dead, count, parse_pattern("unstructured"))
    new, mask = sweep_prune({"W": weight, "X": x}, wanda, factor, dead, count, parse_pattern("unstructured"))
    assert int((~mask).sum()) == int((~sal_mask).sum()) == count
    assert not torch.equal(mask, sal_mask)
    assert not new[~mask].any()
    # update-aware: the same score picks a different mask in the sweep than before it
    fixed = wanda({"W": weight, "X": x})
    assert not torch.equal(mask, fixed >= fixed.flatten().kthvalue(count).values)


def test_coarser_nm_steps_keep_the_pattern():
    weight, hessian, x = _synthetic()
    factor, dead = inverse_factor(hessian, 0.01)
    pattern = parse_pattern("2:4")
    _, fine = sweep_prune({"W": weight, "X": x}, SAL, factor, dead, None, pattern)
    _, coarse = sweep_prune({"W": weight, "X": x}, SAL, factor, dead, None, pattern, step_groups=4)
    assert (coarse.reshape(weight.shape[0], -1, 4).sum(-1) == 2).all()
    assert not torch.equal(fine, coarse)
    assert (fine == coarse).float().mean() > 0.8


def test_sweep_refuses_refinement_and_bad_scores():
    with pytest.raises(EvopruneError, match="no mask to refine"):
        Recipe.parse("wanda", refine="swaps", update="sweep")
    with pytest.raises(EvopruneError, match="refine_choices must be"):
        SearchConfig(update_choices=("obs", "sweep"), refine_choices=("none", "swaps"))
    weight, hessian, x = _synthetic()
    factor, dead = inverse_factor(hessian, 0.01)
    with pytest.raises(EvopruneError, match="non-finite"):
        sweep_prune({"W": weight, "X": x}, lambda lv: lv["W"] / 0.0, factor, dead, 100,
                    parse_pattern("unstructured"))


@pytest.mark.slow
def test_layer_fitness_and_sequential_prune_on_the_real_model(truncated_model_dir):
    loaded = load_model(str(truncated_model_dir), "cpu", "float32")
    original = snapshot(loaded.model)
    stats = collect_dense_stats(loaded.model, calib_windows(loaded, CALIB), with_hessian=True)
    layers = prunable_layers(loaded.model)
    leaves = {k: layer_leaves(ref.weight().detach().clone(), stats[k]) for k, ref in layers.items()}
    hessians = {k: stats[k].H for k in layers}
    targets = {k: int(0.5 * lv["W"].numel()) for k, lv in leaves.items()}
    pattern = parse_pattern("unstructured")
    errors = {}
    for rows in (1.0, 0.25):
        fitness = LayerFitness(leaves, hessians, rows=rows)
        for name, recipe in (("sweep", Recipe.parse(SPARSEGPT_SCORE, update="sweep")),
                             ("wanda+obs", Recipe.parse("abs(W)*X", update="obs"))):
            pruned = fitness.prune(compile_score(recipe.score, 64), recipe, targets, pattern)
            errors[name, rows] = fitness.error(pruned)
            if rows == 1.0:
                assert all(int((~m).sum()) == targets[k] for k, (m, _) in pruned.items())
        with pytest.raises(CandidateFailure, match="constant"):
            fitness.prune(compile_score("X - X + 1", 64), Recipe.parse("X - X + 1", update="sweep"), targets,
                          pattern)
    # SparseGPT's update-aware masks reconstruct better than Wanda's mask followed by the same update
    assert errors["sweep", 1.0] < 0.95 * errors["wanda+obs", 1.0]
    assert errors["sweep", 0.25] < 0.95 * errors["wanda+obs", 0.25]

    # the pruning job: --metric W**2/Hinv --update sweep prunes as --metric sparsegpt (sequential): block 0 to the
    # mask. Later blocks see inputs that went through weights equal only up to float rounding (a batched triangular
    # solve here, SparseGPT's column loop there); near-ties then fall either way and the sweep carries each change
    # forward, so masks drift apart (95 % equal by block 3) while the quality stays the same
    windows = calib_windows(loaded, CalibSpec("wikitext2", 4, 64, 1))
    results, losses = {}, {}  # losses: the last hidden states
    for metric, update in ((SPARSEGPT_SCORE, "sweep"), ("sparsegpt", "none")):
        loaded.model.load_state_dict(original)
        prune_loaded(loaded, resolve_method(metric, CALIB.seqlen), PruneSpec(metric, 0.5, update=update), CALIB)
        results[metric] = {k: ref.weight().detach().clone() for k, ref in prunable_layers(loaded.model).items()}
        with torch.no_grad():
            losses[metric] = loaded.model.model(windows).last_hidden_state
    loaded.model.load_state_dict(original)
    with torch.no_grad():
        dense = loaded.model.model(windows).last_hidden_state
    for key, expected in results["sparsegpt"].items():
        got = results[SPARSEGPT_SCORE][key]
        assert int((got == 0).sum()) == int((expected == 0).sum()), key
        if key.startswith("0."):
            assert torch.equal(got == 0, expected == 0) and torch.allclose(got, expected, atol=1e-4), key
    errors = {k: float((h - dense).norm() / dense.norm()) for k, h in losses.items()}  # the 4 blocks' output error
    assert abs(errors[SPARSEGPT_SCORE] / errors["sparsegpt"] - 1) < 0.05, errors


def test_recipe_json_carries_the_sweep():
    recipe = Recipe.parse("W**2/Hinv", "tree:delta=0.1;depth", update="sweep:groups=4")
    assert Recipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe
    assert recipe.needs_hessian and str(recipe.update) == "sweep:groups=4"
