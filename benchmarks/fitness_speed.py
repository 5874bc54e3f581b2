"""Time per candidate of a fitness, measured side by side in one run on the embedded model, against:

(a) the floor: compute the formula for all layers + select masks + one forward pass of the fitness tokens;
(b) a Pruner-Zero-style evaluation: fresh model load + sequential pruning + perplexity on the same tokens.

Candidates are distinct |W|·X^a metrics (a new mask each time, so no cache hit flatters the fitness); with
`--rows`, the same fitness on a fraction of the rows, plain and with the recipe stages `swaps` (default budget)
and `obs` (the weight update) inside it.
Writes benchmarks/results/fitness_speed_<fitness>.md.

    python benchmarks/fitness_speed.py [--fitness layer] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from evoprune.data.perplexity import perplexity
from evoprune.data.protocol import PerplexitySpec, calib_windows, evaluation_windows
from evoprune.data.tokens import CalibSpec
from evoprune.fitness.evaluator import Evaluator
from evoprune.fitness.spec import EvalSpec
from evoprune.model.loading import load_model
from evoprune.prune.apply import fraction_targets, prune_sequential
from evoprune.prune.masks import parse_pattern
from evoprune.prune.method import Method
from evoprune.prune.recipe import Recipe

RESULTS = Path(__file__).parent / "results"


def power_metric(a: float):
    return lambda lv: lv["W"].abs() * lv["X"].pow(a)


def time_fitness(ev: Evaluator, exponents: list[float], refine: str = "none", update: str = "none") -> list[float]:
    out = []
    for a in exponents:
        recipe = Recipe.parse(f"abs(W)*X**{a}", refine=refine, update=update)
        result = ev.evaluate_recipe(power_metric(a), recipe, str(recipe))
        assert result.reason is None, result.reason
        out.append(result.seconds)
    return out


@torch.no_grad()
def time_floor(ev: Evaluator, exponents: list[float]) -> list[float]:
    device = next(ev.loaded.model.parameters()).device
    windows = calib_windows(ev.loaded, ev.calib)[: ev.spec.fitness_samples].to(device)
    out = []
    for a in exponents:
        start = time.perf_counter()
        recipe, pattern = Recipe(), parse_pattern("unstructured")
        pruned = ev.fitness.prune(power_metric(a), recipe, ev.targets(recipe, 0.5, pattern), pattern, subset=False)
        ev._apply({key: new for key, (_, new) in pruned.items()})
        ev.loaded.model(windows)
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # kernels run asynchronously: stop the clock when they are done
        out.append(time.perf_counter() - start)
        ev._apply(None)
    return out


def time_pruner_zero_style(spec: EvalSpec, exponents: list[float]) -> list[float]:
    out = []
    for a in exponents:
        start = time.perf_counter()
        loaded = load_model(spec.model, spec.device, spec.dtype)
        windows = calib_windows(loaded, CalibSpec(spec.calib, spec.nsamples, spec.seqlen, spec.seed))
        unstructured = parse_pattern("unstructured")
        prune_sequential(loaded.model, windows, Method("p", power_metric(a), ("W", "X")), Recipe("p"),
                         fraction_targets(loaded.model, 0.5, unstructured), unstructured)
        tokens = evaluation_windows(loaded, PerplexitySpec(spec.eval_data, spec.eval_seqlen, spec.eval_max_tokens))
        perplexity(loaded.model, tokens)
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fitness", default="layer")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", type=float, nargs="*", default=[0.25], help="also time these fitness_rows")
    parser.add_argument("--device", default="cpu", help="cpu (float32) or cuda (its default dtype, bfloat16); "
                        "a GPU run writes fitness_speed_<fitness>_cuda.md beside the CPU file")
    args = parser.parse_args()
    os.environ.setdefault("EVOPRUNE_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    torch.set_num_threads(args.threads)
    on_cpu = args.device == "cpu"
    spec = EvalSpec(device=args.device, dtype="float32" if on_cpu else "auto", fitness=args.fitness,
                    leaves=("W", "X", "Hinv"))
    ev = Evaluator(spec)
    ev.evaluate("wanda")  # warm-up: first call pays one-off allocations
    exps = [0.5 + 0.1 * i for i in range(args.repeats)]
    fitness = {1.0: statistics.median(time_fitness(ev, [e + 0.05 for e in exps]))}
    staged: dict[tuple[float, str], float] = {}
    for rows in args.rows:  # the same fitness on a fraction of the rows (EvalSpec.fitness_rows), as quick.yaml
        sub = Evaluator(EvalSpec(**{**vars(spec), "fitness_rows": rows}))
        sub.evaluate("wanda")
        fitness[rows] = statistics.median(time_fitness(sub, [e + 0.05 for e in exps]))
        for refine, update in (("swaps", "none"), ("none", "obs")):  # recipe stages inside the fitness
            stage = f"{refine}+{update}".replace("+none", "").replace("none+", "")
            staged[(rows, stage)] = statistics.median(time_fitness(sub, [e + 0.07 for e in exps], refine, update))
        del sub
    floor = statistics.median(time_floor(ev, exps))
    pz = statistics.median(time_pruner_zero_style(spec, exps))
    lines = [
        f"# Fitness speed ({args.fitness}), embedded model, "
        f"{f'{args.threads} CPU threads' if on_cpu else args.device}, median of {args.repeats}",
        "", "Produced by `python benchmarks/fitness_speed.py --fitness " + args.fitness
        + ("" if on_cpu else f" --device {args.device}") + "`; every row measured in "
        "the same run. Candidates are distinct |W|·X^a metrics (new masks each time: no cache hit).", "",
        "| evaluation | seconds / candidate | ratio to fitness (all rows) |", "|---|---|---|"]
    for rows, secs in fitness.items():
        label = "all rows" if rows == 1.0 else f"fitness_rows {rows:g}"
        lines.append(f"| evoprune `{args.fitness}` fitness, {label} | {secs:.2f} | {secs / fitness[1.0]:.2f} |")
        for (staged_rows, stage), staged_secs in staged.items():
            if staged_rows == rows:
                lines.append(f"| ... with `{stage}` inside the fitness, {label} | {staged_secs:.2f} | "
                             f"{staged_secs / fitness[1.0]:.2f} |")
    lines += [
        f"| floor: formula + masks + one forward of {spec.fitness_samples}x{spec.seqlen} tokens | {floor:.2f} | "
        f"{floor / fitness[1.0]:.2f} |",
        f"| Pruner-Zero style: load + sequential prune + perplexity ({spec.eval_max_tokens} tokens) | {pz:.2f} "
        f"| {pz / fitness[1.0]:.1f} |", ""]
    for rows, secs in fitness.items():
        label = "all rows" if rows == 1.0 else f"fitness_rows {rows:g}"
        lines.append(f"- {label}: fitness / floor = {secs / floor:.2f} (target <= 2); Pruner-Zero style / fitness = "
                     f"{pz / secs:.1f} (target >= 20).")
    RESULTS.mkdir(exist_ok=True)
    suffix = "" if on_cpu else f"_{args.device.split(':')[0]}"
    (RESULTS / f"fitness_speed_{args.fitness}{suffix}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
