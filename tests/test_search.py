import json
import math
import random

import pytest
import torch
from deap import creator, gp

from evoprune.formula import canonical_string, compile_formula, parse_formula, to_python_source
from evoprune.search import run_dir
from evoprune.search.config import SearchConfig
from evoprune.search.evaluation import evaluate_population
from evoprune.search.loop import run_search
from evoprune.search.primitives import NotExpressible, build_pset, sympy_to_tree, tree_from_string, tree_to_sympy
from evoprune.search.toolbox import build_toolbox
from tests.synthetic import SYNTHETIC_SPEC, synthetic_evaluator

OPS = ("add", "sub", "mul", "div", "abs", "sqr", "sqrt", "log", "exp", "mms", "zscore", "rownorm", "colnorm",
       "tanh", "neg")
LEAVES = {"W": torch.randn(6, 10), "X": torch.rand(1, 10), "Hinv": torch.rand(1, 10)}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matrices: with 2 threads on a loaded box each 48x48 matmul waits ~10 ms for the other thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def config(**kw):
    base = dict(leaves=("W", "X", "Hinv"), operators=OPS[:12], population=24, generations=4, seed=3,
                rescore_top=0, evaluation=SYNTHETIC_SPEC)
    return SearchConfig(**{**base, **kw})


def map_fn_of(ev):
    return lambda formulas: [ev.evaluate(f) for f in formulas]


def _same_scores(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a.nan_to_num(), b.nan_to_num(), rtol=1e-4, atol=1e-6)


def test_tree_sympy_round_trip_keeps_text_and_meaning():
    pset = build_pset(("W", "X", "Hinv"), OPS, (0.5, 0.75, -1.5), (0.5, 1.0, 2.0))
    random.seed(0)
    exact, not_expressible = 0, 0
    for _ in range(500):
        tree = gp.PrimitiveTree(gp.genHalfAndHalf(pset, 1, 4))
        assert str(tree_from_string(str(tree), pset)) == str(tree)  # the checkpoint's string form
        expr = tree_to_sympy(tree, pset)
        try:
            back = sympy_to_tree(expr, pset)
        except NotExpressible:
            not_expressible += 1  # e.g. sympy folded (x**0.5)**0.75 into an exponent the set lacks
            continue
        again = tree_to_sympy(back, pset)
        exact += canonical_string(again) == canonical_string(expr)
        assert _same_scores(compile_formula(again)(LEAVES), compile_formula(expr)(LEAVES)), (str(tree), str(back))
    assert not_expressible <= 25 and exact >= 450, (exact, not_expressible)


def test_seeding_writes_every_baseline_with_its_meaning():
    pset = build_pset(("W", "X", "G"), ("add", "mul", "abs", "mms", "rownorm", "colnorm", "sqr"), (0.5,), ())
    lv = {**LEAVES, "G": torch.rand(6, 10)}
    for text in ("abs(W)", "abs(W)*X", "(rownorm(abs(W)) + colnorm(abs(W)))*X**0.5", "W**2*mms(G)"):
        expr = parse_formula(text)
        assert torch.allclose(compile_formula(tree_to_sympy(sympy_to_tree(expr, pset), pset))(lv),
                              compile_formula(expr)(lv))


def test_tree_from_string_never_evaluates_python():
    pset = build_pset(("W", "X"), ("add", "mul"), (), (1.0,))
    for text in ("__import__", "add(W, os)", "mul(W)", "add(W, X, X)", "add(W, inf)", "W X"):
        with pytest.raises(NotExpressible):
            tree_from_string(text, pset)


def test_fuzz_1000_random_trees_through_the_driver_and_the_fitness():
    ev = synthetic_evaluator()
    cfg = config(operators=OPS, powers=(0.5, 1.5, -1.0, -2.5), constants=(0.0, 0.5, 1.0, 1e6))
    _, pset = build_toolbox(cfg)
    random.seed(1)
    population = [creator.EvoIndividual(gp.genHalfAndHalf(pset, 1, 5)) for _ in range(1000)]
    cache: dict = {}
    rows = evaluate_population(population, 0, pset, cache, map_fn_of(ev))
    assert len(rows) == 1000
    for row, ind in zip(rows, population, strict=True):
        assert math.isfinite(row["fitness"]) or (row["fitness"] == math.inf and row["reason"]), row
        assert ind.fitness.values == (row["fitness"],)
    failures = sum(r["fitness"] == math.inf for r in rows)
    assert 0 < failures < 500  # constants and NaN-prone trees fail; most rank weights somehow
    for form in random.sample([f for f, r in cache.items() if math.isfinite(r["fitness"])], 60):
        namespace: dict = {}  # exported source == compiled formula, on random trees too
        exec(to_python_source(parse_formula(form)), namespace)  # noqa: S102 -- our own generated code
        assert _same_scores(namespace["score"](**LEAVES), compile_formula(parse_formula(form))(LEAVES)), form


