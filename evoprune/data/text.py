"""Resolve a dataset name or file path to (calibration or evaluation) text.

A local file always wins: names resolve first to a file in `EVOPRUNE_DATA_DIR` (tests and CI set it to
`../shared/data`), then to the hub dataset through `datasets` (needs a network).
"""

from __future__ import annotations

import os
from pathlib import Path

from evoprune.errors import EvopruneError

# name -> {split: local file name}
_LOCAL_FILES = {
    "wikitext2": {"calib": "wikitext2-valid.txt", "eval": "wikitext2-test.txt"},
    "tinystories": {"calib": "tinystories-valid.txt", "eval": "tinystories-valid.txt"},
    "c4": {"calib": "c4-train.txt", "eval": "c4-validation.txt"},
}
KNOWN_DATASETS = tuple(_LOCAL_FILES)


def data_dir() -> Path | None:
    value = os.environ.get("EVOPRUNE_DATA_DIR")
    return Path(value) if value else None


def _from_hub(name: str, split: str) -> str:
    try:
        import datasets

        if name == "wikitext2":
            ds = datasets.load_dataset("wikitext", "wikitext-2-raw-v1",
                                       split="validation" if split == "calib" else "test")
            return "\n\n".join(ds["text"])
        if name == "c4":
            files = ("en/c4-train.00000-of-01024.json.gz" if split == "calib"
                     else "en/c4-validation.00000-of-00008.json.gz")
            ds = datasets.load_dataset("allenai/c4", data_files=files, split="train")
            return "\n\n".join(ds.select(range(min(len(ds), 20000)))["text"])
        ds = datasets.load_dataset("roneneldan/TinyStories", split="validation")
        return "\n\n".join(ds.select(range(min(len(ds), 20000)))["text"])
    except Exception as exc:  # network or hub failure: say what to do, on one line
        raise EvopruneError(
            f"dataset {name!r} has no local file and the hub is unreachable "
            f"({type(exc).__name__}); set EVOPRUNE_DATA_DIR to a folder with {_LOCAL_FILES[name][split]}"
        ) from exc


def read_utf8(path: Path) -> str:
    """A text file's contents; a binary or wrongly encoded file (`--calib /bin/ls`) is one clear error, not a
    UnicodeDecodeError traceback from deep inside a job."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EvopruneError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EvopruneError(f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
    if "\x00" in text:  # valid UTF-8 but binary (NUL is never in text a tokenizer should see)
        raise EvopruneError(f"{path} is not UTF-8 text (NUL byte at offset {data.index(0)})")
    # universal newlines, as Path.read_text gives: the wikitext2 test file has CRLF line ends, and the perplexity
    # protocol (REFERENCE.md: dense 28.82) tokenizes it with "\n"
    return text.replace("\r\n", "\n").replace("\r", "\n")


def load_text(name_or_path: str, split: str) -> str:
    """Text of `split` ("calib" or "eval") for a dataset name, or the whole file for a path."""
    path = Path(name_or_path).expanduser()
    if name_or_path not in _LOCAL_FILES:
        if path.is_file():
            return read_utf8(path)
        if path.suffix or "/" in name_or_path:
            raise EvopruneError(f"data file not found: {name_or_path}")
        raise EvopruneError(f"unknown dataset {name_or_path!r} (use {', '.join(KNOWN_DATASETS)} or a file)")
    folder = data_dir()
    if folder is not None and (folder / _LOCAL_FILES[name_or_path][split]).is_file():
        return read_utf8(folder / _LOCAL_FILES[name_or_path][split])
    return _from_hub(name_or_path, split)


def describe_source(name_or_path: str, split: str) -> str:
    """Where `load_text` reads from, for reports."""
    folder = data_dir()
    if name_or_path in _LOCAL_FILES:
        local = folder / _LOCAL_FILES[name_or_path][split] if folder else None
        return str(local) if local is not None and local.is_file() else f"hub:{name_or_path}/{split}"
    return str(Path(name_or_path).expanduser())
