"""Recipe genomes: score tree + allocation tree + stage genes, NSGA-II, exact budgets, resume (model-free: the
synthetic layer-fitness evaluator)."""

import json
import math
import random

import pytest
import torch
from deap import gp, tools

from evoprune.errors import EvopruneError
from evoprune.fitness.candidate import candidate_text, compile_score, parse_candidate
from evoprune.prune.allocation import MAX_LAYER_SPARSITY, layer_infos, parse_allocation, plan_targets
from evoprune.prune.allocation_tree import normalised_ranks, tree_fractions
from evoprune.prune.masks import parse_pattern
from evoprune.prune.recipe import Recipe
from evoprune.search import run_dir
from evoprune.search.config import SearchConfig
from evoprune.search.genome import PENALTY, RecipeGenome, build_search, seconds_bucket
from evoprune.search.loop import run_search
from evoprune.search.ranking import pareto_front
from evoprune.search.rng import seed_all
from tests.synthetic import SYNTHETIC_SPEC, synthetic_evaluator

OPS = ("add", "sub", "mul", "div", "abs", "sqr", "sqrt", "log")


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def config(**kw):
    base = dict(leaves=("W", "X", "Hinv"), operators=OPS, population=16, generations=4, seed=5, rescore_top=0,
                evaluation=SYNTHETIC_SPEC, selection="nsga2", allocation_tree=True, allocation_delta=0.2,
                refine_choices=("none", "swaps"), update_choices=("none", "obs"))
    return SearchConfig(**{**base, **kw})


def map_fn_of(ev):
    return lambda candidates: [ev.evaluate(c) for c in candidates]


def test_genome_to_json_to_recipe_gives_the_same_masks_and_weights():
    ev = synthetic_evaluator()
    toolbox, genome = build_search(config())
    seed_all(0)
    checked = 0
    for ind in toolbox.population(n=60):
        key, _, reason = genome.key(ind)
        again = genome.parse(genome.text(ind))  # the checkpoint's form
        assert genome.key(again) == (key, *genome.key(ind)[1:])
        if reason is not None:
            continue
        recipe = parse_candidate(key)  # what an evaluator receives
        assert recipe.refine.name == ind.refine and recipe.update.name == ind.update
        reread = Recipe.from_dict(json.loads(json.dumps(recipe.to_dict())))
        assert reread == recipe
        pattern = parse_pattern("unstructured")
        try:
            scorer = compile_score(recipe.score, 256)
            first = ev.fitness.prune(scorer, recipe, ev.targets(recipe, 0.5, pattern), pattern)
        except Exception:  # noqa: BLE001 -- a candidate that cannot rank weights (constant scores) has no masks
            continue
        fresh = synthetic_evaluator()  # no cached targets or descriptors
        second = fresh.fitness.prune(compile_score(reread.score, 256), reread, fresh.targets(reread, 0.5, pattern),
                                     pattern)
        for k in first:
            assert torch.equal(first[k][0], second[k][0]) and torch.equal(first[k][1], second[k][1])
        checked += 1
    assert checked >= 20


