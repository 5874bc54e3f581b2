"""The progress reporter long statistics passes use when their caller passes none.

Library code stays silent by default; the command line installs a reporter (`evoprune.cli.progress`) so that a
search, whose evaluator collects statistics and gradients before its dashboard starts, says what it is doing
instead of going quiet for a minute, in a terminal and in a log file alike.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, int, int], None]

_default: Progress | None = None


def set_default_progress(progress: Progress | None) -> None:
    global _default
    _default = progress


def default_progress() -> Progress | None:
    return _default


def announce(message: str) -> None:
    """One message through the default reporter (a zero-step stage), e.g. that statistics came from the cache."""
    if _default is not None:
        _default(message, 0, 0)
