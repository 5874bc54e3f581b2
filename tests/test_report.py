"""`evoprune report`: PNGs and report.md for a finished run, a run still going (no best.json) and an empty one, from
real run directories written by the search loop over the model-free synthetic evaluator (a real model run is in
tests/test_export.py::test_report_of_a_small_real_run)."""

from __future__ import annotations

import pytest

from evoprune.cli.app import main
from evoprune.export.run_view import RunView
from evoprune.search import run_dir
from tests.test_export import make_run, single_thread

PNG = b"\x89PNG\r\n\x1a\n"


def _png(path) -> bool:
    data = path.read_bytes()
    return data[:8] == PNG and len(data) > 5000


@pytest.fixture(autouse=True)
def one_thread():
    with single_thread():
        yield


def test_report_of_a_finished_run(tmp_path, capsys):
    run = make_run(tmp_path / "done", generations=3)
    assert main(["report", str(run)]) == 0
    assert "figures: fitness.png, pareto.png, perplexity.png" in capsys.readouterr().out
    for name in ("fitness.png", "pareto.png", "perplexity.png"):
        assert _png(run / name), name
    md = (run / "report.md").read_text()
    assert "**finished** · 3/3 generations" in md and "![best and median fitness per generation](fitness.png)" in md
    view = RunView.open(run)
    assert f"| 1 | `{view.best_rows[0]['text'].replace('|', chr(92) + '|')}` |" in md  # |W| escaped for tables
    assert "| wanda | `abs(W)*X` |" in md and "## Pareto front" in md and "no final best.json" not in md


def test_report_of_a_run_still_going_plots_what_exists(tmp_path):
    run = make_run(tmp_path / "going", generations=2, finished=False)
    assert not (run / run_dir.BEST).exists()
    out = tmp_path / "elsewhere"
    assert main(["report", str(run), "--out", str(out)]) == 0
    assert _png(out / "fitness.png") and _png(out / "pareto.png")
    assert not (out / "perplexity.png").exists()  # nothing re-scored yet
    md = (out / "report.md").read_text()
    assert "**in progress** · 2/2 generations" in md and "no final best.json yet" in md
    assert "No perplexity measured yet" in md and "perplexity.png" not in md
    assert not (run / "report.md").exists()  # --out: the run directory is untouched


def test_report_of_an_empty_run_and_a_stale_figure(tmp_path):
    run = tmp_path / "empty"
    run.mkdir()
    run_dir.write_config(run, {"generations": 5, "evaluation": {"fitness": "layer"}})
    (run / "perplexity.png").write_bytes(PNG)  # from an earlier state: must not survive into the new report
    assert main(["report", str(run)]) == 0
    md = (run / "report.md").read_text()
    assert "**empty** · 0/5 generations" in md and "No generation has finished yet." in md
    assert not any((run / name).exists() for name in ("fitness.png", "pareto.png", "perplexity.png"))


def test_report_refuses_bad_arguments(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip() == f"error: run directory not found: {tmp_path / 'missing'}"
    run = make_run(tmp_path / "done", generations=1)
    (tmp_path / "file").write_text("x")
    assert main(["report", str(run), "--out", str(tmp_path / "file")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_report_shows_the_seconds_front_when_it_has_a_trade_off(tmp_path):
    run = make_run(tmp_path / "done", generations=2)
    payload = RunView.open(run).best_payload
    payload["pareto_seconds"] = payload["pareto_seconds"][:1]  # one point: nothing to trade off, no section
    run_dir.write_best(run, payload)
    assert main(["report", str(run)]) == 0
    assert "## Pareto front: fitness vs pruning seconds" not in (run / "report.md").read_text()
    payload["pareto_seconds"] = [{"canonical": "abs(W)*X", "prune_seconds": 0.2, "fitness": 0.3},
                                 {"canonical": "abs(W)", "prune_seconds": 5.0, "fitness": 0.1}]
    run_dir.write_best(run, payload)
    assert main(["report", str(run)]) == 0
    md = (run / "report.md").read_text()
    assert "## Pareto front: fitness vs pruning seconds" in md and "| 0.2 | 0.3 |" in md
