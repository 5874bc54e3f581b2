"""Output directories the user asked for: never overwritten without --force (one rule for prune and search)."""

from __future__ import annotations

import shutil
from pathlib import Path

from evoprune.errors import EvopruneError


def check_output_dir(out: Path, force: bool, what: str = "output directory", hint: str = "") -> None:
    """Refuse, before any work starts, a path that is a file or a non-empty directory (unless `force`)."""
    if out.exists() and not out.is_dir():
        raise EvopruneError(f"{what} {out} exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not force:
        raise EvopruneError(f"{what} {out} exists and is not empty (use --force to overwrite{hint})")


def claim_output_dir(out: Path, force: bool, what: str = "output directory", hint: str = "") -> None:
    """`check_output_dir`, then create `out` empty (an existing one is emptied only under `force`)."""
    check_output_dir(out, force, what, hint)
    if out.exists() and any(out.iterdir()):
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
