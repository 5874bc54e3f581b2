"""The parts of evoprune.distributed that need no Ray instance: run everywhere, no network namespace needed."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from evoprune.distributed import LocalPool, load_factory, open_pool
from evoprune.distributed.runtime import connect
from evoprune.distributed.synthetic import SyntheticEvaluator, SyntheticSpec
from evoprune.errors import EvopruneError

SYNTH = "evoprune.distributed.synthetic:SyntheticEvaluator"
SPEC = SyntheticSpec(rows=64, cols=64, tokens=64, batches=1)


def test_single_worker_pool_is_in_process_and_never_imports_ray():
    code = (
        "import sys\n"
        "from evoprune.distributed import open_pool\n"
        "from evoprune.distributed.synthetic import SyntheticSpec\n"
        f"with open_pool(SyntheticSpec(rows=8, cols=8, tokens=8, batches=1), evaluator_factory={SYNTH!r}) as pool:\n"
        "    r = pool.map(['abs(W)*X', 'W'])\n"
        "assert type(pool).__name__ == 'LocalPool' and [x['formula'] for x in r] == ['abs(W)*X', 'W']\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_local_pool_equals_the_evaluator_and_keeps_input_order():
    formulas = ["abs(W)", "abs(W)*X", "bad(", "W"]
    direct = SyntheticEvaluator(SPEC)
    with LocalPool(SPEC, evaluator_factory=SYNTH) as pool:
        results = pool.map(formulas)
    assert [r["formula"] for r in results] == formulas
    assert [r["fitness"] for r in results] == [direct.evaluate(f)["fitness"] for f in formulas]
    assert results[2]["fitness"] == float("inf") and results[2]["reason"].startswith("bad formula")
    assert isinstance(pool.evaluator, SyntheticEvaluator)  # reusable by the driver (jobs/search.py re-scoring)


@pytest.mark.parametrize("path", ["no_colon", "evoprune.nope:X", "evoprune.distributed.synthetic:Missing", ":X"])
def test_bad_factory_paths_are_user_errors(path):
    with pytest.raises(EvopruneError):
        load_factory(path)


def test_open_pool_picks_local_for_one_worker():
    with open_pool(SPEC, workers=1, evaluator_factory=SYNTH) as pool:
        assert isinstance(pool, LocalPool) and pool.size == 1


@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://127.0.0.1:1"])
def test_dead_cluster_address_fails_fast(address):
    start = time.monotonic()
    with pytest.raises(EvopruneError, match="no Ray cluster answers"):
        connect(address)
    assert time.monotonic() - start < 10


def test_stale_auto_address_fails_fast(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # what a stale cluster file or env var points at
    start = time.monotonic()
    with pytest.raises(EvopruneError, match="no Ray cluster answers"):
        connect("auto")
    assert time.monotonic() - start < 10
