"""Ray pool on a private local instance: exact equality with the in-process evaluator, and fault tolerance.

Runs only inside a loopback-only network namespace (see tests/distributed_netns.py for why and how).
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest
import torch
from distributed_netns import NETNS_COMMAND, TEST_TOKEN, isolation_problem
from distributed_toy import FACTORY, FORMULAS, DyingSpec

from evoprune.distributed import DispatchPolicy, LocalPool, RayEvaluatorPool
from evoprune.distributed.runtime import LOCAL, connect, disconnect
from evoprune.errors import EvopruneError

PROBLEM = isolation_problem()
pytestmark = [pytest.mark.ray, pytest.mark.skipif(PROBLEM is not None, reason=f"{PROBLEM}; run: {NETNS_COMMAND}")]

# sleep_s stretches each candidate to ~0.1 s so a kill 0.4 s into a 20-candidate run lands mid-run.
SPEC = DyingSpec(rows=128, cols=128, tokens=256, batches=2, sleep_s=0.08)
# Restarting an actor means a new Python process importing torch: seconds when idle, far longer on a loaded CI box.
# The timeout only bounds how long a restart may take; no passing test waits for it.
RESTART_S = 180.0
FAST = DispatchPolicy(recovery_timeout_s=RESTART_S, tick_s=0.2)


def _comparable(results: list[dict]) -> list[tuple]:
    return [(r["formula"], r["fitness"], r["reason"]) for r in results]


@pytest.fixture(scope="module")
def ray_instance():
    """One private Ray instance for the module; pools reuse it and kill only their own actors."""
    with pytest.MonkeyPatch.context() as mp:
        # Workers must import `distributed_toy`; an env token keeps Ray from writing ~/.ray/auth_token.
        mp.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
        mp.setenv("RAY_AUTH_MODE", "token")
        mp.setenv("RAY_AUTH_TOKEN", TEST_TOKEN)
        session = connect(LOCAL, num_cpus=2)
        try:
            yield session
        finally:
            disconnect(session)


@pytest.fixture(scope="module")
def reference() -> list[tuple]:
    """The in-process run, with the actors' thread count (1) so float reductions match bit for bit."""
    threads = torch.get_num_threads()
    try:
        return _comparable(LocalPool(SPEC, evaluator_factory=FACTORY, torch_threads=1).map(FORMULAS))
    finally:
        torch.set_num_threads(threads)


def _after(seconds: float, action) -> threading.Timer:
    timer = threading.Timer(seconds, action)
    timer.start()
    return timer


def test_two_actors_equal_in_process(ray_instance, reference):
    with RayEvaluatorPool(SPEC, evaluator_factory=FACTORY, workers=2, policy=FAST) as pool:
        assert pool.session.mode == "reused" and pool.size == 2
        results = pool.map(FORMULAS)
        pids = {info["pid"] for info in pool.actor_info()}
    assert _comparable(results) == reference
    assert {r["pid"] for r in results} == pids and len(pids) == 2 and os.getpid() not in pids


@pytest.mark.slow
def test_two_actors_with_the_real_evaluator_equal_in_process(ray_instance, truncated_model_dir):
    """The real Evaluator (embedded model cut to 4 blocks, wikitext2 calibration) inside two CPU actors gives
    the in-process fitness values bit for bit, failures and their reasons included."""
    from evoprune.fitness.spec import EvalSpec

    spec = EvalSpec(model=str(truncated_model_dir), device="cpu", dtype="float32", nsamples=4, seqlen=64,
                    leaves=("W", "X", "Hinv"))
    formulas = ["wanda", "abs(W)*sqrt(X)", "abs(W)/Hinv", "W**2*X", "X", "magnitude", "log(abs(W))*X", "W - W"]
    threads = torch.get_num_threads()
    try:
        expected = _comparable(LocalPool(spec, torch_threads=1).map(formulas))
    finally:
        torch.set_num_threads(threads)
    with RayEvaluatorPool(spec, workers=2, policy=FAST) as pool:
        results = pool.map(formulas)
        assert len({info["pid"] for info in pool.actor_info()}) == 2
    assert _comparable(results) == expected
    assert sum(r[1] == float("inf") for r in expected) == 1  # "W - W" is constant: the worst fitness, a reason


