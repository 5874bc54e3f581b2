"""Data loader the BLiMP task YAMLs name (`custom_dataset: !function local_blimp.load_set`).

lm-eval imports this file by path and calls `load_set(**metadata, **dataset_kwargs)`; it returns the set as the
`train` split, the split lm-eval's own BLiMP tasks read from the hub copy (nyu-mll/blimp), so scores match.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any


def blimp_file(set_name: str, data_dir: str | Path | None = None) -> Path:
    from evoprune.data.text import data_dir as default_data_dir
    from evoprune.errors import EvopruneError

    root = Path(data_dir) if data_dir else default_data_dir()
    if root is None:
        raise EvopruneError("BLiMP needs EVOPRUNE_DATA_DIR: a folder with blimp/<set>.jsonl.gz")
    path = root / "blimp" / f"{set_name}.jsonl.gz"
    if not path.is_file():
        raise EvopruneError(f"BLiMP set {set_name!r} not found: {path}")
    return path


def load_set(set_name: str, data_dir: str | None = None, **_metadata: Any):
    """A DatasetDict with one `train` split; extra metadata lm-eval passes (version, model args) is ignored."""
    import datasets

    with gzip.open(blimp_file(set_name, data_dir), "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    # Only the fields the template reads: the original files mix types in some optional columns.
    rows = [{"sentence_good": r["sentence_good"], "sentence_bad": r["sentence_bad"]} for r in rows]
    return datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)})


def no_context(doc: dict) -> str:
    """The context before each sentence: none, as in lm-eval's BLiMP (the whole sentence is scored)."""
    return ""


def choices(doc: dict) -> list[str]:
    """The two candidates; the target is 0, the grammatical one."""
    return [doc["sentence_good"], doc["sentence_bad"]]
