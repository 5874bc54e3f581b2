"""The shape of checkpoint.json, checked on load: a run directory is data from disk (copied, edited, crafted), and
a wrong type deep inside a resume or an export would end in a traceback instead of one error line."""

from __future__ import annotations

from pathlib import Path

from evoprune.errors import EvopruneError


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) or value is None


def _list_of(kind):
    return lambda value: isinstance(value, list) and all(isinstance(v, kind) for v in value)


def _cache(value) -> bool:
    """formula -> result: the fields ranking and selection read (fitness, size, prune_seconds) must be numbers."""
    return isinstance(value, dict) and all(
        isinstance(r, dict) and _is_number(r.get("fitness")) and _is_int(r.get("size", 0))
        and _is_number(r.get("prune_seconds")) for r in value.values())


def _rng(value) -> bool:
    return isinstance(value, dict) and all(isinstance(value.get(k), list) for k in ("python", "numpy", "torch"))


# key -> check of its value; every key is optional here (a resume needs them all and says which one is missing).
_FIELDS = {"generation": lambda v: _is_int(v) and v >= -1, "population": _list_of(str), "cache": _cache,
           "history": _list_of(dict), "rng": _rng, "config": lambda v: isinstance(v, dict),
           "hall_of_fame": _list_of(str)}


def check_checkpoint(state, path: Path) -> dict:
    """`state` if it has the checkpoint's shape, else EvopruneError naming the first bad key."""
    if not isinstance(state, dict):
        raise EvopruneError(f"checkpoint {path} is malformed: not a JSON object")
    for key, ok in _FIELDS.items():
        if key in state and not ok(state[key]):
            raise EvopruneError(f"checkpoint {path} is malformed: bad value for {key!r}")
    return state
