"""`evoprune eval`: perplexity of a model (embedded, hub id, or a pruned directory) under the standard protocol."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from evoprune.data.perplexity import perplexity
from evoprune.data.protocol import PerplexitySpec, evaluation_windows, protocol_record
from evoprune.model.layers import prunable_layers
from evoprune.model.loading import LoadedModel


def prunable_sparsity(loaded: LoadedModel) -> float:
    """Fraction of exact zeros over the prunable layers (what a pruned directory carries)."""
    zeros = total = 0
    for ref in prunable_layers(loaded.model).values():
        w = ref.weight()
        zeros += int((w == 0).sum())
        total += w.numel()
    return zeros / total


def evaluate_job(loaded: LoadedModel, spec: PerplexitySpec, progress: Callable[[str, int, int], None] | None = None,
                 tasks: Sequence[str] | None = None, limit: int | None = None, task_batch_size: int = 32) -> dict:
    """Perplexity, plus zero-shot accuracy through lm-evaluation-harness under `"zeroshot"` when `tasks`."""
    windows = evaluation_windows(loaded, spec)
    report = (lambda k: progress("perplexity", k, len(windows))) if progress else None
    start = time.perf_counter()
    ppl = perplexity(loaded.model, windows, progress=report)
    result = {"protocol": protocol_record(loaded, None, spec), "perplexity": ppl,
              "sparsity": prunable_sparsity(loaded), "tokens": int(windows.numel()),
              "seconds": time.perf_counter() - start}
    if tasks:
        from evoprune.evaluation.harness import run_tasks  # lm-eval: imported only when asked for

        result["zeroshot"] = run_tasks(loaded, tasks, limit, task_batch_size)
    return result