def _assert_one_death_no_loss(pool: RayEvaluatorPool, results: list[dict], reference: list[tuple]) -> None:
    assert _comparable(results) == reference  # nothing lost, nothing changed
    assert sorted(i["deaths"] for i in pool.actor_info()) == [0, 1]  # the kill did land mid-run
    assert pool.wait_ready(RESTART_S) == 2  # the actor came back ...
    again = pool.map(FORMULAS)
    assert _comparable(again) == reference
    assert {r["pid"] for r in again} == {i["pid"] for i in pool.actor_info()}  # ... and works again


def test_ray_kill_mid_run_loses_nothing(ray_instance, reference):
    import ray

    with RayEvaluatorPool(SPEC, evaluator_factory=FACTORY, workers=2, policy=FAST) as pool:
        victim = pool.actors[0]
        timer = _after(0.4, lambda: ray.kill(victim, no_restart=False))
        results = pool.map(FORMULAS)
        timer.join()
        _assert_one_death_no_loss(pool, results, reference)


def test_process_kill_mid_run_loses_nothing(ray_instance, reference):
    with RayEvaluatorPool(SPEC, evaluator_factory=FACTORY, workers=2, policy=FAST) as pool:
        old_pid = pool.actor_info()[1]["pid"]
        timer = _after(0.4, lambda: os.kill(old_pid, signal.SIGKILL))
        results = pool.map(FORMULAS)
        timer.join()
        _assert_one_death_no_loss(pool, results, reference)
        assert old_pid not in {i["pid"] for i in pool.actor_info()}  # a new process took its place


def test_crash_inside_a_candidate_is_retried(ray_instance, reference, tmp_path):
    spec = DyingSpec(**{**vars(SPEC), "die_on": "abs(W)*G*X", "marker": str(tmp_path / "died")})
    with RayEvaluatorPool(spec, evaluator_factory=FACTORY, workers=2, policy=FAST) as pool:
        results = pool.map(FORMULAS)
        assert sum(i["deaths"] for i in pool.actor_info()) == 1
    assert (tmp_path / "died").exists() and _comparable(results) == reference


@pytest.mark.parametrize("workers", [1, 2])
def test_poison_candidate_becomes_a_penalty(ray_instance, reference, workers):
    """A candidate that kills every worker is scored as a penalty; candidates queued behind it are not blamed."""
    poisoned = 1
    spec = DyingSpec(**{**vars(SPEC), "die_on": FORMULAS[poisoned], "die_always": True})
    policy = DispatchPolicy(max_attempts=2, max_restarts=4, recovery_timeout_s=RESTART_S, tick_s=0.2)
    with RayEvaluatorPool(spec, evaluator_factory=FACTORY, workers=workers, policy=policy) as pool:
        results = pool.map(FORMULAS[:8])
    reference = reference[:8]
    assert results[poisoned]["fitness"] == float("inf") and "died 2 times" in results[poisoned]["reason"]
    others = [i for i in range(len(results)) if i != poisoned]
    assert [_comparable(results)[i] for i in others] == [reference[i] for i in others]


def test_actor_lost_for_good_shrinks_the_pool(ray_instance, reference):
    import ray

    with RayEvaluatorPool(SPEC, evaluator_factory=FACTORY, workers=2, policy=FAST) as pool:
        victim = pool.actors[1]
        timer = _after(0.4, lambda: ray.kill(victim, no_restart=True))
        results = pool.map(FORMULAS)
        timer.join()
        assert _comparable(results) == reference and pool.size == 1


def test_all_actors_lost_is_a_clear_error(ray_instance):
    import ray

    with RayEvaluatorPool(SPEC, evaluator_factory=FACTORY, workers=2, policy=FAST) as pool:
        for actor in pool.actors:
            ray.kill(actor, no_restart=True)
        with pytest.raises(EvopruneError, match="all 2 evaluator actors are gone"):
            pool.map(FORMULAS[:4])
