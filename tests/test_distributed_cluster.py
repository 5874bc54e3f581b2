"""A simulated two-node Ray cluster on this machine (loopback only): the pool joins it, places actors on both
nodes, runs a small search, survives losing a node for good, and leaves the cluster running when it closes.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import pytest
import torch
from distributed_netns import NETNS_COMMAND, TEST_TOKEN, TwoNodeCluster, isolation_problem
from distributed_toy import FACTORY, FORMULAS, DyingSpec

from evoprune.distributed import DispatchPolicy, LocalPool, RayEvaluatorPool

PROBLEM = isolation_problem()
pytestmark = [pytest.mark.ray, pytest.mark.skipif(PROBLEM is not None, reason=f"{PROBLEM}; run: {NETNS_COMMAND}")]

SPEC = DyingSpec(rows=128, cols=128, tokens=256, batches=2, sleep_s=0.02)
POLICY = DispatchPolicy(recovery_timeout_s=3.0, tick_s=0.2)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    # A short temp dir: Ray's unix socket paths must stay under ~107 characters.
    temp_dir = tempfile.mkdtemp(prefix="evr", dir="/tmp")
    with pytest.MonkeyPatch.context() as mp:
        # Every process of the cluster and the driver share one token (Ray 2.60 turns token auth on by default).
        mp.setenv("RAY_AUTH_MODE", "token")
        mp.setenv("RAY_AUTH_TOKEN", TEST_TOKEN)
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
        mp.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
        nodes = TwoNodeCluster(_free_port(), temp_dir, dict(os.environ))
        try:
            yield nodes
        finally:
            nodes.stop()
            shutil.rmtree(temp_dir, ignore_errors=True)


def _search(map_fn, generations: int = 3) -> list[tuple[str, float]]:
    """A tiny search: each generation varies the current best formula; the history depends on every result."""
    population, history = list(FORMULAS[:8]), []
    for _ in range(generations):
        results = map_fn(population)
        best = min(results, key=lambda r: (r["fitness"], r["formula"]))
        history.append((best["formula"], best["fitness"]))
        b = best["formula"]
        population = [b, f"({b})*X", f"({b})*sqrt(X)", f"({b})+G", f"({b})*Hinv", f"abs({b})*X*X", f"({b})/X",
                      f"log(abs({b}))"]
    return history


def test_pool_joins_two_nodes_searches_and_survives_node_loss(cluster):
    import ray

    threads = torch.get_num_threads()
    try:
        expected = _search(LocalPool(SPEC, evaluator_factory=FACTORY, torch_threads=1).map)
    finally:
        torch.set_num_threads(threads)
    start = time.monotonic()
    with RayEvaluatorPool(SPEC, evaluator_factory=FACTORY, workers=2, address=cluster.address,
                          policy=POLICY) as pool:
        assert pool.session.mode == "joined"
        placed = {info["node_id"] for info in pool.actor_info()}
        assert placed == cluster.node_ids and cluster.node2_id in placed  # one actor on each node
        assert _search(pool.map) == expected

        cluster.crash_worker()  # node 2 is gone for good: its actor cannot be restarted anywhere
        results = pool.map(FORMULAS)
        assert [r["fitness"] for r in results] == [r["fitness"] for r in LocalPool(
            SPEC, evaluator_factory=FACTORY, torch_threads=1).map(FORMULAS)]
        assert pool.wait_ready(10) == 1 and pool.size == 1  # the pool shrank instead of failing
        assert {r["pid"] for r in pool.map(FORMULAS[:4])} == {pool.actor_info()[0]["pid"]}
    torch.set_num_threads(threads)
    assert not ray.is_initialized()  # the pool disconnected ...
    ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    try:
        # The pool notices the lost actor at once; the GCS marks the node dead only after its health checks
        # fail (about 5 s, longer on a loaded machine), so wait for that before comparing.
        survivors = [n for n in cluster.node_ids if n != cluster.node2_id]
        deadline = time.monotonic() + 30
        while (alive := [n["NodeID"] for n in ray.nodes() if n["Alive"]]) != survivors \
                and time.monotonic() < deadline:
            time.sleep(0.5)
        assert alive == survivors  # ... head still up, node 2 marked dead
    finally:
        ray.shutdown()
    assert time.monotonic() - start < 90
