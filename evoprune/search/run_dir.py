"""A run directory: resolved config, candidate log (JSONL), atomic checkpoints, best.json."""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
from pathlib import Path

import yaml

from evoprune.errors import EvopruneError

CONFIG, CANDIDATES, CHECKPOINT, BEST = "config.yaml", "candidates.jsonl", "checkpoint.pkl", "best.json"


def claim_run_dir(out: Path, force: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not force:
            raise EvopruneError(f"run directory {out} exists (use --force to overwrite, or `evoprune resume {out}`)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


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
    return yaml.safe_load(path.read_text())


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
        kept = [line for line in path.read_text().splitlines() if json.loads(line)["generation"] <= generation]
        atomic_write(path, ("\n".join(kept) + "\n" if kept else "").encode())


def save_checkpoint(out: Path, state: dict) -> None:
    atomic_write(out / CHECKPOINT, pickle.dumps(state))  # plain data only: strings, numbers, RNG states


def load_checkpoint(out: Path) -> dict | None:
    path = out / CHECKPOINT
    if not path.is_file():
        return None
    with open(path, "rb") as fh:
        return pickle.load(fh)


def write_best(out: Path, payload: dict) -> None:
    atomic_write(out / BEST, (json.dumps(payload, indent=2) + "\n").encode())