def test_every_allocation_tree_meets_the_budget_exactly():
    genome = RecipeGenome(config(), build_search(config())[1].pset)
    gen = torch.Generator().manual_seed(1)
    random.seed(2)
    for trial in range(200):
        blocks = 1 + trial % 5
        shapes = {f"{b}.{name}": (int(torch.randint(1, 40, (1,), generator=gen)),
                                  int(torch.randint(1, 40, (1,), generator=gen)))
                  for b in range(blocks) for name in ("self_attn.q_proj", "mlp.down_proj", "mlp.up_proj")}
        infos = layer_infos(shapes)
        descriptors = {name: torch.randn(len(infos), generator=gen, dtype=torch.float64)
                       for name in ("depth", "attn", "qk", "out", "outlier", "energy", "spread")}
        tree = gp.PrimitiveTree(gp.genHalfAndHalf(genome.alloc_pset, 1, 4))
        ind = genome.individual([n for n in gp.genFull(genome.pset, 1, 1)])
        ind.alloc = tree
        text, _ = genome.allocation(ind)
        spec = parse_allocation(text)
        target = float(torch.rand(1, generator=gen)) * 0.9
        try:
            counts = plan_targets(spec, infos, target, False, descriptors=descriptors)
        except EvopruneError as exc:
            assert "not finite" in str(exc)  # e.g. exp overflow: the candidate fails, never a wrong budget
            continue
        total = sum(i.numel for i in infos)
        assert sum(counts.values()) == round(target * total), text
        assert all(0 <= counts[i.key] <= MAX_LAYER_SPARSITY * i.numel for i in infos)
        if spec.name == "tree":
            fractions = tree_fractions(infos, spec.expr, descriptors, target, 0.2)
            assert all(target - 0.2 - 1e-12 <= f <= target + 0.2 + 1e-12 for f in fractions.values())


def test_ranks_share_ties_and_a_constant_tree_is_uniform():
    assert normalised_ranks(torch.tensor([3.0, 1.0, 3.0, 2.0])).tolist() == [5 / 6, 0.0, 5 / 6, 1 / 3]
    infos = layer_infos({"0.a": (4, 8), "1.a": (4, 16)})
    descriptors = {"depth": torch.tensor([0.0, 1.0])}
    assert tree_fractions(infos, "depth*0 + 2", descriptors, 0.5, 0.1) == {"0.a": 0.5, "1.a": 0.5}
    spread = tree_fractions(infos, "depth", descriptors, 0.5, 0.1)  # the deeper layer keeps more
    assert spread["1.a"] == pytest.approx(0.4) and spread["0.a"] == pytest.approx(0.6)


def _strip(d: dict) -> dict:
    timing = ("seconds", "prune_seconds", "cache_hits", "cached")
    return {k: v for k, v in d.items() if k not in timing}


def test_resume_with_recipe_genomes_equals_uninterrupted(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "cut").mkdir()
    full = run_search(config(), tmp_path / "full", map_fn_of(synthetic_evaluator()))
    run_search(config(), tmp_path / "cut", map_fn_of(synthetic_evaluator()), stop_after=1)
    random.seed(777)
    torch.manual_seed(1)
    resumed = run_search(config(), tmp_path / "cut", map_fn_of(synthetic_evaluator()), resume=True)
    assert resumed["population"] == full["population"]
    assert any("tree:" in k for k in full["cache"])  # allocation trees with descriptors were evaluated
    assert resumed["hall_of_fame"] == full["hall_of_fame"]
    assert {k: _strip(v) for k, v in resumed["cache"].items()} == {k: _strip(v) for k, v in full["cache"].items()}
    assert resumed["rng"] == full["rng"]
    lines = lambda d: [_strip(json.loads(x)) for x in (d / run_dir.CANDIDATES).read_text().splitlines()]  # noqa: E731
    assert lines(tmp_path / "cut") == lines(tmp_path / "full")


