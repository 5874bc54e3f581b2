"""Recipes (score → allocation → mask → refinement → update) on the real embedded model cut to 4 blocks, with
real wikitext2 calibration: exact budgets, swaps that never raise the error, OBS equal to SparseGPT's update."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from evoprune.cli.app import main
from evoprune.data.protocol import calib_windows
from evoprune.data.tokens import CalibSpec
from evoprune.errors import EvopruneError
from evoprune.jobs.prune import PruneSpec, model_infos, prune_loaded, snapshot
from evoprune.model.layers import prunable_layers
from evoprune.model.loading import load_model
from evoprune.prune.allocation import MAX_LAYER_SPARSITY, LayerInfo, exact_counts
from evoprune.prune.masks import parse_pattern, select_mask
from evoprune.prune.method import builtin_method
from evoprune.prune.recipe import Recipe
from evoprune.prune.refine import row_errors, swap_refine
from evoprune.prune.sparsegpt import sparsegpt_prune
from evoprune.prune.update import obs_update
from evoprune.stats.collect import collect_dense_stats

CALIB = CalibSpec("wikitext2", 8, 64, 0)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small(truncated_model_dir):
    loaded = load_model(str(truncated_model_dir), "cpu", "float32")
    return loaded, snapshot(loaded.model)


@pytest.fixture(scope="module")
def layer_stats(small):
    """Two real layers (attention input, MLP output) with their Gram matrices."""
    loaded, original = small
    loaded.model.load_state_dict(original)  # earlier tests prune this model in place
    stats = collect_dense_stats(loaded.model, calib_windows(loaded, CALIB), with_hessian=True)
    layers = prunable_layers(loaded.model)
    keys = ["1.self_attn.q_proj", "2.mlp.down_proj"]
    return [(layers[k].weight().detach().clone(), stats[k]) for k in keys]


@pytest.mark.parametrize("allocation", ["uniform", "owl", "owl:M=3,lambda=0.2", "depth:slope=0.3,k_proj=-0.1",
                                        "besa:epochs=1,samples=4,rates=20"])
@pytest.mark.parametrize("sparsity", [0.5, 0.7])
def test_every_allocation_meets_the_global_budget_exactly(small, allocation, sparsity):
    loaded, original = small
    loaded.model.load_state_dict(original)
    spec = PruneSpec("wanda", sparsity, "unstructured", "row", "dense", allocation)
    reports = prune_loaded(loaded, builtin_method("wanda", CALIB.seqlen), spec, CALIB)
    total = sum(r.total for r in reports)
    pruned = sum(r.pruned for r in reports)
    assert abs(pruned - sparsity * total) <= len(reports)  # within one weight per layer (here: within 0.5)
    assert all(0 <= r.sparsity <= MAX_LAYER_SPARSITY for r in reports)
    for key, ref in prunable_layers(loaded.model).items():  # the reported mask is what the model holds
        assert int((ref.weight() == 0).sum()) >= next(r.pruned for r in reports if r.layer == key)
    if allocation != "uniform":
        assert len({round(r.sparsity, 3) for r in reports}) > 1, "a non-uniform allocation varied nothing"


@settings(max_examples=200, deadline=None)
@given(fractions=st.lists(st.floats(-1, 2), min_size=1, max_size=12),
       sizes=st.lists(st.tuples(st.integers(1, 40), st.integers(1, 40)), min_size=12, max_size=12),
       target=st.floats(0, MAX_LAYER_SPARSITY))
def test_exact_counts_property(fractions, sizes, target):
    infos = [LayerInfo(f"{i}.w", i, len(fractions), *sizes[i]) for i in range(len(fractions))]
    fractions = {info.key: f for info, f in zip(infos, fractions, strict=False)}
    total = sum(i.numel for i in infos)
    if round(target * total) > sum(int(MAX_LAYER_SPARSITY * i.numel) for i in infos):  # tiny layers, high target
        with pytest.raises(EvopruneError, match="no allocation reaches"):
            exact_counts(fractions, infos, target)
        return
    counts = exact_counts(fractions, infos, target)
    assert sum(counts.values()) == round(target * total)
    assert all(0 <= counts[i.key] <= int(MAX_LAYER_SPARSITY * i.numel) for i in infos)


@pytest.mark.parametrize("pattern,sparsity", [("unstructured", 0.5), ("unstructured", 0.7), ("2:4", 0.5),
                                              ("4:8", 0.5)])
def test_swaps_never_raise_a_row_error_and_keep_the_pattern(layer_stats, pattern, sparsity):
    parsed = parse_pattern(pattern)
    for weight, st_ in layer_stats:
        mask = select_mask(weight.abs() * st_.X.unsqueeze(0), sparsity, parsed)
        refined = swap_refine(weight, mask, st_.H, parsed, budget=16)
        before, after = row_errors(weight, mask, st_.H), row_errors(weight, refined, st_.H)
        assert (after <= before).all()
        assert after.sum() < 0.99 * before.sum()  # swaps do find improvements on real layers
        assert torch.equal(refined.sum(-1), mask.sum(-1))
        if parsed.structured:
            assert (refined.reshape(weight.shape[0], -1, parsed.m).sum(-1) == parsed.n).all()


@pytest.mark.parametrize("pattern,sparsity", [("unstructured", 0.5), ("unstructured", 0.7), ("2:4", 0.5)])
def test_obs_with_sparsegpts_mask_is_sparsegpts_update(layer_stats, pattern, sparsity):
    parsed = parse_pattern(pattern)
    for weight, st_ in layer_stats:
        expected, mask = sparsegpt_prune(weight, st_.H, sparsity, parsed)
        updated = obs_update(weight, st_.H, mask)
        assert torch.equal(updated, expected)
        assert torch.equal(updated != 0, mask | ((updated != 0) & mask))  # nothing outside the mask survives
        assert not updated[~mask].any()


def test_obs_lowers_the_layer_error_of_a_fixed_mask(layer_stats):
    for weight, st_ in layer_stats:
        mask = select_mask(weight.abs() * st_.X.unsqueeze(0), 0.5, parse_pattern("unstructured"))
        updated = obs_update(weight, st_.H, mask)
        diff_masked, diff_updated = weight * ~mask, weight - updated
        plain = (diff_masked @ st_.H * diff_masked).sum()
        compensated = (diff_updated @ st_.H * diff_updated).sum()
        assert compensated < 0.7 * plain and torch.equal(updated != 0, mask & (weight != 0) | (updated != 0))


def test_recipe_round_trip_and_its_text():
    recipe = Recipe.parse("abs(W)*X", "owl:lambda=0.1", "swaps:budget=8", "obs")
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    assert str(recipe) == "abs(W)*X+owl:lambda=0.1+swaps:budget=8+obs"
    assert Recipe.parse("wanda").plain and not recipe.plain
    with pytest.raises(EvopruneError, match="unknown recipe key"):
        Recipe.from_dict({"score": "wanda", "alocation": "owl"})


def test_sequential_recipe_matches_its_stages(small):
    """wanda+swaps+obs in sequential mode: exact counts, and the weights differ from plain Wanda's on kept entries
    (the update moved them) while pruned entries are zero."""
    loaded, original = small
    loaded.model.load_state_dict(original)
    method = builtin_method("wanda", CALIB.seqlen)
    reports = prune_loaded(loaded, method, PruneSpec("wanda", 0.6, refine="swaps:budget=4", update="obs"), CALIB)
    assert sum(r.pruned for r in reports) == round(0.6 * sum(r.total for r in reports))
    ref = prunable_layers(loaded.model)["0.self_attn.q_proj"]
    kept = ref.weight() != 0
    assert not torch.equal(ref.weight()[kept], original["model.layers.0.self_attn.q_proj.weight"][kept])
    assert len(model_infos(loaded.model)) == len(reports)


BAD = [
    (["--allocation", "owly"], "unknown allocation 'owly'"),
    (["--allocation", "owl:M=five"], "M='five' is not a number"),
    (["--allocation", "owl:gamma=1"], "unknown parameter 'gamma'"),
    (["--allocation", "owl", "--pattern", "2:4"], "allocation owl varies sparsity per layer"),
    (["--refine", "swap"], "unknown refine 'swap'"),
    (["--update", "admm"], "unknown update 'admm'"),
    (["--metric", "sparsegpt", "--update", "obs"], "sparsegpt chooses its own mask"),
    (["--metric", "sparsegpt", "--refine", "swaps"], "sparsegpt chooses its own mask"),
    (["--sparsity", "0.995", "--allocation", "owl"], "outside [0, 0.99]"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_recipe_flags_are_one_line_and_exit_2(args, message, tmp_path, capsys):
    assert main(["prune", *args, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err
    assert not (tmp_path / "o").exists()
