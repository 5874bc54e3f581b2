"""BLiMP zero-shot accuracy (lm-evaluation-harness, all 67 sets) beside wikitext2 perplexity on the embedded model:
dense, then magnitude, Wanda, RIA, SparseGPT and evolved metrics at 50 % unstructured and 2:4. One run.

Writes benchmarks/results/zeroshot.md; every row is appended to results/zeroshot.rows.jsonl as soon as it is
measured (`--resume` keeps them). `--limit N` scores the first N pairs of every set (1,000 = all): the accuracy's
standard error is printed beside it, so a reader can tell real differences from noise.

    python benchmarks/zeroshot.py --limit 50               # ~45 min on an idle 2-core VM
    python benchmarks/zeroshot.py --limit 1000          # the full benchmark (a GPU: minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"
ROWS = RESULTS / "zeroshot.rows.jsonl"
METHODS = ("magnitude", "wanda", "ria", "sparsegpt")
# Pruner-Zero's published evolved formula (built in): the metric the motivation is about; then evoprune's
# own evolved recipes, each at the setting it was searched for: the README's quick search (50 %) and the discovery
# benchmark's reconstruct 2:4 searches, without and with the re-solve (its metric-only 2:4 searches returned the
# seeded hand-made Wanda+swaps); and the re-solve's hand-made rival, SparseGPT's mask re-solved (both patterns).
EVOLVED = "pruner-zero"
RECIPES = ("benchmarks/recipes/quick-best.json", "benchmarks/recipes/reconstruct-2of4.json",
           "benchmarks/recipes/sparsegpt-resolve.json", "benchmarks/recipes/reconstruct-2of4-resolve.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=1000, help="BLiMP pairs per set (1000 = all)")
    parser.add_argument("--evolved", nargs="+", default=[EVOLVED, *RECIPES],
                        help="evolved metrics: built-in names, formulas or exported recipe files (a file's rows are "
                             "at the settings it was searched for)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", help="float32 (default: the CPU tables' numbers), bfloat16, auto")
    parser.add_argument("--resume", action="store_true", help="skip rows already in the rows file (--rows)")
    parser.add_argument("--only", nargs="*", default=None, metavar="METHOD@PATTERN",
                        help="measure just these rows, in this order (e.g. dense@- wanda@2:4 sparsegpt@unstructured)")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from the rows file")
    parser.add_argument("--rows", type=Path, default=ROWS,
                        help="rows file (default results/zeroshot.rows.jsonl); the report is written beside it, "
                             "named after it: zeroshot_full_gpu.rows.jsonl -> zeroshot_full_gpu.md and .json")
    args = parser.parse_args()
    if args.report_only and not args.rows.is_file():
        parser.error(f"--report-only: no rows file {args.rows}")
    if args.report_only:
        write([json.loads(x) for x in args.rows.read_text().splitlines()], None, args.rows)
        return
    os.environ.setdefault("EVOPRUNE_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    torch.set_num_threads(args.threads)
    from evoprune.data.perplexity import perplexity
    from evoprune.data.protocol import PerplexitySpec, evaluation_windows, protocol_record
    from evoprune.data.tokens import CalibSpec
    from evoprune.evaluation.harness import run_tasks
    from evoprune.jobs.prune import PruneSpec, prune_loaded, resolve_recipe, snapshot, with_file_stages
    from evoprune.model.loading import load_model

    loaded = load_model("smollm2-135m", args.device, args.dtype)
    calib, evaluation = CalibSpec("wikitext2", 32, 256, 0), PerplexitySpec("wikitext2", 512, 16384)
    windows = evaluation_windows(loaded, evaluation)
    protocol = {**protocol_record(loaded, calib, evaluation), "blimp_limit": args.limit, "evolved": args.evolved,
                "device": str(next(loaded.model.parameters()).device),
                "dtype": str(next(loaded.model.parameters()).dtype).removeprefix("torch.")}
    RESULTS.mkdir(exist_ok=True)
    rows = [json.loads(x) for x in args.rows.read_text().splitlines()] if args.resume and args.rows.is_file() else []
    if not args.resume:
        args.rows.write_text("")
    done = {(r["method"], r["pattern"]) for r in rows}
    original = snapshot(loaded.model)
    # Cheapest first (SparseGPT and the gradient pass of an evolved metric with G last), so an interrupted run
    # still holds the most rows; --resume continues it.
    # A recipe file runs at the settings it was searched for (`recipe_patterns`).
    configs = planned_rows(args.evolved)
    if args.only is not None:
        configs = [tuple(item.split("@", 1)) for item in args.only]
    for method_name, pattern in configs:
        if (method_name, pattern) in done:
            continue
        loaded.model.load_state_dict(original)
        start = time.perf_counter()
        sparsity = 0.0
        if method_name != "dense":
            structured = pattern != "unstructured"
            spec = PruneSpec(method_name, None if structured else 0.5, pattern, "row", "sequential")
            # A recipe file (an exported recipe search) brings its allocation, refinement and update stages.
            method, recipe = resolve_recipe(method_name, calib.seqlen)
            reports = prune_loaded(loaded, method, with_file_stages(spec, recipe), calib)
            sparsity = sum(r.pruned for r in reports) / sum(r.total for r in reports)
        prune_s = time.perf_counter() - start
        start = time.perf_counter()
        ppl = perplexity(loaded.model, windows)
        ppl_s = time.perf_counter() - start
        zs = run_tasks(loaded, "blimp", limit=args.limit, batch_size=args.batch_size)
        row = {"method": method_name, "pattern": pattern, "sparsity": sparsity, "perplexity": ppl,
               "blimp_acc": zs["groups"]["blimp"]["acc"], "blimp_stderr": zs["groups"]["blimp"]["acc_stderr"],
               "blimp_examples": zs["groups"]["blimp"]["examples"],
               "per_set": {k: v["acc"] for k, v in zs["results"].items()},
               "seconds": {"prune": prune_s, "perplexity": ppl_s, "blimp": zs["seconds"]},
               "lm_eval_version": zs["lm_eval_version"]}
        print(json.dumps({k: v for k, v in row.items() if k != "per_set"}), flush=True)
        rows.append(row)
        with open(args.rows, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        write(rows, protocol, args.rows)
    loaded.model.load_state_dict(original)
    write(rows, protocol, args.rows)


def recipe_patterns(path: str) -> tuple[str, ...]:
    """The patterns an exported recipe was searched for ("unstructured" for a sparsity): its rows. A recipe's
    per-layer allocation has no N:M form and an N:M recipe was not chosen for unstructured masks. A hand-made
    recipe file (no provenance) gets both."""
    provenance = json.loads(Path(path).read_text()).get("provenance")
    if provenance is None:  # a hand-made recipe file: like a built-in, at both
        return ("2:4", "unstructured")
    settings = provenance.get("settings") or []
    patterns = {s.get("pattern") or "unstructured" for s in settings if s.get("sparsity", 0.5) == 0.5}
    return tuple(p for p in ("2:4", "unstructured") if p in patterns) or ("unstructured",)


def paired_difference(row: dict, rival: dict) -> tuple[float, float]:
    """(mean per-set accuracy difference, its standard error), in points: the sets are the paired units."""
    sets = sorted(set(row["per_set"]) & set(rival["per_set"]))
    diffs = torch.tensor([row["per_set"][k] - rival["per_set"][k] for k in sets], dtype=torch.float64) * 100
    return float(diffs.mean()), float(diffs.std() / len(sets) ** 0.5)


def recipe_text(path: str) -> str:
    """One line: the recipe's stages and where it was searched."""
    from evoprune.export.metric_file import load_recipe_file

    data = json.loads(Path(path).read_text())
    loaded = load_recipe_file(path)  # an exported recipe or a plain (hand-made) one; None: a bare exported formula
    recipe = loaded.to_dict() if loaded is not None else {"score": data["formula"]}
    stages = ", ".join(f"{k} `{v}`" for k, v in recipe.items() if k != "score" and v not in (None, "none", "uniform"))
    prov = data.get("provenance")
    if prov is None:
        return f"score `{recipe['score']}`" + (f", {stages}" if stages else "") + " (hand-made)"
    settings = ", ".join(f"{s['sparsity']:g} {s['pattern'] or 'unstructured'}" for s in prov.get("settings") or [])
    return (f"score `{data.get('text', recipe['score'])}`" + (f", {stages}" if stages else "")
            + f" (evolved by `{prov.get('run', '?')}` at {settings or '?'}, {prov.get('fitness_type', '?')} fitness)")