def test_equivalent_candidates_are_evaluated_once_and_bad_results_are_worst():
    pset = build_pset(("W", "X"), ("mul", "abs", "log"), (), ())
    pop = [creator.EvoIndividual(tree_from_string(t, pset)) for t in
           ("mul(abs(W), X)", "mul(X, abs(W))", "mul(abs(W), X)", "log(W)")]
    calls = []

    def map_fn(formulas):
        calls.append(formulas)
        return [{"fitness": math.nan if f.startswith("log") else 0.25} for f in formulas]

    cache: dict = {}
    rows = evaluate_population(pop, 0, pset, cache, map_fn)
    assert calls == [["X*Abs(W)", "log(W)"]]
    assert [r["cached"] for r in rows] == [False, True, True, False]
    assert rows[3]["fitness"] == math.inf and "nan" in rows[3]["reason"]
    evaluate_population(pop, 1, pset, cache, lambda fs: pytest.fail("everything is cached"))
    rows = evaluate_population([creator.EvoIndividual(tree_from_string("abs(X)", pset))], 2, pset, cache,
                               lambda fs: [])  # a map_fn that loses results fails the batch, not the run
    assert rows[0]["fitness"] == math.inf and "map_fn returned" in rows[0]["reason"]


def test_rank_equivalent_formulas_are_caught_by_the_evaluators_mask_hash():
    pset = build_pset(("W", "X"), ("mul", "abs", "log", "sqrt"), (), ())
    pop = [creator.EvoIndividual(tree_from_string(t, pset)) for t in
           ("mul(abs(W), X)", "log(mul(abs(W), X))", "sqrt(mul(W, X))", "abs(W)")]
    rows = evaluate_population(pop, 0, pset, {}, map_fn_of(synthetic_evaluator()))
    assert [r["evaluated"] for r in rows] == [True] * 4  # distinct canonical forms
    assert [r["cached"] for r in rows] == [False, True, True, False]  # ... but the same masks for the first 3
    assert rows[0]["fitness"] == rows[1]["fitness"] == rows[2]["fitness"] != rows[3]["fitness"]


def test_search_improves_on_its_first_generation(tmp_path):
    state = run_search(config(generations=6), tmp_path, map_fn_of(synthetic_evaluator()))
    history = state["history"]
    assert len(history) == 6 and history[-1]["best"] < history[0]["best"]
    rows = [json.loads(line) for line in (tmp_path / run_dir.CANDIDATES).read_text().splitlines()]
    assert len(rows) == 6 * 24
    assert {"generation", "formula", "canonical", "fitness", "reason", "seconds", "cached"} <= set(rows[0])
    assert state["hall_of_fame"][0] == min(state["cache"], key=lambda f: state["cache"][f]["fitness"])
    assert run_dir.load_checkpoint(tmp_path)["generation"] == 5


def _strip(d: dict) -> dict:
    # wall time and the evaluator's in-memory mask cache differ
    timing = ("seconds", "prune_seconds", "cache_hits", "cached")
    return {k: v for k, v in d.items() if k not in timing}


def test_resume_after_interruption_equals_uninterrupted(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "cut").mkdir()
    full = run_search(config(), tmp_path / "full", map_fn_of(synthetic_evaluator()))
    run_search(config(), tmp_path / "cut", map_fn_of(synthetic_evaluator()), stop_after=1)
    with open(tmp_path / "cut" / run_dir.CANDIDATES, "a") as fh:  # an interrupted generation 2, half written
        fh.write('{"generation": 2, "formula": "W"}\n{"generation": 2, "form')
    random.seed(12345)  # whatever happens in between must not matter
    torch.manual_seed(999)
    resumed = run_search(config(), tmp_path / "cut", map_fn_of(synthetic_evaluator()), resume=True)
    assert resumed["population"] == full["population"]
    assert resumed["hall_of_fame"] == full["hall_of_fame"]
    assert {k: _strip(v) for k, v in resumed["cache"].items()} == {k: _strip(v) for k, v in full["cache"].items()}
    assert [_strip(h) for h in resumed["history"]] == [_strip(h) for h in full["history"]]
    assert resumed["rng"] == full["rng"]
    lines = lambda d: [_strip(json.loads(x)) for x in (d / run_dir.CANDIDATES).read_text().splitlines()]  # noqa: E731
    assert lines(tmp_path / "cut") == lines(tmp_path / "full")


