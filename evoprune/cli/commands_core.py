"""`evoprune prune | eval | baselines`: thin wrappers over `evoprune.jobs`. Inputs are validated before the
model loads, so a typo fails in a second with one line, not after a minute."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from evoprune.cli import options as opt
from evoprune.cli.progress import stage_progress
from evoprune.data.protocol import PerplexitySpec
from evoprune.errors import EvopruneError
from evoprune.prune.masks import check_sparsity, parse_pattern

console = Console()


def _check_inputs(model: str, sparsity: float | None, patterns: list[str], data: list[tuple[str, str]],
                  **window_lengths: int) -> None:
    """Everything checkable before the model loads and --out is touched (evoprune.jobs.inputs)."""
    from evoprune.jobs.inputs import check_inputs

    check_inputs(model, sparsity, patterns, data, **window_lengths)


def _write_json(path: Path | None, payload: dict | list) -> None:
    if path is not None:
        path.write_text(json.dumps(payload, indent=2) + "\n")


def _eval_spec(data: str, seqlen: int, max_tokens: int) -> PerplexitySpec:
    if seqlen < 2:
        raise EvopruneError(f"--eval-seqlen must be >= 2, got {seqlen}")
    if max_tokens < 0:
        raise EvopruneError(f"--max-eval-tokens must be >= 0, got {max_tokens}")
    return PerplexitySpec(data, seqlen, max_tokens or None)


def prune(
    metric: str = typer.Option("wanda", "--metric", help="A built-in (magnitude, wanda, ria, gblm, pruner-zero, "
                               "sparsegpt), a formula such as \"abs(W)*sqrt(X)\", or an exported metric .json "
                               "(parsed, never executed) or .py file (imported: it runs as code)."),
    sparsity: float = typer.Option(None, "--sparsity", help="Target sparsity in [0,1) (implied by N:M)."),
    pattern: str = typer.Option("unstructured", "--pattern", help="unstructured or N:M (e.g. 2:4)."),
    group: str = typer.Option("row", "--group", help="unstructured comparison group: row (Wanda) or layer."),
    mode: str = typer.Option("sequential", "--mode", help="sequential (Wanda/SparseGPT) or dense statistics."),
    allocation: str = opt.Allocation, refine: str = opt.Refine, update: str = opt.Update,
    out: Path = typer.Option(..., "--out", help="Output directory (a Hugging Face model directory)."),
    force: bool = typer.Option(False, "--force", help="Overwrite a non-empty --out."),
    save_format: str = typer.Option("safetensors", "--save-format", help="safetensors (dense with exact zeros) or "
                                    "compressed-tensors (non-zeros + bitmask; unstructured and N:M)."),
    measure_ppl: bool = typer.Option(False, "--perplexity", help="Also measure wikitext2 test perplexity (16,384 "
                                     "tokens) into report.json and the model card."),
    structure: str = typer.Option(None, "--structure", help="Structured pruning that shrinks the tensors: "
                                  "mlp, heads, groups, blocks (comma-separated), or residual alone (DISP-style "
                                  "residual channel subsets per sublayer); --metric is summed per unit, or "
                                  "taylor, flap, shortgpt."),
    ratio: float = typer.Option(0.2, "--ratio", help="With --structure: fraction of decoder parameters removed."),
    widths: str = typer.Option("uniform", "--widths", help="With --structure: uniform, per-layer (a global "
                               "ranking), profile:S (layer l takes (1 + S·(2·depth − 1)) of an equal share: S > 0 "
                               "thins deeper blocks more) or profile:auto (S chosen on validation windows)."),
    tolerance: float = typer.Option(0.005, "--tolerance", help="With --structure: allowed overshoot (fraction)."),
    aggregate: str = typer.Option("sum", "--aggregate", help="With --structure: how a per-weight metric becomes a "
                                  "unit's score: sum, mean (over the unit's weights), l2 (root of summed "
                                  "squares) or max (LLM-Pruner's group reductions)."),
    recover_steps: int = typer.Option(0, "--recover-steps", help="With --structure: fine-tune LoRA adapters (peft) "
                                      "for this many steps on the calibration text's validation split and merge "
                                      "them (0: no recovery; reported apart in report.json)."),
    recover_lr: float = typer.Option(2e-4, "--recover-lr", help="With --recover-steps: AdamW learning rate."),
    recover_rank: int = typer.Option(8, "--recover-rank", help="With --recover-steps: LoRA rank."),
    depth: str = typer.Option("0", "--depth", help="With --structure (width units, uniform): also remove this many "
                              "whole blocks (least influential first), or auto: the depth with the lowest "
                              "perplexity on validation windows."),
    model: str = opt.Model, device: str = opt.Device, dtype: str = opt.Dtype, calib: str = opt.Calib,
    nsamples: int = opt.NSamples, seqlen: int = opt.SeqLen, seed: int = opt.Seed,
) -> None:
    """Prune a model and save it (safetensors) with report.json."""
    if structure is None and aggregate != "sum":
        raise EvopruneError("--aggregate reduces a metric over structured units: it needs --structure")
    if structure is None and recover_steps:
        raise EvopruneError("--recover-steps fine-tunes a shrunk model: it needs --structure")
    if structure is not None and save_format != "safetensors":
        raise EvopruneError("--save-format compressed-tensors stores sparse weights; --structure makes them smaller "
                            "instead (save it as safetensors)")
    if structure is not None:  # physical shrink: its own job (evoprune.jobs.structured)
        from evoprune.cli.commands_structured import prune_structured

        return prune_structured(structure, ratio, widths, tolerance, metric, out, force, model, device, dtype,
                                calib, nsamples, seqlen, seed, depth, aggregate,
                                (recover_steps, recover_lr, recover_rank))
    from evoprune.jobs.prune import PruneSpec, prune_job, resolve_recipe, with_file_stages
    from evoprune.paths import check_output_dir

    if sparsity is None and not parse_pattern(pattern).structured:
        sparsity = 0.5
    spec = PruneSpec(metric, sparsity, pattern, group, mode, allocation, refine, update)
    spec.validate()
    method, file_recipe = resolve_recipe(metric, seqlen)  # resolved once, here, and handed to the job
    spec = with_file_stages(spec, file_recipe)  # a recipe file (exported search, recipe JSON) brings its stages
    spec.validate(method)
    from evoprune.jobs.ship import check_save_format, finish_output

    check_save_format(save_format)
    _check_inputs(model, sparsity, [pattern], [(calib, "calib")], seqlen=seqlen)
    calib_spec = opt.calib_spec(calib, nsamples, seqlen, seed)
    check_output_dir(out, force)  # before the model loads; prune_job claims it
    loaded = opt.load(model, device, dtype)
    with stage_progress() as progress:
        report = prune_job(loaded, method, spec, calib_spec, out, force, progress)
    console.print(f"pruned {spec.recipe} {pattern}: sparsity {report['sparsity']['overall']:.4f} "
                  f"in {report['seconds']['prune']:.1f}s -> {out}")
    with stage_progress() as progress:  # compressed layout, perplexity and model card (README.md)
        added = finish_output(loaded, out, pattern, save_format, PerplexitySpec() if measure_ppl else None,
                              progress)
    if "evaluation" in added:
        console.print(f"perplexity {added['evaluation']['perplexity']:.3f} (wikitext2 test, in report.json)")
    console.print(f"saved as {save_format}; model card {out / 'README.md'}")


def evaluate(
    model: str = opt.Model,
    data: str = typer.Option("wikitext2", "--data", help="Evaluation data (test split): name or text file."),
    seqlen: int = opt.EvalSeqLen, max_tokens: int = opt.MaxEvalTokens,
    json_path: Path = typer.Option(None, "--json", help="Also write the result as JSON."),
    device: str = opt.Device, dtype: str = opt.Dtype,
    tasks: list[str] = opt.Tasks, limit: int = opt.Limit, task_batch_size: int = opt.TaskBatch,
) -> None:
    """Perplexity over non-overlapping windows of the evaluation split; zero-shot accuracy with --tasks."""
    from evoprune.jobs.evaluate import evaluate_job

    spec = _eval_spec(data, seqlen, max_tokens)
    _check_inputs(model, None, [], [(data, "eval")], eval_seqlen=seqlen)
    if tasks:
        from evoprune.evaluation.harness import check_limit, parse_tasks, task_manager

        tasks = parse_tasks(tasks)
        check_limit(limit)
        task_manager(tasks)  # unknown names fail here, before the model loads
    loaded = opt.load(model, device, dtype)
    with stage_progress() as progress:
        result = evaluate_job(loaded, spec, progress, tasks, limit, task_batch_size)
    _write_json(json_path, result)
    console.print(f"perplexity {result['perplexity']:.3f} on {result['tokens']} tokens "
                  f"(prunable sparsity {result['sparsity']:.4f}, {result['seconds']:.1f}s)")
    if "zeroshot" in result:
        from evoprune.evaluation.summary import summary_lines

        for line in summary_lines(result["zeroshot"]):
            console.print(line)


def baselines(
    sparsity: float = typer.Option(0.5, "--sparsity", help="Unstructured target sparsity."),
    patterns: list[str] = typer.Option(None, "--pattern", help="Repeat: unstructured, 2:4, 4:8, ..."),
    methods: list[str] = typer.Option(None, "--method", help="Repeat to restrict (default: all built-ins)."),
    mode: str = typer.Option("sequential", "--mode", help="sequential or dense statistics."),
    group: str = typer.Option("row", "--group", help="unstructured comparison group: row or layer."),
    allocation: str = opt.Allocation, refine: str = opt.Refine, update: str = opt.Update,
    json_path: Path = typer.Option(None, "--json", help="Also write rows + protocol as JSON."),
    model: str = opt.Model, device: str = opt.Device, dtype: str = opt.Dtype, calib: str = opt.Calib,
    nsamples: int = opt.NSamples, seqlen: int = opt.SeqLen, seed: int = opt.Seed,
    eval_data: str = opt.EvalData, eval_seqlen: int = opt.EvalSeqLen, max_tokens: int = opt.MaxEvalTokens,
    tasks: list[str] = opt.Tasks, limit: int = opt.Limit, task_batch_size: int = opt.TaskBatch,
) -> None:
    """Dense and every built-in metric: perplexity, achieved sparsity, seconds; zero-shot columns with --tasks."""
    from evoprune.jobs.baselines import baseline_recipes, run_baselines
    from evoprune.jobs.prune import PruneSpec, resolve_method
    from evoprune.prune.metrics import BUILTIN_METRICS

    patterns = patterns or ["unstructured", "2:4"]
    methods = methods or list(BUILTIN_METRICS)
    PruneSpec("wanda", sparsity, "unstructured", group, mode, allocation, refine, update).validate()
    for name in methods:
        resolve_method(name, seqlen)
    recipes = baseline_recipes(methods, allocation, refine, update)
    _check_inputs(model, sparsity, patterns, [(calib, "calib"), (eval_data, "eval")], seqlen=seqlen,
                  eval_seqlen=eval_seqlen)
    check_sparsity(sparsity, parse_pattern("unstructured"))
    calib_spec = opt.calib_spec(calib, nsamples, seqlen, seed)
    eval_spec = _eval_spec(eval_data, eval_seqlen, max_tokens)
    if tasks:
        from evoprune.evaluation.harness import check_limit, parse_tasks, task_manager

        tasks = parse_tasks(tasks)
        check_limit(limit)
        task_manager(tasks)  # unknown names fail here, before the model loads
    loaded = opt.load(model, device, dtype)
    with stage_progress() as progress:
        result = run_baselines(loaded, sparsity, patterns, calib_spec, eval_spec, recipes, mode, group, progress,
                               on_row=_row_printer(loaded, tasks, limit, task_batch_size))
    _write_json(json_path, result)
    console.print(baselines_table(result["rows"]))


def _row_printer(loaded, tasks: list[str] | None, limit: int | None, batch_size: int):
    """`on_row`: print each row as it lands; with --tasks, score its zero-shot tasks first (evoprune.jobs.zeroshot)."""
    def show(r: dict) -> None:
        scores = r.get("zeroshot", {}).get("scores", {})
        extra = "".join(f"  {name} {s['acc']:.4f}" for name, s in scores.items())
        console.print(f"  {r['method']:<24} {r['pattern']:<13} ppl {r['perplexity']:9.2f}{extra}")
    if not tasks:
        return show
    from evoprune.jobs.zeroshot import zeroshot_hook

    return zeroshot_hook(loaded, tasks, limit, batch_size, then=show)


def _acc_text(score: dict | None) -> str:
    if score is None:
        return "-"
    stderr = score.get("acc_stderr")
    return f"{score['acc']:.4f}" + (f" ± {stderr:.4f}" if stderr is not None else "")


def baselines_table(rows: list[dict]) -> Table:
    from evoprune.jobs.zeroshot import zeroshot_names

    table = Table(title="evoprune baselines")
    names = zeroshot_names(rows)
    for column in ("method", "pattern", "sparsity", "perplexity", *(f"{n} acc" for n in names), "prune s", "eval s"):
        table.add_column(column, justify="left" if column in ("method", "pattern") else "right")
    for r in rows:
        scores = r.get("zeroshot", {}).get("scores", {})
        accs = [_acc_text(scores.get(n)) for n in names]
        table.add_row(r["method"], r["pattern"], f"{r['sparsity']:.4f}", f"{r['perplexity']:.2f}", *accs,
                      f"{r['seconds']:.1f}", f"{r['eval_seconds']:.1f}")
    return table


def register(app: typer.Typer) -> None:
    app.command("prune")(prune)
    app.command("eval")(evaluate)
    app.command("baselines")(baselines)
