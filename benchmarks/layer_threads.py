"""The layer fitness with layers side by side on threads vs one after another, same process, same candidates.

`LayerFitness` prunes and scores its layers on a thread per torch thread (CPU): numpy's selection and the OBS
sweep's Python loop use one core each. This measures both orders alternately (ABAB) on the quick.yaml evaluator
(fisher fitness, a quarter of the rows) over a fixed set of recipes with and without the OBS update and with tree
allocations, checks that the fitness values are identical, and prints the ratio.

    python benchmarks/layer_threads.py      # writes results/layer_threads.md
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"
CONFIG = Path(__file__).resolve().parents[1] / "search_spaces" / "quick.yaml"
CANDIDATES = [
    "wanda", "magnitude", "ria", "log(X**1.5*Abs(W)**1.5)", "colnorm(log(W))", "X*Abs(W)*rownorm(W)",
    '{"allocation": "uniform", "refine": "none", "score": "wanda", "update": "obs"}',
    '{"allocation": "tree:delta=0.1;div(spread, depth)", "refine": "none", "score": "wanda", "update": "obs"}',
    '{"allocation": "tree:delta=0.1;div(attn, outlier)", "refine": "none", "score": "colnorm(log(W))", '
    '"update": "obs"}',
    '{"allocation": "tree:delta=0.1;0.5*qk", "refine": "none", "score": "X*Abs(W)", "update": "none"}',
    '{"allocation": "owl", "refine": "none", "score": "wanda", "update": "obs"}',
    '{"allocation": "tree:delta=0.1;outlier", "refine": "none", "score": "sqrt(X)*Abs(W)", "update": "obs"}',
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="ABAB rounds")
    args = parser.parse_args()
    os.environ.setdefault("EVOPRUNE_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    torch.set_num_threads(args.threads)
    from evoprune.fitness.evaluator import Evaluator
    from evoprune.fitness.layer_fitness import LayerFitness
    from evoprune.search.config import load_config

    evaluator = Evaluator(load_config(CONFIG).evaluation)
    threaded = LayerFitness._map

    def serial(self, fn, keys):
        return [fn(key) for key in keys]

    def run(mapper) -> tuple[float, list[float]]:
        LayerFitness._map = mapper
        evaluator.mask_cache.clear()  # every candidate computed, not answered from the previous round
        start = time.perf_counter()
        values = [evaluator.evaluate(c)["fitness"] for c in CANDIDATES]
        return time.perf_counter() - start, values

    run(threaded)  # warm-up: inverse-Hessian factors, allocation targets
    times = {"threads": [], "serial": []}
    values = {}
    for _ in range(args.rounds):
        for name, mapper in (("threads", threaded), ("serial", serial)):
            seconds, values[name] = run(mapper)
            times[name].append(seconds / len(CANDIDATES))
    LayerFitness._map = threaded
    identical = values["threads"] == values["serial"]
    best = {name: min(t) for name, t in times.items()}
    ratio = best["serial"] / best["threads"]
    line = (f"{len(CANDIDATES)} candidates, {args.threads} torch threads: serial {best['serial']:.2f} s a candidate, "
            f"threaded {best['threads']:.2f} s ({ratio:.2f}x); fitness values identical: {identical}")
    print(line)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "layer_threads.md").write_text(
        "# Layer fitness: layers on threads vs one after another\n\n"
        f"`python benchmarks/layer_threads.py` — the quick.yaml evaluator (embedded model, fisher fitness on a "
        f"quarter of the rows), {len(CANDIDATES)} fixed recipes (with and without the OBS update, tree and OWL "
        f"allocations), best of {args.rounds} alternating rounds each, same process.\n\n"
        f"| order | seconds a candidate |\n|---|---|\n| serial | {best['serial']:.2f} |\n"
        f"| threaded | {best['threads']:.2f} |\n\n{line}\n")


if __name__ == "__main__":
    main()
