import json
import math
import random

import pytest
from deap import gp

from evoprune.errors import EvopruneError
from evoprune.fitness.spec import EvalSpec
from evoprune.formula import canonical_string
from evoprune.search import run_dir
from evoprune.search.config import SearchConfig, config_from_dict
from evoprune.search.loop import run_search
from evoprune.search.primitives import NotExpressible, build_pset, sympy_to_tree, tree_to_sympy
from tests.synthetic import synthetic_evaluator

OPS = ("add", "sub", "mul", "div", "abs", "sqr", "sqrt", "log", "exp", "mms", "zscore", "rownorm", "colnorm",
       "tanh", "neg")
EVAL = EvalSpec(leaves=("W", "X", "Hinv"))


def config(**kw):
    base = dict(leaves=("W", "X", "Hinv"), operators=OPS[:12], population=24, generations=4, seed=3,
                rescore_top=0, evaluation=EVAL)
    return SearchConfig(**{**base, **kw})


def test_tree_sympy_round_trip():
    pset = build_pset(("W", "X", "Hinv"), OPS, (0.5, 0.75), (0.5, 1.0, 2.0))
    random.seed(0)
    exact = 0
    for _ in range(500):
        tree = gp.PrimitiveTree(gp.genHalfAndHalf(pset, 1, 4))
        expr = tree_to_sympy(tree, pset)
        try:
            again = tree_to_sympy(sympy_to_tree(expr, pset), pset)
        except NotExpressible:
            continue  # sympy folded nested powers into an exponent the set lacks, e.g. (x**0.5)**0.75
        exact += canonical_string(again) == canonical_string(expr)
    assert exact >= 450


def test_fuzz_1000_random_trees_through_the_fitness():
    ev = synthetic_evaluator()
    pset = build_pset(("W", "X", "Hinv"), OPS, (0.5, 1.5, -1.0), (0.0, 0.5, 1.0, 1e6))
    random.seed(1)
    failures = 0
    for _ in range(1000):
        expr = tree_to_sympy(gp.PrimitiveTree(gp.genHalfAndHalf(pset, 1, 5)), pset)
        result = ev.evaluate(canonical_string(expr))
        assert math.isfinite(result["fitness"]) or (result["fitness"] == math.inf and result["reason"])
        failures += result["fitness"] == math.inf
    assert failures < 1000  # most random trees rank weights somehow


def test_search_improves_on_its_first_generation(tmp_path):
    ev = synthetic_evaluator()
    state = run_search(config(generations=6), tmp_path, lambda fs: [ev.evaluate(f) for f in fs])
    history = state["history"]
    assert len(history) == 6 and history[-1]["best"] < history[0]["best"]
    rows = [json.loads(line) for line in (tmp_path / run_dir.CANDIDATES).read_text().splitlines()]
    assert len(rows) == 6 * 24 and {"formula", "canonical", "fitness", "reason", "seconds", "cached"} <= set(rows[0])


def test_resume_after_interruption_equals_uninterrupted(tmp_path):
    def fresh_map_fn():  # each run gets its own evaluator, as separate processes would
        ev = synthetic_evaluator()
        return lambda fs: [ev.evaluate(f) for f in fs]

    (tmp_path / "full").mkdir()
    (tmp_path / "cut").mkdir()
    full = run_search(config(), tmp_path / "full", fresh_map_fn())
    run_search(config(), tmp_path / "cut", fresh_map_fn(), stop_after=1)
    random.seed(12345)  # whatever happens in between must not matter
    resumed = run_search(config(), tmp_path / "cut", fresh_map_fn(), resume=True)
    assert resumed["population"] == full["population"]
    assert resumed["cache"].keys() == full["cache"].keys()
    assert all(resumed["cache"][k]["fitness"] == r["fitness"] for k, r in full["cache"].items())
    timing = ("seconds", "cache_hits", "cached")  # wall time and the evaluator's in-memory mask cache differ
    strip = lambda d: {k: v for k, v in d.items() if k not in timing}  # noqa: E731
    assert [strip(h) for h in resumed["history"]] == [strip(h) for h in full["history"]]
    lines = lambda d: [strip(json.loads(x)) for x in (d / run_dir.CANDIDATES).read_text().splitlines()]  # noqa: E731
    assert lines(tmp_path / "cut") == lines(tmp_path / "full")


def test_run_directory_is_never_overwritten_without_force(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(EvopruneError, match="exists"):
        run_dir.claim_run_dir(tmp_path, force=False)
    assert (tmp_path / "keep.txt").exists()
    run_dir.claim_run_dir(tmp_path, force=True)
    assert not (tmp_path / "keep.txt").exists()


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(EvopruneError, match="unknown search config key 'popsize'"):
        config_from_dict({"popsize": 3})
    with pytest.raises(EvopruneError, match="unknown operator"):
        config_from_dict({"operators": ["add", "frobnicate"]})
    with pytest.raises(EvopruneError, match="elitism"):
        config_from_dict({"population": 4, "elitism": 4})
    with pytest.raises(EvopruneError, match="need evaluation.leaves"):
        config_from_dict({"leaves": ["W", "G"], "evaluation": {"leaves": ["W", "X"]}})