def test_nsga2_keeps_a_non_dominated_front_of_fitness_and_size(tmp_path):
    state = run_search(config(generations=5), tmp_path, map_fn_of(synthetic_evaluator()))
    recipes = [k for k in state["cache"] if k.startswith("{")]
    assert any('"update": "obs"' in k for k in recipes) and any("tree:delta=0.2;" in k for k in recipes)
    points = [(r["fitness"], r["size"]) for r in state["cache"].values() if r["size"] is not None
              and r["fitness"] < float("inf")]
    front = pareto_front(state["cache"])
    for p in front:
        dominated = [q for q in points if q[0] <= p["fitness"] and q[1] <= p["size"]
                     and (q[0], q[1]) != (p["fitness"], p["size"])]
        assert not dominated, (p, dominated[:3])
    # the final population holds the best front of everything it was selected from: its first front is
    # non-dominated within it, and the run's best fitness survives (NSGA-II is elitist)
    _, genome = build_search(config())
    population = [genome.parse(t) for t in state["population"]]
    for ind in population:
        key, size, _ = genome.key(ind)
        ind.fitness.values = genome.fitness_values({**state["cache"][key], "size": size})
    first = tools.sortNondominated(population, len(population), first_front_only=True)[0]
    assert all(not a.fitness.dominates(b.fitness) for a in first for b in first)
    best = min(r["fitness"] for r in state["cache"].values())
    assert min(ind.fitness.values[0] for ind in population) == best
    bests = [h["best"] for h in state["history"]]  # over the survivors: NSGA-II never loses its best
    assert len(bests) == 5 and all(later <= earlier for earlier, later in zip(bests, bests[1:], strict=False))


def test_recipe_genes_are_validated_with_one_line():
    with pytest.raises(EvopruneError, match="divisible by 4"):
        config(population=10)
    with pytest.raises(EvopruneError, match="unknown update"):
        config(update_choices=("none", "admm"))
    with pytest.raises(EvopruneError, match="allocation_leaves"):
        config(allocation_leaves=("depth", "W"))
    with pytest.raises(EvopruneError, match="not an operator over layer vectors"):
        config(allocation_operators=("add", "rownorm"))
    with pytest.raises(EvopruneError, match="delta must be in"):
        parse_allocation("tree:delta=0.7;depth")


@pytest.mark.parametrize("rows,cols,blocksize", [(7, 40, 32), (24, 96, 16), (5, 130, 32)])
def test_the_fitness_obs_sweep_equals_prunes_loop(rows, cols, blocksize):
    from evoprune.prune.sparsegpt import inverse_factor
    from evoprune.prune.update import obs_update, obs_update_factored

    gen = torch.Generator().manual_seed(rows)
    x = torch.randn(512, cols, generator=gen) * torch.rand(cols, generator=gen) * 3
    h = x.t() @ x / 512
    h[2, :] = 0  # a dead input
    h[:, 2] = 0
    w = torch.randn(rows, cols, generator=gen)
    for keep in (torch.rand(rows, cols, generator=gen) > 0.5, torch.rand(rows, cols, generator=gen) > 0.8):
        loop = obs_update(w, h, keep)
        fast = obs_update_factored(w, keep, *inverse_factor(h, 0.01), blocksize=blocksize)
        assert torch.allclose(fast, loop, rtol=1e-4, atol=1e-4)
        assert not fast[~keep].any()


def test_seeded_recipe_population_holds_the_hand_made_recipes():
    from evoprune.search.loop import initial_population

    cfg = config(seed_baselines=True, population=12)
    seed_all(0)
    toolbox, genome = build_search(cfg)
    population = initial_population(cfg, toolbox, genome)
    keys = [genome.key(ind)[0] for ind in population[:6]]
    assert len(population) == 12
    wanda_obs = json.dumps(Recipe.parse("X*Abs(W)", update="obs").to_dict(), sort_keys=True)
    assert "X*Abs(W)" in keys and wanda_obs in keys  # uniform Wanda with and without the update
    assert all(genome.allocation(ind)[0] == "uniform" for ind in population[:6])


def test_a_sweep_choice_seeds_sparsegpts_recipe_and_the_search_runs_it():
    from evoprune.search.loop import initial_population

    cfg = config(seed_baselines=True, population=12, refine_choices=("none",), update_choices=("obs", "sweep"))
    seed_all(0)
    toolbox, genome = build_search(cfg)
    population = initial_population(cfg, toolbox, genome)
    seeded = json.loads(genome.key(population[0])[0])
    assert (seeded["score"], seeded["update"], seeded["allocation"]) == ("div(W**2, Hinv)", "sweep", "uniform")
    ev = synthetic_evaluator()
    result = ev.evaluate(genome.key(population[0])[0])
    assert math.isfinite(result["fitness"]), result
    obs = ev.evaluate(json.dumps(Recipe.parse("W**2/Hinv", update="obs").to_dict()))
    assert result["fitness"] < obs["fitness"]  # the update-aware mask reconstructs better than the fixed one


