"""Progress lines where stdout/stderr is not a terminal: a stage's start, its count every few seconds, its end;
statistics passes report through the default reporter the command line installs."""

import io

import pytest
import torch

from evoprune.cli.progress import LineProgress
from evoprune.stats.progress import default_progress, set_default_progress


def test_line_progress_prints_start_periodic_counts_and_end():
    stream = io.StringIO()
    report = LineProgress(every=0.0, stream=stream)  # every=0: a count line after every step
    for _ in range(3):
        report("gradients", 1, 3)
    report("gradients", 2, 2)  # a completed stage starts again
    report("statistics loaded from the cache (x.pt)", 0, 0)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[evoprune] gradients (3 steps)"
    assert lines[1].startswith("[evoprune] gradients 1/3 (") and lines[2].startswith("[evoprune] gradients 2/3 (")
    assert lines[3].startswith("[evoprune] gradients 3/3 done in ")
    assert lines[4] == "[evoprune] gradients (2 steps)" and lines[5].startswith("[evoprune] gradients 2/2 done")
    assert lines[6] == "[evoprune] statistics loaded from the cache (x.pt)"
    assert len(lines) == 7


def test_line_progress_is_quiet_between_periods():
    stream = io.StringIO()
    report = LineProgress(every=3600.0, stream=stream)
    for _ in range(10):
        report("statistics", 1, 30)
    assert stream.getvalue().splitlines() == ["[evoprune] statistics (30 steps)"]


@pytest.mark.slow
def test_statistics_and_gradient_passes_report_through_the_default(truncated_model_dir, tmp_path, monkeypatch):
    from evoprune.data.tokens import CalibSpec
    from evoprune.model.loading import load_model
    from evoprune.stats.cache import cached_dense_stats

    monkeypatch.setenv("EVOPRUNE_CACHE_DIR", str(tmp_path))
    loaded = load_model(str(truncated_model_dir), "cpu", "float32")
    windows = torch.randint(0, 1000, (2, 16))
    calls = []
    set_default_progress(lambda stage, k, total: calls.append((stage, k, total)))
    try:
        cached_dense_stats(loaded.model, windows, CalibSpec("wikitext2", 2, 16, 0), with_grad=True)
        first = list(calls)
        calls.clear()
        cached_dense_stats(loaded.model, windows, CalibSpec("wikitext2", 2, 16, 0), with_grad=True)
    finally:
        set_default_progress(None)
    assert ("statistics", 1, 4) in first and sum(k for s, k, _ in first if s == "statistics") == 4
    assert sum(k for s, k, _ in first if s == "gradients") == 2
    assert len(calls) == 1 and calls[0][0].startswith("statistics loaded from the cache") and calls[0][2] == 0
    assert default_progress() is None
