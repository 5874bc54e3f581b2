"""Bad input: one line on stderr naming the problem, exit code 2, and nothing loaded or written."""

import pytest

from evoprune.cli.app import main

CASES = [
    (["prune", "--sparsity", "1.2", "--out", "{tmp}/o"], "sparsity must be in [0, 1)"),
    (["prune", "--sparsity", "-0.1", "--out", "{tmp}/o"], "sparsity must be in [0, 1)"),
    (["prune", "--pattern", "2-4", "--out", "{tmp}/o"], "unknown pattern"),
    (["prune", "--pattern", "4:2", "--out", "{tmp}/o"], "0 < N < M"),
    (["prune", "--sparsity", "0.3", "--pattern", "2:4", "--out", "{tmp}/o"], "contradicts pattern"),
    (["prune", "--metric", "nope", "--out", "{tmp}/o"], "unknown metric"),
    (["prune", "--model", "no-such-model", "--out", "{tmp}/o"], "unknown model"),
    (["prune", "--model", "{tmp}", "--out", "{tmp}/o"], "has no config.json"),
    (["prune", "--calib", "nodata", "--out", "{tmp}/o"], "unknown dataset"),
    (["prune", "--calib", "{tmp}/missing.txt", "--out", "{tmp}/o"], "data file not found"),
    (["prune", "--group", "column", "--out", "{tmp}/o"], "unknown group"),
    (["prune", "--mode", "fast", "--out", "{tmp}/o"], "unknown mode"),
    (["prune", "--nsamples", "0", "--out", "{tmp}/o"], "--nsamples must be >= 1"),
    (["prune", "--out", "{tmp}/full"], "exists and is not empty"),
    (["prune", "--device", "tpu7", "--out", "{tmp}/o"], "device"),
    (["eval", "--data", "nodata"], "unknown dataset"),
    (["eval", "--eval-seqlen", "1"], "--eval-seqlen must be >= 2"),
    (["baselines", "--pattern", "2:4x"], "unknown pattern"),
    (["baselines", "--sparsity", "1.5"], "sparsity must be in [0, 1)"),
    (["baselines", "--method", "magic"], "unknown metric"),
    (["prune", "--no-such-flag"], "No such option"),
    (["prune", "--sparsity", "abc", "--out", "x"], "Invalid value for '--sparsity'"),
]


@pytest.mark.parametrize("args,message", CASES, ids=[" ".join(a[:3]) for a, _ in CASES])
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("precious")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert (tmp_path / "full" / "keep.txt").read_text() == "precious"
    assert not (tmp_path / "o").exists()


def test_console_script_exits_2_without_traceback(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "evoprune.cli.app", "prune", "--sparsity", "2", "--out",
                           str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: sparsity must be in [0, 1), got 2.0"
