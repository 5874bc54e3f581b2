"""Type checks for config values read from YAML or `KEY=VALUE` overrides: one line naming the key when a value
has the wrong type (YAML says `population: ten`, or an override says `seed=1.5`)."""

from __future__ import annotations

from evoprune.errors import EvopruneError

_SCALARS = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}


def _scalar(label: str, value, kind: str):
    if isinstance(value, bool) and kind != "bool":  # YAML `yes` is a bool, and bool is an int in Python
        raise EvopruneError(f"{label} must be {kind}, got {value!r}")
    if not isinstance(value, _SCALARS[kind]):
        raise EvopruneError(f"{label} must be {kind}, got {value!r}")
    return float(value) if kind == "float" else value


def check_value(label: str, value, annotation: str):
    """Check (and normalise: lists -> tuples, ints -> floats) one value against a dataclass field annotation
    written as a string (`from __future__ import annotations`): int, float, str, bool, `X | None`, tuple[X, ...]."""
    annotation = annotation.replace(" ", "")
    if annotation.endswith("|None"):
        return None if value is None else check_value(label, value, annotation[: -len("|None")])
    if annotation in _SCALARS:
        return _scalar(label, value, annotation)
    if annotation.startswith("tuple[") and annotation.endswith(",...]"):
        kind = annotation[len("tuple["): -len(",...]")]
        if not isinstance(value, (list, tuple)):
            raise EvopruneError(f"{label} must be a list of {kind}, got {value!r}")
        return tuple(_scalar(f"{label} item", v, kind) for v in value)
    return value  # nested sections are checked by their own dataclass
