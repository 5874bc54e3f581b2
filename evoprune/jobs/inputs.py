"""Everything about a job's inputs that can be checked before a model loads and before an output directory is
touched: data files decode and are long enough, calibration is not a test split, windows fit the model's context,
N:M patterns fit its layers. Each check is cheap (config.json and text files only) and raises EvopruneError."""

from __future__ import annotations

import hashlib
from pathlib import Path

from evoprune.data.text import KNOWN_DATASETS, describe_source, load_text
from evoprune.errors import EvopruneError
from evoprune.model.context import check_context, check_pattern_widths
from evoprune.model.loading import model_path
from evoprune.prune.masks import check_sparsity, parse_pattern


def check_calibration_text(name: str, seqlen: int) -> None:
    """The text decodes (load_text) and can hold seqlen+2 tokens: a byte-level tokenizer makes at most one token a
    byte, so fewer bytes can never be enough (the exact count needs the tokenizer, checked when windows are drawn)."""
    size = len(load_text(name, "calib").encode("utf-8"))
    if size == 0:
        raise EvopruneError(f"calibration text {describe_source(name, 'calib')} is empty")
    if size < seqlen + 2:
        raise EvopruneError(f"calibration text {describe_source(name, 'calib')} is too short: {size} bytes cannot "
                            f"hold seqlen+2={seqlen + 2} tokens")


def _local(name: str, split: str) -> Path | None:
    source = describe_source(name, split)
    path = Path(source)
    return path.resolve() if not source.startswith("hub:") and path.is_file() else None


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def held_out_files(eval_data: str | None = None) -> list[Path]:
    """Held-out files: the local test split of every known dataset that has one apart from its calibration split,
    and the evaluation file a job was given by path."""
    files = [_local(name, "eval") for name in KNOWN_DATASETS if _local(name, "eval") != _local(name, "calib")]
    if eval_data is not None and eval_data not in KNOWN_DATASETS:
        files.append(_local(eval_data, "eval"))
    return [f for f in files if f is not None]


def check_not_test_split(calib: str, eval_data: str | None = None) -> None:
    """Calibrating (or searching) on held-out text makes every reported perplexity optimistic. Compared by resolved
    path and by content, so a symlink or a copy of the test file is refused as well as a file named *test*."""
    path = _local(calib, "calib")
    names = {Path(calib).name} | ({path.name} if path is not None else set())
    if calib not in KNOWN_DATASETS and any("test" in name for name in names):
        raise EvopruneError(f"refusing to calibrate on a test split ({calib})")
    if path is None:
        return
    for held_out in held_out_files(eval_data):
        same = path == held_out or (path.stat().st_size == held_out.stat().st_size
                                    and _digest(path) == _digest(held_out))
        if same:
            raise EvopruneError(f"refusing to calibrate on a test split: {calib} is the held-out file {held_out}")


def check_model_inputs(model: str, patterns: list[str] = (), sparsity: float | None = None,
                       window_lengths: dict[str, int | None] | None = None) -> None:
    """The model exists (cheaply: a local directory with config.json or a hub id), every window length fits its
    context and every N:M pattern its layer widths."""
    model_path(model)
    parsed = [parse_pattern(p) for p in patterns]
    for pattern in parsed:
        check_sparsity(None if pattern.structured and sparsity is None else sparsity, pattern)
    check_context(model, window_lengths or {})
    check_pattern_widths(model, sorted({p.m for p in parsed if p.structured}))


def check_search_inputs(spec) -> None:
    """A search's evaluation section (EvalSpec), all of it, before the run directory is claimed."""
    from evoprune.model.loading import resolve_device, resolve_dtype

    check_not_test_split(spec.calib, spec.eval_data)
    check_calibration_text(spec.calib, spec.seqlen)
    load_text(spec.eval_data, "eval")
    resolve_dtype(spec.dtype, resolve_device(spec.device))
    for sparsity in spec.sparsities:
        check_model_inputs(spec.model, list(spec.patterns), sparsity,
                           {"evaluation.seqlen": spec.seqlen, "evaluation.eval_seqlen": spec.eval_seqlen})


def check_inputs(model: str, sparsity: float | None, patterns: list[str], data: list[tuple[str, str]],
                 **window_lengths: int) -> None:
    """A prune/eval/baselines command's inputs: `data` as (name or path, "calib" | "eval") pairs, window lengths
    by flag name (seqlen=256, eval_seqlen=512). Cheap checks first, so a typo never waits for the model's config."""
    for pattern in patterns:
        parsed = parse_pattern(pattern)
        check_sparsity(None if parsed.structured and sparsity is None else sparsity, parsed)
    eval_data = next((name for name, split in data if split == "eval"), None)
    for name, split in data:
        if split == "calib":
            check_not_test_split(name, eval_data)
            check_calibration_text(name, window_lengths.get("seqlen") or 0)
        else:
            load_text(name, split)
    check_model_inputs(model, patterns, sparsity,
                       {f"--{flag.replace('_', '-')}": value for flag, value in window_lengths.items()})
