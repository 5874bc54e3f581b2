"""Output directories the user asked for: never overwritten without --force (one rule for prune and search)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from evoprune.errors import EvopruneError


def check_output_dir(out: Path, force: bool, what: str = "output directory", hint: str = "") -> None:
    """Refuse, before any work starts, a path that is a file or a non-empty directory (unless `force`)."""
    if out.exists() and not out.is_dir():
        raise EvopruneError(f"{what} {out} exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not force:
        raise EvopruneError(f"{what} {out} exists and is not empty (use --force to overwrite{hint})")


def claim_output_dir(out: Path, force: bool, what: str = "output directory", hint: str = "") -> None:
    """`check_output_dir`, then create `out` empty (an existing one is emptied only under `force`). Deletes before
    the work: jobs use `StagedDir`, which swaps in only on success."""
    check_output_dir(out, force, what, hint)
    if out.exists() and any(out.iterdir()):
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


class StagedDir:
    """An output directory built beside `out` and swapped in only on success, so a failed job never costs what
    `out` held (with --force) and never leaves an empty or half-written `out` behind.

    `check_output_dir` runs first; `path` is a fresh hidden sibling (`.NAME.partial-XXXX`, same filesystem, so the
    swap is two renames). `commit()` moves it onto `out` (an old non-empty `out` is removed only after the new one
    is in place); leaving the `with` block by an exception removes the sibling and leaves `out` untouched. A normal
    exit commits."""

    def __init__(self, out: Path, force: bool, what: str = "output directory", hint: str = "") -> None:
        check_output_dir(out, force, what, hint)
        self.out = Path(out)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.partial-", dir=self.out.parent))
        self.committed = False

    def commit(self) -> Path:
        if self.committed:
            return self.out
        old = None
        if self.out.is_dir() and not self.out.is_symlink() and any(self.out.iterdir()):
            old = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.old-", dir=self.out.parent))
            os.replace(self.out, old)  # onto the empty temp dir: a directory rename may replace an empty one
        elif self.out.is_dir() and not self.out.is_symlink():
            self.out.rmdir()
        elif self.out.is_symlink():  # a link to an (empty or --force) directory: replace the link, keep its target
            self.out.unlink()
        os.replace(self.path, self.out)
        self.committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.out

    def discard(self) -> None:
        if not self.committed:
            shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> StagedDir:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:  # KeyboardInterrupt too: the old contents stay
            self.discard()
