"""A run directory: resolved config, candidate log (JSONL), atomic checkpoints, best.json."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import yaml

from evoprune.errors import EvopruneError
from evoprune.paths import claim_output_dir
from evoprune.search.checkpoint_schema import check_checkpoint

CONFIG, CANDIDATES, CHECKPOINT, BEST = "config.yaml", "candidates.jsonl", "checkpoint.json", "best.json"


def claim_run_dir(out: Path, force: bool) -> None:
    """Create `out` for a new run. An existing non-empty directory is refused unless `force` (then emptied)."""
    claim_output_dir(out, force, "run directory", f", or `evoprune resume {out}`")


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)  # a crash leaves the previous complete file, never a torn one


def write_config(out: Path, config: dict) -> None:
    atomic_write(out / CONFIG, yaml.safe_dump(config, sort_keys=False).encode())


def read_config(out: Path) -> dict:
    path = out / CONFIG
    if not path.is_file():
        raise EvopruneError(f"{out} is not a run directory (no {CONFIG})")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise EvopruneError(f"{path} is unreadable: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
    if not isinstance(config, dict):
        raise EvopruneError(f"{path} is malformed: not a mapping")
    return config


def json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def append_candidates(out: Path, rows: list[dict]) -> None:
    with open(out / CANDIDATES, "a") as fh:
        for row in rows:
            fh.write(json.dumps({**row, "fitness": json_number(row["fitness"])}) + "\n")


def truncate_candidates(out: Path, generation: int) -> None:
    """On resume: drop log lines of generations after the checkpoint (written before an interruption)."""
    path = out / CANDIDATES
    if path.is_file():
        kept = [line for line in path.read_text().splitlines() if _generation(line) <= generation]
        atomic_write(path, ("\n".join(kept) + "\n" if kept else "").encode())


def _generation(line: str) -> float:
    """A log line's generation; a line torn by a crash counts as after every checkpoint (dropped)."""
    try:
        return json.loads(line)["generation"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return math.inf


def save_checkpoint(out: Path, state: dict) -> None:
    """Plain JSON (trees as strings, RNG states as lists; inf written as Infinity): loading a run directory never
    runs code, unlike a pickle."""
    atomic_write(out / CHECKPOINT, json.dumps(state).encode())


def load_checkpoint(out: Path) -> dict | None:
    path = out / CHECKPOINT
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise EvopruneError(f"checkpoint {path} is unreadable: {type(exc).__name__}: {str(exc)[:200]}") from None
    return check_checkpoint(state, path)


def write_best(out: Path, payload: dict) -> None:
    """Strict JSON for other tools: non-finite numbers (a failed perplexity) are written as null."""
    atomic_write(out / BEST, (json.dumps(_finite(payload), indent=2, allow_nan=False) + "\n").encode())


def read_best(out: Path) -> dict | None:
    """best.json of a finished run (None before the run writes it); the one reader of the format `write_best`
    writes, for export and reports."""
    best = out / BEST
    if not best.is_file():
        return None
    try:
        payload = json.loads(best.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EvopruneError(f"{best} is unreadable: {exc}") from None
    return payload if isinstance(payload, dict) else None


def _finite(value):
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return json_number(value) if isinstance(value, float) else value
