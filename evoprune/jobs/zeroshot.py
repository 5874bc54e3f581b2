"""Zero-shot accuracy as extra columns of `evoprune baselines --tasks`.

`run_baselines` calls `on_row(row)` right after it measured a row's perplexity, while that row's pruned weights
are still in the model (the dense row before any pruning): the hook scores that same model through
lm-evaluation-harness and stores the means in `row["zeroshot"]`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from evoprune.evaluation.harness import run_tasks
from evoprune.model.loading import LoadedModel


def zeroshot_summary(result: dict) -> dict:
    """`{name: {"acc", "acc_stderr", "examples"}}`: each group's mean, and each task outside a group."""
    grouped = {t for mean in result["groups"].values() for t in mean.get("tasks", [])}
    out = {name: {k: mean[k] for k in ("acc", "acc_stderr", "examples")}
           for name, mean in result["groups"].items() if "acc" in mean}
    for name, metrics in result["results"].items():
        if name not in grouped and "acc" in metrics:
            out[name] = {"acc": metrics["acc"], "acc_stderr": metrics.get("acc_stderr"),
                         "examples": metrics.get("examples")}
    return out


def zeroshot_hook(loaded: LoadedModel, tasks: Sequence[str], limit: int | None = None, batch_size: int = 32,
                  then: Callable[[dict], None] | None = None) -> Callable[[dict], None]:
    """An `on_row` for run_baselines that adds `row["zeroshot"]`, then calls `then(row)` (e.g. to print it)."""
    def on_row(row: dict) -> None:
        result = run_tasks(loaded, tasks, limit, batch_size)
        row["zeroshot"] = {"scores": zeroshot_summary(result), "limit": limit, "seconds": result["seconds"],
                           "lm_eval_version": result["lm_eval_version"]}
        if then is not None:
            then(row)
    return on_row


def zeroshot_names(rows: Sequence[dict]) -> list[str]:
    """Column names, in first-seen order, over the rows that carry zero-shot scores."""
    names: dict[str, None] = {}
    for row in rows:
        for name in row.get("zeroshot", {}).get("scores", {}):
            names[name] = None
    return list(names)
