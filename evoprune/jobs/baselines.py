"""`evoprune baselines`: dense and every built-in method, per pattern, in one table (perplexity, sparsity, s)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from evoprune.data.perplexity import perplexity
from evoprune.data.tokens import CalibSpec
from evoprune.data.protocol import PerplexitySpec, evaluation_windows, protocol_record
from evoprune.jobs.prune import PruneSpec, prune_loaded, resolve_method, snapshot
from evoprune.model.loading import LoadedModel
from evoprune.prune.masks import check_sparsity, parse_pattern
from evoprune.prune.metrics import BUILTIN_METRICS

Progress = Callable[[str, int, int], None]


def run_baselines(loaded: LoadedModel, sparsity: float, patterns: Sequence[str], calib: CalibSpec,
                  evaluation: PerplexitySpec, methods: Sequence[str] = BUILTIN_METRICS, mode: str = "sequential",
                  group: str = "row", progress: Progress | None = None,
                  on_row: Callable[[dict], None] | None = None) -> dict:
    """Rows `{"method", "pattern", "sparsity", "perplexity", "seconds", ...}`; dense first. `on_row` streams."""
    for pattern in patterns:  # validate everything before the first slow step
        check_sparsity(None if parse_pattern(pattern).structured else sparsity, parse_pattern(pattern))
    resolved = [resolve_method(m, calib.seqlen) for m in methods]
    windows = evaluation_windows(loaded, evaluation)
    ppl_progress = (lambda k: progress("perplexity", k, len(windows))) if progress else None
    rows = []

    def emit(row: dict) -> None:
        rows.append(row)
        if on_row is not None:
            on_row(row)

    start = time.perf_counter()
    dense = perplexity(loaded.model, windows, progress=ppl_progress)
    emit({"method": "dense", "pattern": "-", "sparsity": 0.0, "target_sparsity": 0.0, "perplexity": dense,
          "seconds": 0.0, "eval_seconds": time.perf_counter() - start})
    original = snapshot(loaded.model)
    for pattern in patterns:
        structured = parse_pattern(pattern).structured
        for method in resolved:
            loaded.model.load_state_dict(original)
            spec = PruneSpec(method.name, None if structured else sparsity, pattern, group, mode)
            start = time.perf_counter()
            reports = prune_loaded(loaded, method, spec, calib, progress=progress)
            seconds = time.perf_counter() - start
            achieved = sum(r.pruned for r in reports) / sum(r.total for r in reports)
            start = time.perf_counter()
            ppl = perplexity(loaded.model, windows, progress=ppl_progress)
            emit({"method": method.name, "pattern": pattern, "sparsity": achieved,
                  "target_sparsity": check_sparsity(spec.sparsity, parse_pattern(pattern)),
                  "perplexity": ppl, "seconds": seconds, "eval_seconds": time.perf_counter() - start,
                  "mode": "sequential" if method.is_sparsegpt else mode, "group": group})
    loaded.model.load_state_dict(original)
    return {"protocol": protocol_record(loaded, calib, evaluation), "rows": rows}