def _timed_map(ev):
    """The synthetic evaluator with a deterministic pruning time: 4 s with an update, 0.25 s without (what the
    seconds objective sees on a real model: an update costs far more than a bare mask)."""
    def fn(candidates):
        out = []
        for c in candidates:
            r = ev.evaluate(c)
            r["prune_seconds"] = 4.0 if parse_candidate(c).update.name != "none" else 0.25
            out.append(r)
        return out
    return fn


def test_seconds_objective_keeps_cheap_recipes_on_the_front(tmp_path):
    cfg = config(generations=4, objectives=("fitness", "size", "seconds"))
    state = run_search(cfg, tmp_path, _timed_map(synthetic_evaluator()))
    _, genome = build_search(cfg)
    population = [genome.parse(t) for t in state["population"]]
    for ind in population:
        key, size, _ = genome.key(ind)
        ind.fitness.values = genome.fitness_values({**state["cache"][key], "size": size})
        assert len(ind.fitness.values) == 3
    first = tools.sortNondominated(population, len(population), first_front_only=True)[0]
    assert all(not a.fitness.dominates(b.fitness) for a in first for b in first)
    # both costs survive: the best no-update recipe is not dominated by a slower, better one
    assert {ind.update for ind in population} == {"none", "obs"}
    front = pareto_front(state["cache"], "prune_seconds")
    assert front[0]["prune_seconds"] == 0.25 and '"update": "none"' in front[0]["canonical"]
    assert [p["fitness"] for p in front] == sorted((p["fitness"] for p in front), reverse=True)
    # resume replays the cached seconds: the same run
    (tmp_path / "cut").mkdir()
    run_search(cfg, tmp_path / "cut", _timed_map(synthetic_evaluator()), stop_after=1)
    resumed = run_search(cfg, tmp_path / "cut", _timed_map(synthetic_evaluator()), resume=True)
    assert resumed["population"] == state["population"]


def test_seconds_are_bucketed_and_failures_worst():
    cfg = config(objectives=("fitness", "seconds"))
    _, genome = build_search(cfg)
    assert genome.fitness_values({"fitness": 0.5, "size": 3, "prune_seconds": 3.1}) == (0.5, 4.0)
    assert genome.fitness_values({"fitness": 0.5, "size": 3, "prune_seconds": 2.7}) == (0.5, 2.0)
    assert genome.fitness_values({"fitness": 0.5, "size": 3, "prune_seconds": 0.0})[1] == seconds_bucket(0.0) > 0
    failed = genome.fitness_values({"fitness": math.inf, "size": None, "prune_seconds": 0.1})
    assert failed == (PENALTY, PENALTY)
    assert build_search(config())[1].fitness_values({"fitness": 0.5, "size": 3}) == (0.5, 3.0)


def test_evaluator_reports_pruning_seconds_apart_from_the_fitness():
    ev = synthetic_evaluator()
    result = ev.evaluate(candidate_text(Recipe.parse("wanda", update="obs")))
    assert 0 < result["prune_seconds"] <= result["seconds"]


def test_objectives_are_validated_with_one_line():
    with pytest.raises(EvopruneError, match="objectives must be fitness followed"):
        config(objectives=("size", "fitness"))
    with pytest.raises(EvopruneError, match="objectives must be fitness followed"):
        config(objectives=("fitness", "latency"))
    with pytest.raises(EvopruneError, match="objectives must be fitness followed"):
        config(objectives=("fitness", "size", "size"))
    with pytest.raises(EvopruneError, match="selection tournament has the one objective"):
        config(selection="tournament", objectives=("fitness", "seconds"))
