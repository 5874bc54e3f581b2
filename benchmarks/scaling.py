"""Candidates per second of the evaluator pool with 1 and 2 CPU workers (and per GPU count), side by side.

Writes benchmarks/results/scaling.md. Every row runs in the same process and Ray instance, one after another, so
they see the same machine load. Ray keeps traffic on loopback only inside a network namespace, so run it as:

    unshare -n bash -c 'ip link set lo up; python benchmarks/scaling.py'                 # toy: ~1 min
    unshare -n bash -c 'ip link set lo up; python benchmarks/scaling.py --evaluator real --candidates 8'

--evaluator toy: `evoprune.distributed.synthetic` sized so one candidate is ~0.3 s of single-threaded torch work.
--evaluator real: `evoprune.fitness.evaluator:Evaluator` with the default EvalSpec (embedded SmolLM2-135M).
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import time
from pathlib import Path
from typing import Any

import torch

from evoprune.distributed import LocalPool, RayEvaluatorPool
from evoprune.distributed.runtime import LOCAL, connect, disconnect

FORMULAS = ["abs(W)*X", "abs(W)", "abs(W)*sqrt(X)", "abs(W)*X*X", "abs(W*Hinv)", "abs(W)/Hinv", "sqrt(abs(W))*X",
            "abs(W)*X+Hinv", "abs(W)*Hinv*X", "abs(W)*exp(X)", "log(abs(W))+log(X)", "abs(W)+X"]


def _setup(kind: str, device: str) -> tuple[str, Any]:
    if kind == "toy":
        from evoprune.distributed.synthetic import SyntheticSpec

        spec = SyntheticSpec(rows=1024, cols=1024, tokens=1024, batches=4, device=device)
        return "evoprune.distributed.synthetic:SyntheticEvaluator", spec
    from evoprune.fitness.spec import EvalSpec

    # the quick preset's evaluation: layer fitness over W, X, Hinv on a quarter of the rows (cached statistics)
    return "evoprune.fitness.evaluator:Evaluator", EvalSpec(device=device, leaves=("W", "X", "Hinv"), fitness_rows=0.25)


def _candidates(n: int) -> list[str]:
    # Distinct rankings (X shifted by a different constant), so no evaluator cache (canonical form or mask hash)
    # can short-cut a repeat.
    return [f"({FORMULAS[i % len(FORMULAS)]})*(X+{i + 1})" for i in range(n)]


def _time_map(pool: Any, n: int, warmup: int) -> float:
    pool.map(_candidates(warmup))  # first calls pay lazy set-up (allocator, caches) that a long search amortises
    start = time.perf_counter()
    results = pool.map(_candidates(n))
    elapsed = time.perf_counter() - start
    assert len(results) == n and all(r["formula"] for r in results)
    return elapsed


def run(kind: str, n: int, workers: list[int]) -> list[dict[str, Any]]:
    rows = []
    factory, spec = _setup(kind, "cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    local = LocalPool(spec, evaluator_factory=factory)
    rows.append({"mode": "in-process (no Ray)", "workers": 1, "seconds": _time_map(local, n, 1)})
    torch.set_num_threads(threads)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    session = connect(LOCAL, num_cpus=max(workers))
    try:
        for k in workers:
            with RayEvaluatorPool(spec, evaluator_factory=factory, workers=k, use_gpus=False) as pool:
                rows.append({"mode": "Ray CPU actors", "workers": k, "seconds": _time_map(pool, n, k)})
        gpu_factory, gpu_spec = _setup(kind, "cuda")
        for g in range(1, gpus + 1):
            with RayEvaluatorPool(gpu_spec, evaluator_factory=gpu_factory, workers=g, use_gpus=True) as pool:
                rows.append({"mode": "Ray GPU actors", "workers": g, "seconds": _time_map(pool, n, g)})
    finally:
        disconnect(session)
    return rows


def to_markdown(rows: list[dict[str, Any]], kind: str, n: int, load_before: float) -> str:
    lines = [f"# Evaluator pool scaling ({kind} evaluator)", "",
             f"{n} candidates per row; machine: {platform.node()}, {os.cpu_count()} cores, load average before the "
             f"run {load_before:.2f}; Ray {__import__('ray').__version__}, torch {torch.__version__}.",
             "Speedup and efficiency are against the 1-worker row of the same mode (candidates/s ratio).", "",
             "| mode | workers | seconds | candidates/s | speedup | efficiency |", "|---|---|---|---|---|---|"]
    base = {r["mode"]: n / r["seconds"] for r in rows if r["workers"] == 1}
    for r in rows:
        cps = n / r["seconds"]
        speedup = cps / base[r["mode"]]
        lines.append(f"| {r['mode']} | {r['workers']} | {r['seconds']:.2f} | {cps:.2f} | {speedup:.2f} | "
                     f"{speedup / r['workers']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--evaluator", choices=["toy", "real"], default="toy")
    parser.add_argument("--candidates", type=int, default=40)
    parser.add_argument("--workers", default="1,2", help="comma-separated CPU worker counts")
    parser.add_argument("--out", type=Path, help="default: results/scaling.md (toy) or results/scaling_real.md")
    args = parser.parse_args()
    results = Path(__file__).parent / "results"
    args.out = args.out or results / ("scaling.md" if args.evaluator == "toy" else "scaling_real.md")
    os.environ.setdefault("EVOPRUNE_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))  # no ~/.ray/auth_token written
    load_before = os.getloadavg()[0]
    rows = run(args.evaluator, args.candidates, [int(w) for w in args.workers.split(",")])
    text = to_markdown(rows, args.evaluator, args.candidates, load_before)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
