"""Where an exported formula comes from: the run, model, data, sparsity, pattern, fitness and (if the search measured
it) perplexity, as plain JSON values (for --format json) and as aligned text lines (docstrings, LaTeX comments)."""

from __future__ import annotations

import inspect
import math

from evoprune import __version__
from evoprune.errors import EvopruneError
from evoprune.export.run_view import RunView
from evoprune.prune.masks import parse_pattern

FITNESS_MEANING = {"layer": "layer reconstruction error Σ‖(W−W⊙M)X‖²/‖WX‖²",
                   "fisher": "loss-weighted layer error Σ F·‖(W−Ŵ)X‖² / Σ F·‖WX‖² (F: output Fisher diagonal)",
                   "block": "relative block output error", "model": "KL divergence to the dense model"}


def select_row(run: RunView, rank: int) -> dict:
    """The rank-th best formula (1 = best) of the run."""
    rows = run.best_rows
    if not rows:
        raise EvopruneError(f"run {run.path} has no formula with a finite fitness yet ({run.status})")
    if not 1 <= rank <= len(rows):
        raise EvopruneError(f"--rank must be in [1, {len(rows)}] for run {run.path}, got {rank}")
    return rows[rank - 1]


def _settings(evaluation: dict) -> list[dict]:
    """The (sparsity, pattern) pairs the fitness averaged over, as the evaluator forms them from the config."""
    out = []
    for text in evaluation.get("patterns", ["unstructured"]):
        try:
            pattern = parse_pattern(str(text))
        except EvopruneError:
            continue
        sparsities = [1 - pattern.n / pattern.m] if pattern.structured else evaluation.get("sparsities", [0.5])
        out.extend({"sparsity": float(s), "pattern": str(pattern)} for s in sparsities)
    return out


def _perplexity_setting() -> dict | None:
    """Where the search measures perplexity: the defaults of `Evaluator.perplexity` (what `finish_run` calls), read
    from its signature so this record cannot drift from the code."""
    try:
        from evoprune.fitness.evaluator import Evaluator

        params = inspect.signature(Evaluator.perplexity).parameters
        return {"sparsity": params["sparsity"].default, "pattern": params["pattern"].default, "statistics": "dense"}
    except (ImportError, KeyError, ValueError, TypeError):
        return None


def _rescored_setting(protocol: dict) -> dict:
    """Where the final table measured the perplexity: the run's record of it (a recipe search re-scores at its
    first setting, sequentially when asked); runs that predate the record used `Evaluator.perplexity`'s defaults."""
    setting = protocol.get("rescore_setting")
    if not setting:
        return _perplexity_setting() or {}
    mode = protocol.get("rescore_mode", "dense")
    return {"sparsity": setting.get("sparsity"), "pattern": setting.get("pattern"),
            "statistics": "sequential" if mode == "sequential" else "dense"}


def json_safe(value):
    """JSON-like values only, non-finite floats as None: strict JSON, and a dict literal Python re-reads."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)


def _finite(value):
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def provenance(run: RunView, rank: int, row: dict) -> dict:
    evaluation = run.config.get("evaluation", {}) or {}
    protocol = run.protocol
    calibration = protocol.get("calibration") or {"data": evaluation.get("calib"), "split": "calib",
                                                  **{k: evaluation.get(k) for k in ("nsamples", "seqlen", "seed")}}
    perplexity = _finite(row.get("perplexity"))
    record = {
        "run": str(run.path), "run_status": run.status, "generations_done": run.generations_done,
        "generations_total": run.generations_total, "rank": rank, "ranked": len(run.best_rows),
        "fitness": _finite(row.get("fitness")), "fitness_type": protocol.get("fitness", evaluation.get("fitness")),
        "size": row.get("size"), "model": protocol.get("model", evaluation.get("model")),
        "calibration": calibration, "settings": protocol.get("settings") or _settings(evaluation),
        "group": protocol.get("group", evaluation.get("group", "row")),
        "perplexity": perplexity, "perplexity_protocol": None,
        "baselines": {b["method"]: _finite(b.get("perplexity")) for b in run.baselines},
        "exported_by": f"evoprune {__version__}",
    }
    if perplexity is not None:
        record["perplexity_protocol"] = {"data": evaluation.get("eval_data"), "split": "eval",
                                         "seqlen": evaluation.get("eval_seqlen"),
                                         "max_tokens": evaluation.get("eval_max_tokens"),
                                         **_rescored_setting(protocol)}
    return json_safe(record)


def _number(value) -> str:
    if value is None:
        return "-"
    return f"{value:.6g}" if abs(value) < 1e6 else f"{value:.4g}"


def describe(record: dict) -> list[str]:
    """Aligned `key: value` lines, the same in every export format."""
    calib = record.get("calibration") or {}
    settings = ", ".join(f"sparsity {s['sparsity']:g} {s['pattern']}" for s in record.get("settings") or [])
    lines = [
        ("run", f"{record['run']} ({record['run_status']}, {record['generations_done']}/"
                f"{record['generations_total'] or '?'} generations), rank {record['rank']} of {record['ranked']}"),
        ("model", str(record.get("model"))),
        ("calibration", f"{calib.get('data')} ({calib.get('split', 'calib')} split), {calib.get('nsamples')} windows "
                        f"x {calib.get('seqlen')} tokens, seed {calib.get('seed')}"),
        ("pruned at", f"{settings or '-'} ({record.get('group')} groups), dense calibration statistics"),
        ("fitness", f"{_number(record.get('fitness'))} ("
                    f"{FITNESS_MEANING.get(record.get('fitness_type'), record.get('fitness_type'))}; lower is better)"),
        ("size", f"{record.get('size')} nodes"),
    ]
    ppl, proto = record.get("perplexity"), record.get("perplexity_protocol") or {}
    if ppl is None:
        lines.append(("perplexity", "not measured"))
    else:
        at = f" at sparsity {proto['sparsity']:g} {proto['pattern']}" if proto.get("sparsity") is not None else ""
        stats = ("sequential protocol (block by block)" if proto.get("statistics") == "sequential"
                 else "dense statistics")
        lines.append(("perplexity", f"{_number(ppl)} on {proto.get('data')} (eval split, {proto.get('seqlen')}-token "
                                    f"windows, first {proto.get('max_tokens')} tokens){at}, {stats}"))
    if record.get("baselines"):
        lines.append(("baselines", ", ".join(f"{name} {_number(v)}" for name, v in record["baselines"].items())
                      + " (perplexity, same protocol)"))
    lines.append(("exported by", record.get("exported_by", "")))
    width = max(len(key) for key, _ in lines) + 1
    return [f"{key + ':':<{width}} {one_line(value)}" for key, value in lines]


def one_line(text: str) -> str:
    """`text` with every unprintable character (newlines, carriage returns, line/paragraph separators, controls,
    lone surrogates) written as its Python escape: a provenance value comes from a run directory, which anyone can
    craft, and a newline in it would end a LaTeX `%` comment or a docstring line (`\\input{...}` would run)."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                   for c in str(text))