def planned_rows(evolved: list[str]) -> list[tuple[str, str]]:
    """(method, pattern) of every row: dense, then each method at 2:4 and 50 %, recipe files at their settings."""
    return [("dense", "-")] + [(m, p) for m in (*METHODS, *evolved)
                               for p in (recipe_patterns(m) if m.endswith(".json") else ("2:4", "unstructured"))]


def shown(path: Path) -> str:
    """A path as a reader re-runs it: relative to the repository root when it lies inside."""
    root = Path(__file__).resolve().parents[1]
    return str(path.resolve().relative_to(root)) if path.resolve().is_relative_to(root) else str(path)


def write(rows: list[dict], protocol: dict | None, rows_path: Path = ROWS) -> None:
    """The report beside `rows_path`: <name>.md, and <name>.json with the protocol (read back by --report-only)."""
    stem = rows_path.name.removesuffix(".rows.jsonl")
    record, report = rows_path.with_name(f"{stem}.json"), rows_path.with_name(f"{stem}.md")
    if protocol is not None:
        record.write_text(json.dumps({"protocol": protocol, "rows": rows}, indent=2) + "\n")
    elif record.is_file():
        protocol = json.loads(record.read_text())["protocol"]
    limit = (protocol or {}).get("blimp_limit", "?")
    device = (protocol or {}).get("device", "cpu")
    command = "python benchmarks/zeroshot.py" + ("" if device == "cpu" else f" --device {device.split(':')[0]}") \
        + f" --limit {limit}" + ("" if rows_path.resolve() == ROWS.resolve() else f" --rows {shown(rows_path)}")
    examples = rows[0]["blimp_examples"] if rows else 0
    se = [r["blimp_stderr"] for r in rows]
    lines = ["# Zero-shot accuracy beside perplexity (SmolLM2-135M-Instruct, embedded model)", "",
             f"Produced by `{command}`: one measurement per row (every step is "
             "deterministic, so a run resumed with `--resume`/`--only` gives the same rows). BLiMP through",
             f"lm-evaluation-harness {rows[0]['lm_eval_version'] if rows else ''} (`HFLM` on the in-memory pruned "
             f"model, evoprune's local task definitions over the offline data): all 67 sets, the first {limit} "
             f"pairs of each ({examples:,} pairs per row, of 67,000), 0-shot; a pair is right when the good "
             "sentence gets the higher log-likelihood. Mean = unweighted mean over the 67 sets; ± is its standard "
             "error, sqrt(sum of per-set binomial variances)/67"
             + (f" ({min(se) * 100:.2f}-{max(se) * 100:.2f} points here)" if se else "") + ": two rows whose "
             "accuracies differ by less than about 2.8 standard errors (√2 × 1.96) are not distinguishable at 95 % "
             "(a conservative rule: every row scores the same pairs, so paired differences vary less).",
             "Perplexity: wikitext2 test, first 16,384 tokens, 512-token windows. Pruning: calibration 32 x 256 "
             "tokens of wikitext2 valid, seed 0, sequential (block by block), comparison group row; "
             "pruner-zero is Pruner-Zero's evolved formula (built in; G from the dense model); a .json row is a "
             "recipe file (an exported evoprune search result, or hand-made) with its own stages. "
             f"{(protocol or {}).get('dtype', 'float32')} on {device}.", "",
             "| method | pattern | sparsity | wikitext2 ppl | BLiMP mean acc (%) | ± s.e. | vs dense (points) | "
             "vs Wanda, same pattern (paired, points ± s.e.) | vs SparseGPT, same pattern (paired) |",
             "|---|---|---|---|---|---|---|---|---|"]
    dense = next((r["blimp_acc"] for r in rows if r["method"] == "dense"), None)
    wanda = {r["pattern"]: r for r in rows if r["method"] == "wanda"}
    sparsegpt = {r["pattern"]: r for r in rows if r["method"] == "sparsegpt"}
    order = {p: i for i, p in enumerate(("-", "unstructured", "2:4"))}
    methods = {m: i for i, m in enumerate(("dense", *METHODS))}
    for r in sorted(rows, key=lambda r: (order.get(r["pattern"], 9), methods.get(r["method"], 9))):
        delta = f"{(r['blimp_acc'] - dense) * 100:+.1f}" if dense is not None and r["method"] != "dense" else "-"
        paired = ["-" if rival is None or r is rival else "{:+.1f} ± {:.1f}".format(*paired_difference(r, rival))
                  for rival in (wanda.get(r["pattern"]), sparsegpt.get(r["pattern"]))]
        lines.append(f"| {r['method']} | {r['pattern']} | {r['sparsity']:.4f} | {r['perplexity']:.2f} | "
                     f"{r['blimp_acc'] * 100:.1f} | {r['blimp_stderr'] * 100:.1f} | {delta} | {' | '.join(paired)} |")
    lines += ["", "Paired columns: the mean over the 67 sets of (this row's accuracy − Wanda's, or SparseGPT's, at the "
              "same pattern), in points, ± the standard error of that mean from the spread of the 67 per-set "
              "differences. The sets are the sampled units, so it counts how unevenly a difference falls across "
              "BLiMP's phenomena as well as pair sampling, and is larger than the binomial s.e.; |difference| > 2 s.e. "
              "is a difference that holds across the phenomena at about 95 %."]
    measured = {(r["method"], r["pattern"]) for r in rows}
    evolved = (protocol or {}).get("evolved", [EVOLVED])
    missing = [f"{m} {p}" for m, p in planned_rows([evolved] if isinstance(evolved, str) else evolved)
               if (m, p) not in measured]
    if missing:
        lines += ["", f"Not measured in this run (out of time; `{command} --resume` adds them): {', '.join(missing)}."]
    recipes = sorted({r["method"] for r in rows if r["method"].endswith(".json") and Path(r["method"]).is_file()})
    if recipes:
        lines += ["", "Recipe files (exported search results and hand-made recipes, applied unchanged):", ""]
        lines += [f"- `{path}`: {recipe_text(path)}" for path in recipes]
    lines += ["", f"Per-set accuracies: `{rows_path.name}` (`per_set`). "
              + ("Wall times there were taken on a shared 2-core VM: upper bounds only; accuracies and perplexities "
                 "do not depend on load." if device == "cpu" else "Wall times there (`seconds`) are the GPU's.")]
    report.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
