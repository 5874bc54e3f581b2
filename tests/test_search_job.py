"""`evoprune search` and `evoprune resume` end to end through the CLI, with the model-free synthetic evaluator
standing in for the pool (so the wiring, best.json and the final table are tested without loading the LLM)."""

import json

import pytest
import torch
import yaml

from evoprune.cli.app import main
from evoprune.search import run_dir
from tests.synthetic import synthetic_evaluator


class SyntheticPool:
    """The pool interface (`map`, `evaluator`, context manager) over the synthetic evaluator; perplexity is a
    stand-in (the fitness plus 10) because there is no model to run."""

    def __init__(self, spec, **_):
        self.evaluator = synthetic_evaluator()
        self.evaluator.perplexity = lambda formula, **kw: 10 + self.evaluator.evaluate(formula)["fitness"]
        self.evaluator.protocol = lambda: {"model": "synthetic"}

    def map(self, formulas):
        return [self.evaluator.evaluate(f) for f in formulas]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


@pytest.fixture(autouse=True)
def synthetic_pool(monkeypatch):
    import evoprune.distributed

    monkeypatch.setattr(evoprune.distributed, "open_pool", SyntheticPool)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _config(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({
        "leaves": ["W", "X", "Hinv"], "operators": ["add", "mul", "div", "abs", "sqrt", "log", "rownorm"],
        "powers": [0.5], "constants": [0.5, 2.0], "population": 12, "generations": 3, "seed": 1, "rescore_top": 2,
        "evaluation": {"leaves": ["W", "X", "Hinv"]}}))
    return str(path)


def test_search_then_resume_through_the_cli(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["search", "--config", _config(tmp_path), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "best recipes and baselines" in printed.out and "wanda" in printed.out
    assert "[evoprune] generation 3/3" in printed.err  # plain lines when not a terminal
    best = json.loads((out / run_dir.BEST).read_text())
    assert [set(r) >= {"formula", "canonical", "fitness", "size", "perplexity"} for r in best["best"]]
    assert best["best"][0]["perplexity"] is not None and best["best"][2]["perplexity"] is None  # rescore_top 2
    assert [r["method"] for r in best["baselines"]] == ["magnitude", "wanda", "ria"]  # no G: no pruner-zero
    assert best["protocol"] == {"model": "synthetic", "rescore_mode": "dense",
                                "rescore_setting": {"sparsity": 0.5, "pattern": "unstructured"}}
    assert best["cache"]["candidates"] == 36
    fitness = [r["fitness"] for r in best["best"]]
    assert fitness == sorted(fitness)
    assert yaml.safe_load((out / run_dir.CONFIG).read_text())["population"] == 12

    assert main(["search", "--config", _config(tmp_path), "--out", str(out)]) == 2  # never overwritten
    assert main(["resume", str(out), "--generations", "5"]) == 0
    assert run_dir.load_checkpoint(out)["generation"] == 4
    lines = (out / run_dir.CANDIDATES).read_text().splitlines()
    assert len(lines) == 5 * 12 and json.loads(lines[-1])["generation"] == 4
    assert main(["search", "--config", _config(tmp_path), "--out", str(out), "--force", "--generations", "1"]) == 0
    assert len((out / run_dir.CANDIDATES).read_text().splitlines()) == 12


def test_dashboard_renders_in_a_terminal():
    from rich.console import Console

    from evoprune.cli.dashboard import Dashboard

    console = Console(force_terminal=True, width=120, record=True)
    cache = {"X*Abs(W)": {"fitness": 0.1, "size": 4}, "W": {"fitness": float("inf"), "size": 1}}
    with Dashboard(3, console=console) as dash:
        for g, best in enumerate((0.3, 0.2, 0.1)):
            dash.update({"generation": g, "best": best, "median": 0.5, "evaluations": 5, "cache_hits": 2,
                         "candidates": 8, "failures": 1, "seconds": 1.0}, cache)
    text = console.export_text()
    assert "generation 3/3" in text and "X·|W|" in text and "hall of fame" in text


def test_a_recipe_search_writes_whole_recipes_and_the_hand_made_rows(tmp_path, capsys):
    path = tmp_path / "recipes.yaml"
    path.write_text(yaml.safe_dump({
        "leaves": ["W", "X", "Hinv"], "operators": ["add", "mul", "abs", "sqrt"], "population": 12,
        "generations": 3, "seed": 2, "rescore_top": 1, "selection": "nsga2", "allocation_tree": True,
        "update_choices": ["none", "obs"], "baselines": ["wanda", "wanda+obs", "wanda+owl"],
        "evaluation": {"leaves": ["W", "X", "Hinv"]}}))
    out = tmp_path / "run"
    assert main(["search", "--config", str(path), "--out", str(out)]) == 0
    best = json.loads((out / run_dir.BEST).read_text())
    assert all(set(r["recipe"]) == {"score", "allocation", "refine", "update"} for r in best["best"])
    assert all(r["recipe"]["score"] == r["formula"] for r in best["best"])
    assert [r["method"] for r in best["baselines"]] == ["wanda", "wanda+owl", "wanda+obs"]  # no sparsegpt (dense)
    assert any(r["recipe"]["update"] == "obs" for r in best["best"])
    assert "best recipes and baselines" in capsys.readouterr().out


def test_reselect_orders_the_best_by_the_second_opinion(tmp_path, capsys, monkeypatch):
    import evoprune.distributed

    class SecondOpinionPool(SyntheticPool):
        def __init__(self, spec, **kw):
            super().__init__(spec, **kw)
            # a stand-in second opinion that disagrees with the fitness: the larger the formula text, the better
            self.evaluator.model_fitness = lambda candidate: 1.0 / len(candidate)

    monkeypatch.setattr(evoprune.distributed, "open_pool", SecondOpinionPool)
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({
        "leaves": ["W", "X", "Hinv"], "operators": ["add", "mul", "abs", "sqrt"], "population": 12,
        "generations": 2, "seed": 3, "rescore_top": 1, "reselect_top": 3,
        "evaluation": {"leaves": ["W", "X", "Hinv"]}}))
    out = tmp_path / "run"
    assert main(["search", "--config", str(path), "--out", str(out)]) == 0
    best = json.loads((out / run_dir.BEST).read_text())["best"]
    second = [r["model_fitness"] for r in best[:3]]
    assert None not in second and second == sorted(second)  # the reselected three first, in the second order
    assert all(r["model_fitness"] is None for r in best[3:])
    assert max(r["fitness"] for r in best[:3]) <= min(r["fitness"] for r in best[3:])  # they were the best three
    assert best[0]["perplexity"] is not None and "KL (reselect)" in capsys.readouterr().out
