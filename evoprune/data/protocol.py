"""The protocol record written into every output: what a number depends on, so it can be reproduced."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from evoprune.data.text import describe_source, load_text
from evoprune.data.tokens import CalibSpec, calibration_windows, eval_windows, tokenize
from evoprune.model.loading import LoadedModel


@dataclass(frozen=True)
class PerplexitySpec:
    """Perplexity protocol: non-overlapping `seqlen` windows over the first `max_tokens` tokens."""

    data: str = "wikitext2"
    seqlen: int = 512
    max_tokens: int | None = 16384


def calib_windows(loaded: LoadedModel, calib: CalibSpec) -> torch.Tensor:
    calib.validate()
    ids = tokenize(loaded.tokenizer, load_text(calib.data, "calib"))
    return calibration_windows(ids, calib.nsamples, calib.seqlen, calib.seed)


def evaluation_windows(loaded: LoadedModel, spec: PerplexitySpec) -> torch.Tensor:
    ids = tokenize(loaded.tokenizer, load_text(spec.data, "eval"))
    return eval_windows(ids, spec.seqlen, spec.max_tokens)


def protocol_record(loaded: LoadedModel, calib: CalibSpec | None, spec: PerplexitySpec | None) -> dict:
    param = next(loaded.model.parameters())
    record = {"model": loaded.source, "device": str(param.device), "dtype": str(param.dtype).replace("torch.", ""),
              "torch_threads": torch.get_num_threads(),
              "tie_rule": "stable ascending sort: among equal scores the lower index is pruned first"}
    if calib is not None:
        record["calibration"] = {**asdict(calib), "split": "calib", "source": describe_source(calib.data, "calib")}
    if spec is not None:
        record["evaluation"] = {**asdict(spec), "split": "eval", "source": describe_source(spec.data, "eval")}
    return record
