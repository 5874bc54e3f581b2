"""Zero-shot accuracy through lm-evaluation-harness (`lm-eval`): its `HFLM` wraps the in-memory model, so a
pruned model is scored without saving it, and a saved one the same way after loading.

Task names resolve first to evoprune's shipped definitions (`tasks/`: BLiMP read from local files, no hub), then
to lm-eval's own catalogue (whose data must be reachable). Every group's mean is the unweighted mean over its sets,
with the standard error of that mean from the per-set binomial errors: sqrt(sum se_i^2) / k.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

from evoprune.errors import EvopruneError
from evoprune.model.loading import LoadedModel

TASKS_DIR = Path(__file__).parent / "tasks"


def local_task_names() -> set[str]:
    """Task and group names evoprune ships (one YAML per task; `_blimp.yaml` defines the `blimp` group)."""
    names = set()
    for path in TASKS_DIR.rglob("*.yaml"):
        for line in path.read_text().splitlines():
            if line.startswith(("task:", "group:")):
                names.add(line.split(":", 1)[1].strip())
    return names


def parse_tasks(tasks: str | Sequence[str]) -> list[str]:
    """`"blimp,blimp_causative"` or a list (a repeated option) -> unique names, in order."""
    items = [tasks] if isinstance(tasks, str) else list(tasks)
    names = [n.strip() for item in items for n in item.split(",") if n.strip()]
    if not names:
        raise EvopruneError("--tasks needs at least one task name (e.g. blimp)")
    return list(dict.fromkeys(names))


def check_limit(limit: int | None) -> int | None:
    if limit is not None and limit < 1:
        raise EvopruneError(f"--limit must be >= 1 (examples per task), got {limit}")
    return limit


@functools.lru_cache(maxsize=2)
def _manager(include_defaults: bool):
    """Built once per process: a task index does not change while evoprune runs (tasks are built per run)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS_DIR), include_defaults=include_defaults)


def task_manager(names: Sequence[str]):
    """lm-eval's TaskManager over our definitions; its own catalogue is indexed only when a name needs it
    (indexing the thousands of built-in YAMLs costs seconds). Unknown names raise EvopruneError."""
    local = local_task_names()
    manager = _manager(include_defaults=any(n not in local for n in names))
    unknown = [n for n in names if n not in manager.all_tasks]
    if unknown:
        raise EvopruneError(f"unknown lm-eval task {', '.join(map(repr, unknown))} "
                            f"(evoprune ships: blimp and blimp_<set>; others come from lm-eval)")
    return manager


def _metrics(entry: dict) -> dict:
    """lm-eval's `"acc,none": 0.6, "acc_stderr,none": 0.07` -> `{"acc": 0.6, "acc_stderr": 0.07}`."""
    out = {}
    for key, value in entry.items():
        if "," in key and isinstance(value, (int, float)):
            metric, filt = key.split(",", 1)
            out[metric if filt == "none" else f"{metric},{filt}"] = float(value)
    return out


def _leaves(group: str, subtasks: dict[str, list[str]]) -> list[str]:
    leaves = []
    for name in subtasks.get(group, []):
        leaves += _leaves(name, subtasks) if name in subtasks else [name]
    return leaves


def group_mean(per_task: dict[str, dict], members: Sequence[str], metric: str = "acc") -> dict:
    """Unweighted mean of `metric` over `members` and its standard error (independent per-set errors)."""
    values = [per_task[m][metric] for m in members if metric in per_task.get(m, {})]
    errors = [per_task[m].get(f"{metric}_stderr", math.nan) for m in members if metric in per_task.get(m, {})]
    if not values:
        return {}
    k = len(values)
    return {metric: sum(values) / k, f"{metric}_stderr": math.sqrt(sum(e * e for e in errors)) / k, "sets": k,
            "examples": sum(per_task[m].get("examples", 0) for m in members if m in per_task)}


def run_tasks(loaded: LoadedModel, tasks: str | Sequence[str], limit: int | None = None, batch_size: int = 32,
              seed: int = 0) -> dict:
    """Score `loaded.model` on lm-eval tasks; returns per-task metrics, group means, and the settings used."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    names = parse_tasks(tasks)
    manager = task_manager(names)
    check_limit(limit)
    # lm-eval warns once per task that custom datasets take kwargs: 67 lines of noise for BLiMP.
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    lm = HFLM(pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=batch_size)
    start = time.perf_counter()
    raw = simple_evaluate(model=lm, tasks=names, limit=limit, task_manager=manager, log_samples=False,
                         random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
                         fewshot_random_seed=seed)
    seconds = time.perf_counter() - start
    subtasks = {g: list(ts) for g, ts in raw.get("group_subtasks", {}).items() if ts}
    per_task = {}
    for name, entry in raw["results"].items():
        if name in subtasks:
            continue
        metrics = _metrics(entry)
        metrics["examples"] = int(raw.get("n-samples", {}).get(name, {}).get("effective", entry.get("sample_len", 0)))
        per_task[name] = metrics
    groups = {g: {**group_mean(per_task, _leaves(g, subtasks)), "tasks": _leaves(g, subtasks)} for g in subtasks}
    import lm_eval

    return {"tasks": names, "limit": limit, "num_fewshot": 0, "batch_size": batch_size, "seed": seed,
            "lm_eval_version": getattr(lm_eval, "__version__", "unknown"), "results": per_task,
            "groups": groups, "seconds": seconds}
