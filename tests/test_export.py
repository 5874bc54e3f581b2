"""`evoprune export` and `prune --metric FILE|FORMULA`: the exported module is torch-only and computes, in a fresh
interpreter where evoprune cannot be imported, bit-for-bit the scores (hence masks) of the engine's own scoring;
.py and .json exports prune identically; formula strings are parsed, never executed."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from evoprune.cli.app import main
from evoprune.export.formats import render
from evoprune.export.formula_text import exportable
from evoprune.export.metric_file import load_metric
from evoprune.export.module_source import module_source
from evoprune.formula import compile_formula, parse_formula
from evoprune.prune.masks import parse_pattern, select_mask
from evoprune.search import run_dir
from evoprune.search.config import SearchConfig
from evoprune.search.loop import run_search
from evoprune.search.report import finish_run
from tests.synthetic import SYNTHETIC_SPEC, synthetic_evaluator

# Every protected operator and pow appears at least once; all four leaves are used.
FORMULAS = ["abs(W)*X", "(rownorm(abs(W)) + colnorm(abs(W)))*X**0.5", "W**2*mms(G)", "div(abs(W), Hinv)",
            "log(abs(W)*X) + sqrt(G)", "pow(W, 1.5)*rownorm(X) + pow(G, -0.5)", "div(W, sqrt(Hinv))*colnorm(G)",
            "zscore(W)*exp(X) - tanh(G)", "mul(sqr(W), W) + W**-3 + 0.5*Hinv", "div(log(sqrt(abs(W))), mms(G))**-1"]

# A fresh interpreter that cannot import evoprune: the repository is dropped from sys.path and the package
# name is poisoned (an editable install would otherwise still find it through site-packages).
FRESH = textwrap.dedent("""
    import importlib.util, sys
    sys.modules["evoprune"] = None
    sys.path = [p for p in sys.path if p and not p.startswith({repo!r})]
    try:
        import evoprune
    except ImportError:
        pass
    else:
        raise SystemExit("evoprune is importable")
    import torch
    torch.set_num_threads({threads})
    leaves = torch.load(sys.argv[1], weights_only=True)
    out = {{}}
    for i, path in enumerate(sys.argv[3:]):
        spec = importlib.util.spec_from_file_location(f"metric{{i}}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        bad = [m for m, mod in sys.modules.items() if m.split(".")[0] == "evoprune" and mod is not None]
        assert not bad, bad
        for key, layer in leaves.items():
            out[f"{{i}}/{{key}}"] = module.importance(**{{k: layer[k] for k in module.LEAVES + ("W",)}})
    torch.save(out, sys.argv[2])
""")
REPO = str(Path(__file__).resolve().parents[1])


@contextmanager
def single_thread():
    """One thread here and in the fresh interpreter: the same reductions in the same order (bit-identical scores),
    and no waiting for a second thread on a busy machine. Restored afterwards, for the other test modules."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def one_thread():
    with single_thread():
        yield


def run_fresh(modules: list[Path], leaves: dict[str, dict[str, torch.Tensor]], tmp_path: Path) -> dict:
    torch.save(leaves, tmp_path / "leaves.pt")
    code = FRESH.format(repo=REPO, threads=torch.get_num_threads())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-I", "-c", code, str(tmp_path / "leaves.pt"), str(tmp_path / "out.pt"),
                           *map(str, modules)], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(tmp_path / "out.pt", weights_only=True)


def only_torch_imports(source: str) -> bool:
    tree = ast.parse(source)
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    return names == {"torch"}


def assert_round_trip(leaves: dict[str, dict[str, torch.Tensor]], tmp_path: Path) -> None:
    """Export every formula, score in a fresh evoprune-free interpreter, compare with compile_formula + masks."""
    paths = []
    for i, text in enumerate(FORMULAS):
        source = module_source(exportable(text))
        assert only_torch_imports(source), text
        paths.append(tmp_path / f"metric{i}.py")
        paths[-1].write_text(source)
    fresh = run_fresh(paths, leaves, tmp_path)
    for i, text in enumerate(FORMULAS):
        engine = compile_formula(exportable(text).expr)
        for key, layer in leaves.items():
            want, got = engine(layer), fresh[f"{i}/{key}"]
            assert got.dtype == torch.float32 and got.shape == layer["W"].shape
            assert torch.equal(got, want), (text, key)  # bit-identical (no NaN: the operators are protected)
            for pattern, sparsity in (("unstructured", 0.5), ("unstructured", 0.7), ("2:4", None)):
                parsed = parse_pattern(pattern)
                assert torch.equal(select_mask(got, sparsity, parsed), select_mask(want, sparsity, parsed))


