"""Exported recipes: the .py module's layer_sparsity and stage choices, JSON read back, and `prune --metric FILE`
applying the whole recipe (the 4-block truncated model)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from evoprune.cli.app import main
from evoprune.errors import EvopruneError
from evoprune.export.formats import render
from evoprune.export.formula_text import exportable
from evoprune.export.metric_file import load_recipe_file
from evoprune.formula import compile_formula, parse_formula
from evoprune.jobs.prune import PruneSpec, resolve_recipe, with_file_stages
from evoprune.prune.allocation import layer_infos
from evoprune.prune.allocation_tree import tree_fractions
from evoprune.prune.recipe import Recipe
from evoprune.search import run_dir
from evoprune.search.config import SearchConfig
from evoprune.search.loop import run_search
from evoprune.search.report import finish_run
from tests.synthetic import SYNTHETIC_SPEC, synthetic_evaluator

RECIPE = Recipe.parse("abs(W)*sqrt(X)", "tree:delta=0.15;log(outlier)*depth + zscore(energy)", "none", "obs")


def _module(source: str) -> dict:
    namespace: dict = {}
    exec(compile(source, "exported.py", "exec"), namespace)  # noqa: S102 -- our own generated code
    return namespace


def test_exported_module_exposes_importance_layer_sparsity_and_the_stages():
    source = render(exportable(RECIPE.score), None, "python", RECIPE)
    module = _module(source)
    assert module["RECIPE"] == RECIPE.to_dict() and module["UPDATE"] == "obs" and module["REFINE"] == "none"
    assert Recipe.from_dict(module["RECIPE"]) == RECIPE
    gen = torch.Generator().manual_seed(0)
    infos = layer_infos({f"{b}.{n}": (8, 16) for b in range(4) for n in ("self_attn.q_proj", "mlp.down_proj")})
    descriptors = {name: torch.rand(len(infos), generator=gen, dtype=torch.float64)
                   for name in ("depth", "attn", "qk", "out", "outlier", "energy", "spread")}
    for target in (0.3, 0.5, 0.7):
        expected = tree_fractions(infos, RECIPE.allocation.expr, descriptors, target, 0.15)
        got = module["layer_sparsity"](descriptors, target)
        assert got.tolist() == [expected[i.key] for i in infos]
    leaves = {"W": torch.randn(6, 10, generator=gen), "X": torch.rand(1, 10, generator=gen)}
    assert torch.equal(module["importance"](**leaves), compile_formula(parse_formula(RECIPE.score))(leaves))
    plain = render(exportable("abs(W)*X"), None, "python", Recipe.parse("abs(W)*X"))
    assert "layer_sparsity" not in plain and "RECIPE" not in plain  # a bare formula exports as before


def test_json_and_py_exports_and_a_recipe_json_carry_the_recipe(tmp_path):
    (tmp_path / "r.json").write_text(render(exportable(RECIPE.score), None, "json", RECIPE))
    (tmp_path / "r.py").write_text(render(exportable(RECIPE.score), None, "python", RECIPE))
    for name in ("r.json", "r.py"):
        recipe = load_recipe_file(str(tmp_path / name))
        assert (recipe.allocation, recipe.refine, recipe.update) == (RECIPE.allocation, RECIPE.refine, RECIPE.update)
        method, _ = resolve_recipe(str(tmp_path / name), 64)
        leaves = {"W": torch.randn(4, 8), "X": torch.rand(1, 8)}
        assert torch.allclose(method.scorer(leaves), compile_formula(parse_formula(RECIPE.score))(leaves))
    (tmp_path / "plain.json").write_text(json.dumps({"score": "wanda", "allocation": "owl", "update": "obs"}))
    method, recipe = resolve_recipe(str(tmp_path / "plain.json"), 64)
    assert method.name == "wanda" and str(recipe.allocation) == "owl"
    spec = with_file_stages(PruneSpec(str(tmp_path / "plain.json")), recipe)
    assert (spec.allocation, spec.refine, spec.update) == ("owl", "none", "obs")
    with pytest.raises(EvopruneError, match="contradicts"):
        with_file_stages(PruneSpec(str(tmp_path / "plain.json"), allocation="depth:slope=0.1"), recipe)


def test_a_recipe_run_exports_its_best_recipe(tmp_path):
    ev = synthetic_evaluator()
    config = SearchConfig(leaves=("W", "X", "Hinv"), operators=("add", "mul", "abs", "sqrt"), population=8,
                          generations=2, seed=1, rescore_top=1, evaluation=SYNTHETIC_SPEC, selection="nsga2",
                          allocation_tree=True, update_choices=("obs",))
    out = tmp_path / "run"
    run_dir.claim_run_dir(out, force=False)
    run_dir.write_config(out, config.to_dict())
    state = run_search(config, out, lambda cs: [ev.evaluate(c) for c in cs])
    payload = finish_run(out, state, 1, SYNTHETIC_SPEC.leaves, {"model": "synthetic"},
                         lambda c: 10 + ev.evaluate(c)["fitness"])
    assert main(["export", str(out), "--out", str(tmp_path / "best.py")]) == 0
    module = _module((tmp_path / "best.py").read_text())
    assert module["RECIPE"]["update"] == "obs" == payload["best"][0]["recipe"]["update"]
    assert module["RECIPE"]["allocation"] == payload["best"][0]["recipe"]["allocation"]


def test_prune_with_a_recipe_file_applies_the_whole_recipe(truncated_model_dir, tmp_path):
    recipe_file = tmp_path / "recipe.json"  # the .py form resolves to the same recipe (test above)
    recipe_file.write_text(render(exportable(RECIPE.score), None, "json", RECIPE))
    common = ["--model", str(truncated_model_dir), "--mode", "dense", "--nsamples", "4", "--seqlen", "64",
              "--sparsity", "0.6"]
    assert main(["prune", "--metric", str(recipe_file), *common, "--out", str(tmp_path / "file")]) == 0
    assert main(["prune", "--metric", RECIPE.score, "--allocation", str(RECIPE.allocation), "--update", "obs",
                 *common, "--out", str(tmp_path / "flags")]) == 0
    report = json.loads((tmp_path / "file" / "report.json").read_text())
    assert report["recipe"]["update"] == "obs" and report["recipe"]["allocation"] == str(RECIPE.allocation)
    sparsities = {row["sparsity"] for row in report["sparsity"]["layers"]}
    assert len(sparsities) > 1 and report["sparsity"]["overall"] == pytest.approx(0.6, abs=1e-6)
    a = load_file(tmp_path / "file" / "model.safetensors")
    b = load_file(tmp_path / "flags" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sequential_rescoring_is_the_prune_jobs_protocol_and_restores_the_model(truncated_model_dir):
    from evoprune.data.perplexity import perplexity
    from evoprune.data.protocol import PerplexitySpec, evaluation_windows
    from evoprune.data.tokens import CalibSpec
    from evoprune.fitness.evaluator import Evaluator
    from evoprune.fitness.spec import EvalSpec
    from evoprune.jobs.prune import prune_loaded, resolve_method
    from evoprune.jobs.rescore import rescorer
    from evoprune.model.loading import load_model
    from evoprune.prune.masks import parse_pattern

    spec = EvalSpec(model=str(truncated_model_dir), device="cpu", dtype="float32", nsamples=4, seqlen=64,
                    leaves=("W", "X", "Hinv"), eval_max_tokens=1024)
    evaluator = Evaluator(spec)
    before = {k: v.clone() for k, v in evaluator.original.items()}
    candidate = json.dumps(RECIPE.to_dict())
    measured = rescorer(evaluator, "sequential", 0.6, parse_pattern("unstructured"))(candidate)
    assert all(torch.equal(ref.weight(), before[k]) for k, ref in evaluator.layers.items())  # restored
    loaded = load_model(str(truncated_model_dir), "cpu", "float32")
    prune_spec = PruneSpec(RECIPE.score, 0.6, "unstructured", "row", "sequential", str(RECIPE.allocation),
                           "none", "obs")
    prune_loaded(loaded, resolve_method(RECIPE.score, 64), prune_spec, CalibSpec("wikitext2", 4, 64, 0))
    expected = perplexity(loaded.model, evaluation_windows(loaded, PerplexitySpec("wikitext2", 512, 1024)))
    assert measured == pytest.approx(expected, rel=1e-5)
    dense = rescorer(evaluator, "dense", 0.6, parse_pattern("unstructured"))(candidate)
    assert dense == evaluator.perplexity(candidate, sparsity=0.6) and dense != measured