def test_resume_pins_the_run_defining_keys(tmp_path, caplog):
    run_search(config(), tmp_path, map_fn_of(synthetic_evaluator()), stop_after=0)
    resumed = run_search(config(population=8, seed=99, generations=2), tmp_path, map_fn_of(synthetic_evaluator()),
                         resume=True)
    assert len(resumed["population"]) == 24 and resumed["config"]["seed"] == 3 and resumed["generation"] == 1
    assert "keeps the checkpoint's population, seed" in caplog.text


def test_run_directory_is_never_overwritten_without_force(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(Exception, match="exists"):
        run_dir.claim_run_dir(tmp_path, force=False)
    assert (tmp_path / "keep.txt").exists()
    run_dir.claim_run_dir(tmp_path, force=True)
    assert not (tmp_path / "keep.txt").exists()


def test_hall_of_fame_lists_each_ranking_once_by_its_smallest_formula():
    from evoprune.search.ranking import hall_of_fame

    cache = {"log(X*Abs(W))": {"fitness": 0.1, "size": 5, "mask_hash": "a"},
             "X*Abs(W)": {"fitness": 0.1, "size": 4, "mask_hash": "a"},
             "Abs(W)": {"fitness": 0.2, "size": 2, "mask_hash": "b"},
             "W": {"fitness": math.inf, "size": 1, "mask_hash": None},
             "sqrt(X*W)": {"fitness": 0.1, "size": 4, "mask_hash": "c"},  # float ties, same fitness: merged
             "sqrt(W)": {"fitness": 0.3, "size": 3, "mask_hash": None}}  # no hash (older runs)
    assert [f for f, _ in hall_of_fame(cache)] == ["X*Abs(W)", "Abs(W)", "sqrt(W)"]


def test_canonical_text_means_what_the_tree_means():
    """The canonical string is what evaluators parse: on 1,000 random trees it must score like the tree itself
    (signed odd powers such as W·W·W once re-parsed as |W|^3, since `**` is pow = |a|^c in the formula language)."""
    cfg = config(operators=OPS, powers=(0.5, 1.5, 2.0, 3.0), constants=(0.5, 2.0))
    _, pset = build_toolbox(cfg)
    random.seed(0)
    gen = torch.Generator().manual_seed(0)
    leaves = {"W": torch.randn(6, 10, generator=gen), "X": torch.rand(1, 10, generator=gen),
              "Hinv": torch.rand(1, 10, generator=gen)}
    checked = 0
    for _ in range(1000):
        expr = tree_to_sympy(gp.PrimitiveTree(gp.genHalfAndHalf(pset, 1, 5)), pset)
        again = parse_formula(canonical_string(expr))
        assert _same_scores(compile_formula(again)(leaves), compile_formula(expr)(leaves)), canonical_string(expr)
        checked += 1
    assert checked == 1000
    assert canonical_string(tree_to_sympy(tree_from_string("mul(sqr(W), W)", pset), pset)) == "W*W**2"


def test_diverse_best_puts_the_best_of_each_set_of_stages_first():
    """The second opinion sees every allocation family the fast fitness ranked high, not n scores of one."""
    from evoprune.search.ranking import diverse_best, stages_of

    def recipe(score, allocation, update="obs"):
        return json.dumps({"allocation": allocation, "refine": "none", "score": score, "update": update})

    cache = {recipe("W*X", "tree:attn"): {"fitness": 0.1, "size": 3},
             recipe("W**2*X", "tree:attn"): {"fitness": 0.11, "size": 5},
             recipe("W*X**2", "tree:attn"): {"fitness": 0.12, "size": 5},
             recipe("W*X", "tree:depth"): {"fitness": 0.2, "size": 3},
             recipe("W*X", "uniform", "none"): {"fitness": 0.3, "size": 3},
             "abs(W)": {"fitness": 0.5, "size": 1}}
    picked = [form for form, _ in diverse_best(cache, 4)]
    assert picked == [recipe("W*X", "tree:attn"), recipe("W*X", "tree:depth"), recipe("W*X", "uniform", "none"),
                      "abs(W)"]
    assert [form for form, _ in diverse_best(cache, 6)][4:] == [recipe("W**2*X", "tree:attn"),
                                                                recipe("W*X**2", "tree:attn")]
    assert stages_of("abs(W)") == "abs(W)" and stages_of("[1, 2]") == "[1, 2]"