def synthetic_leaves() -> dict[str, dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    ties = torch.randint(-3, 4, (16, 32), generator=gen).float() / 8  # few distinct values, like a 4-bit model
    return {"random": {"W": torch.randn(16, 32, generator=gen), "X": torch.rand(1, 32, generator=gen),
                       "G": torch.rand(16, 32, generator=gen), "Hinv": torch.rand(1, 32, generator=gen)},
            "ties": {"W": ties, "X": torch.ones(1, 32), "G": ties.abs(), "Hinv": torch.full((1, 32), 0.5)}}


def test_exported_module_matches_the_engine_in_a_fresh_interpreter(tmp_path):
    assert_round_trip(synthetic_leaves(), tmp_path)


@pytest.mark.slow
def test_round_trip_on_real_layers_of_the_embedded_model(truncated_model_dir, tmp_path):
    """Real leaves (X, Hinv, G from wikitext2 calibration) of real layers: every kind in block 0, two in block 3."""
    from evoprune.data.protocol import calib_windows
    from evoprune.data.tokens import CalibSpec
    from evoprune.model.layers import prunable_layers
    from evoprune.model.loading import load_model
    from evoprune.prune.method import layer_leaves
    from evoprune.stats.collect import collect_dense_stats

    loaded = load_model(str(truncated_model_dir), "cpu", "float32")
    windows = calib_windows(loaded, CalibSpec("wikitext2", 4, 64, 0))
    stats = collect_dense_stats(loaded.model, windows, with_grad=True)
    layers = prunable_layers(loaded.model)
    keys = [k for k in layers if k.startswith("0.")] + [k for k in layers if k.startswith("3.")][-2:]
    leaves = {k: layer_leaves(layers[k].weight(), stats[k]) for k in keys}
    assert all(set(v) == {"W", "X", "G", "Hinv"} for v in leaves.values()) and len(keys) == 9
    assert_round_trip(leaves, tmp_path)


def test_py_and_json_exports_load_as_the_same_method(tmp_path):
    leaves = synthetic_leaves()["random"]
    for text in FORMULAS:
        formula = exportable(text)
        (tmp_path / "m.py").write_text(render(formula, None, "python"))
        (tmp_path / "m.json").write_text(render(formula, None, "json"))
        from_py, from_json, from_text = (load_metric(str(tmp_path / "m.py")), load_metric(str(tmp_path / "m.json")),
                                         load_metric(text))
        assert from_py.leaves == from_json.leaves == from_text.leaves
        want = from_json.scorer(leaves)
        assert torch.equal(from_py.scorer(leaves), want) and torch.equal(from_text.scorer(leaves), want)
    assert load_metric("abs(W)*X").leaves == ("W", "X") and not load_metric("abs(W)").needs_stats
    assert load_metric("W**2*mms(G)").needs_grad and load_metric("div(W, Hinv)").needs_gram


# -- bad input: one line, exit 2, nothing loaded, nothing executed ---------------------------------------------------
BAD_FILES = {
    "syntax.py": ("def importance(W:\n", "failed to import: SyntaxError"),
    "raises.py": ("raise RuntimeError('boom')\n", "failed to import: RuntimeError: boom"),
    "noimportance.py": ("import torch\nLEAVES = ('W',)\n", "defines no function importance"),
    "shape.py": ("import torch\ndef importance(W, X=None, G=None, Hinv=None):\n    return W.sum(0, keepdim=True)"
                 "[:, :3]\n", "returned shape"),
    "notensor.py": ("def importance(W, X=None, G=None, Hinv=None):\n    return 1.0\n", "not a tensor"),
    "leaves.py": ("LEAVES = ('W', 'Z')\ndef importance(W):\n    return W\n", "unknown leaves ['Z']"),
    "notjson.json": ("{formula: W", "is not JSON"),
    "noformula.json": ('{"kind": "evoprune-metric"}', 'no "formula" string'),
    "kind.json": ('{"kind": "best", "formula": "W"}', "not 'evoprune-metric'"),
    "evil.json": ('{"formula": "__import__(\'os\').system(\'touch PWNED\')"}', "not allowed in a formula"),
}
BAD_METRICS = [
    ("__import__('os').system('true')", "not allowed in a formula: call of"),
    ("__import__('os').system('touch PWNED')", "not allowed in a formula"),
    ("(lambda: 1)()", "not allowed in a formula"),
    ("W.__class__", "not allowed in a formula: Attribute"),
    ("abs(W)*", "formula is not an expression"),
    ("abs(W)*\nX", "formula is not an expression"),
    ("2*3", "uses no leaf"),
    ("W - W", "uses no leaf"),
    ("wandaa", "unknown metric 'wandaa'"),
    ("foo(W)", "unknown operator 'foo'"),
    ("missing.py", "metric file not found"),
    ("missing.json", "metric file not found"),
]


def _assert_one_line_error(argv: list[str], message: str, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err


@pytest.fixture
def no_model_load(monkeypatch):
    """Every bad metric must be refused before the model loads."""
    from evoprune.cli import options

    def refuse(*_a, **_k):
        raise AssertionError("the model was loaded for a bad --metric")

    monkeypatch.setattr(options, "load", refuse)


@pytest.mark.parametrize("metric,message", BAD_METRICS, ids=[m for m, _ in BAD_METRICS])
def test_bad_metric_strings_are_refused(metric, message, tmp_path, capsys, monkeypatch, no_model_load):
    monkeypatch.chdir(tmp_path)
    _assert_one_line_error(["prune", "--metric", metric, "--out", str(tmp_path / "o")], message, capsys)
    assert not (tmp_path / "o").exists() and not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("name", BAD_FILES)
def test_bad_metric_files_are_refused(name, tmp_path, capsys, monkeypatch, no_model_load):
    monkeypatch.chdir(tmp_path)
    content, message = BAD_FILES[name]
    (tmp_path / name).write_text(content)
    _assert_one_line_error(["prune", "--metric", str(tmp_path / name), "--out", str(tmp_path / "o")], message, capsys)
    assert not (tmp_path / "o").exists() and not (tmp_path / "PWNED").exists()


def test_import_string_is_refused_by_the_console_script(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "evoprune.cli.app", "prune", "--metric",
                           "__import__('os').system('touch PWNED')", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("error: bad formula") and not (tmp_path / "PWNED").exists()


# -- exporting from run directories ------------------------------------------------------------------------------------
def make_run(out: Path, generations: int = 3, finished: bool = True) -> Path:
    """A real run directory written by the search loop over the model-free synthetic evaluator."""
    ev = synthetic_evaluator()
    config = SearchConfig(leaves=("W", "X", "Hinv"), operators=("add", "mul", "div", "abs", "sqrt", "log",
                                                                 "rownorm"), powers=(0.5,), population=10,
                          generations=generations, seed=2, rescore_top=2, seed_baselines=True,
                          evaluation=SYNTHETIC_SPEC)
    run_dir.claim_run_dir(out, force=False)
    run_dir.write_config(out, config.to_dict())
    with single_thread():
        state = run_search(config, out, lambda forms: [ev.evaluate(f) for f in forms])
        if finished:
            finish_run(out, state, config.rescore_top, SYNTHETIC_SPEC.leaves, {"model": "synthetic"},
                       lambda form: 10 + ev.evaluate(form)["fitness"])
    return out


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("runs") / "done")


def test_export_formats_from_a_run(finished_run, tmp_path, capsys):
    best = json.loads((finished_run / run_dir.BEST).read_text())["best"]
    assert main(["export", str(finished_run), "--out", str(tmp_path / "m.py")]) == 0
    source = (tmp_path / "m.py").read_text()
    assert only_torch_imports(source) and "def importance(W, X=None, G=None, Hinv=None) -> torch.Tensor:" in source
    formula = next(node.value.value for node in ast.parse(source).body
                   if isinstance(node, ast.Assign) and node.targets[0].id == "FORMULA")
    assert parse_formula(formula) == parse_formula(best[0]["canonical"])  # what the run's evaluator scored
    assert best[0]["latex"] in source and "Provenance" in source and "rank 1 of" in source
    assert "RMS of input channel j" in source  # the leaf definitions it needs
    assert main(["export", str(finished_run), "--rank", "2", "--out", str(tmp_path / "m.json")]) == 0
    payload = json.loads((tmp_path / "m.json").read_text())
    assert parse_formula(payload["formula"]) == parse_formula(best[1]["canonical"])
    assert payload["provenance"]["rank"] == 2
    assert payload["provenance"]["fitness"] == best[1]["fitness"]
    assert payload["provenance"]["perplexity"] == best[1]["perplexity"]  # rescore_top 2: measured
    assert payload["provenance"]["settings"] == [{"sparsity": 0.5, "pattern": "unstructured"}]
    capsys.readouterr()
    assert main(["export", str(finished_run), "--format", "latex"]) == 0  # no --out: stdout
    latex = capsys.readouterr().out
    assert "\\begin{equation}" in latex and best[0]["latex"] in latex and latex.startswith("% evoprune metric")


def test_export_names_the_setting_and_protocol_the_perplexity_was_measured_at(finished_run, tmp_path):
    # A recipe search re-scores at its first setting (here 2:4, sequentially): the export must say so, not the
    # evaluator's defaults (0.5 unstructured, dense statistics), which older runs without the record still get.
    assert main(["export", str(finished_run), "--out", str(tmp_path / "old.json")]) == 0
    old = json.loads((tmp_path / "old.json").read_text())["provenance"]["perplexity_protocol"]
    assert (old["sparsity"], old["pattern"], old["statistics"]) == (0.5, "unstructured", "dense")
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    best = json.loads((run / run_dir.BEST).read_text())
    best["protocol"] = {**best["protocol"], "rescore_mode": "sequential",
                        "rescore_setting": {"sparsity": 0.5, "pattern": "2:4"}}
    (run / run_dir.BEST).write_text(json.dumps(best))
    assert main(["export", str(run), "--out", str(tmp_path / "new.json")]) == 0
    new = json.loads((tmp_path / "new.json").read_text())["provenance"]["perplexity_protocol"]
    assert (new["sparsity"], new["pattern"], new["statistics"]) == (0.5, "2:4", "sequential")
    assert main(["export", str(run), "--out", str(tmp_path / "new.py")]) == 0
    assert "at sparsity 0.5 2:4, sequential protocol" in " ".join((tmp_path / "new.py").read_text().split())


def test_export_refuses_overwrite_and_bad_arguments(finished_run, tmp_path, capsys):
    target = tmp_path / "m.py"
    target.write_text("precious")
    _assert_one_line_error(["export", str(finished_run), "--out", str(target)], "exists (use --force", capsys)
    assert target.read_text() == "precious"
    assert main(["export", str(finished_run), "--out", str(target), "--force"]) == 0
    assert "def importance" in target.read_text()
    ranked = len(json.loads((finished_run / run_dir.BEST).read_text())["best"])
    _assert_one_line_error(["export", str(finished_run), "--rank", str(ranked + 1)], f"--rank must be in [1, {ranked}]",
                           capsys)
    _assert_one_line_error(["export", str(finished_run), "--rank", "0"], "--rank must be >= 1", capsys)
    _assert_one_line_error(["export", str(finished_run), "--format", "yaml"], "unknown format", capsys)
    _assert_one_line_error(["export", str(tmp_path / "nope")], "run directory not found", capsys)
    _assert_one_line_error(["export", str(tmp_path)], "not a run directory", capsys)


def test_an_unfinished_run_exports_and_lists(tmp_path, capsys):
    runs = tmp_path / "runs"
    make_run(runs / "done", generations=2)
    make_run(runs / "going", generations=3, finished=False)
    (runs / "empty").mkdir()
    run_dir.write_config(runs / "empty", {"generations": 4})
    (runs / "notes").mkdir()  # not a run directory: not listed
    assert main(["export", str(runs / "going"), "--format", "json", "--out", str(tmp_path / "g.json")]) == 0
    record = json.loads((tmp_path / "g.json").read_text())["provenance"]
    assert record["run_status"] == "in progress" and record["perplexity"] is None
    _assert_one_line_error(["export", str(runs / "empty")], "has no formula with a finite fitness yet", capsys)
    assert main(["runs", str(runs)]) == 0
    table = capsys.readouterr().out
    rows = {line.split("│")[1].strip(): line for line in table.splitlines() if line.count("│") > 3}
    assert set(rows) == {"done", "going", "empty"}
    assert "finished" in rows["done"] and "2/2" in rows["done"]
    assert "in progress" in rows["going"] and "3/3" in rows["going"]  # all generations done, no best.json yet
    assert "empty" in rows["empty"] and "0/4" in rows["empty"]
    _assert_one_line_error(["runs", str(tmp_path / "missing")], "runs folder not found", capsys)


# -- a small real run on the embedded model (4 blocks): export, prune with the files, the run's perplexity ----------
@pytest.fixture(scope="module")
def real_run(truncated_model_dir, tmp_path_factory) -> Path:
    """A real search (real model, real calibration statistics, layer fitness, perplexity re-scoring) kept tiny."""
    import yaml

    root = tmp_path_factory.mktemp("real")
    config = root / "space.yaml"
    config.write_text(yaml.safe_dump({
        "leaves": ["W", "X", "Hinv"], "operators": ["add", "mul", "div", "abs", "sqrt", "log", "rownorm"],
        "powers": [0.5], "constants": [0.5, 2.0], "population": 6, "generations": 2, "seed": 1,
        "seed_baselines": True, "rescore_top": 1,
        "evaluation": {"model": str(truncated_model_dir), "device": "cpu", "dtype": "float32", "nsamples": 4,
                       "seqlen": 64, "fitness_samples": 4, "leaves": ["W", "X", "Hinv"], "eval_seqlen": 256,
                       "eval_max_tokens": 1024}}))
    out = root / "run"
    with single_thread():  # a module fixture runs outside the per-test one_thread fixture
        assert main(["search", "--config", str(config), "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_prune_with_exported_py_and_json_gives_identical_weights_and_the_runs_perplexity(real_run, tmp_path):
    from safetensors.torch import load_file

    best = json.loads((real_run / run_dir.BEST).read_text())["best"][0]
    assert best["perplexity"] is not None
    for suffix in ("py", "json"):
        assert main(["export", str(real_run), "--out", str(tmp_path / f"metric.{suffix}")]) == 0
    evaluation = yaml_config(real_run)["evaluation"]
    common = ["--model", evaluation["model"], "--mode", "dense", "--sparsity", "0.5", "--nsamples", "4",
              "--seqlen", "64", "--device", "cpu", "--dtype", "float32"]
    for suffix in ("py", "json"):
        assert main(["prune", "--metric", str(tmp_path / f"metric.{suffix}"), *common,
                     "--out", str(tmp_path / f"pruned-{suffix}")]) == 0
    from_py = load_file(tmp_path / "pruned-py" / "model.safetensors")
    from_json = load_file(tmp_path / "pruned-json" / "model.safetensors")
    assert from_py.keys() == from_json.keys()
    assert all(torch.equal(from_py[k], from_json[k]) for k in from_py)
    assert main(["eval", "--model", str(tmp_path / "pruned-py"), "--eval-seqlen", "256", "--max-eval-tokens",
                 "1024", "--device", "cpu", "--dtype", "float32", "--json", str(tmp_path / "ppl.json")]) == 0
    measured = json.loads((tmp_path / "ppl.json").read_text())["perplexity"]
    assert measured == pytest.approx(best["perplexity"], rel=1e-6)  # the perplexity the run reported


@pytest.mark.slow
def test_report_of_a_small_real_run(real_run, tmp_path):
    assert main(["report", str(real_run), "--out", str(tmp_path / "report")]) == 0
    for name in ("fitness.png", "pareto.png", "perplexity.png"):
        data = (tmp_path / "report" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
        assert f"]({name})" in (tmp_path / "report" / "report.md").read_text()
    assert main(["report", str(real_run)]) == 0  # default: into the run directory
    assert (real_run / "report.md").is_file() and (real_run / "pareto.png").stat().st_size > 5000


def yaml_config(run: Path) -> dict:
    import yaml

    return yaml.safe_load((run / run_dir.CONFIG).read_text())
