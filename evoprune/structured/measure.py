"""Exact parameter counts and CPU forward and generation latency, for the dense and shrunk models of one run."""

from __future__ import annotations

import statistics
import time

import torch

from evoprune.model.layers import decoder_blocks


def count_params(model: torch.nn.Module) -> dict[str, int]:
    """Unique parameters (tied embeddings once) of the whole model and of its decoder blocks."""
    total = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    decoder = sum(p.numel() for p in decoder_blocks(model).parameters())
    return {"total": total, "decoder": decoder}


@torch.no_grad()
def forward_latency(model: torch.nn.Module, ids: torch.Tensor, repeats: int = 5) -> float:
    """Median seconds of one forward pass over `ids` (after one warm-up pass)."""
    model(ids, use_cache=False)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(ids, use_cache=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def paired_forward_latency(model: torch.nn.Module, reference: torch.nn.Module, ids: torch.Tensor,
                           repeats: int = 5) -> tuple[float, float]:
    """(median seconds of `model`, of `reference`) over `repeats` forward passes of each, taken alternately after
    a warm-up of both: a shared machine's drift (the dense model took 0.96 s at the start of a benchmark run and
    1.28 s at its end) then moves both medians alike instead of the ratio."""
    model(ids, use_cache=False)
    reference(ids, use_cache=False)
    mine, theirs = [], []
    for _ in range(repeats):
        for net, times in ((model, mine), (reference, theirs)):
            start = time.perf_counter()
            net(ids, use_cache=False)
            times.append(time.perf_counter() - start)
    return statistics.median(mine), statistics.median(theirs)


@torch.no_grad()
def generation_latency(model: torch.nn.Module, prompt: torch.Tensor, new_tokens: int = 16, repeats: int = 3) -> float:
    """Median seconds per generated token: greedy decoding of exactly `new_tokens` with the KV cache (what serving
    does, where the smaller KV heads and narrower MLPs of a shrunk model show), after one warm-up."""
    kwargs = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False,
              "attention_mask": torch.ones_like(prompt), "pad_token_id": 0}
    model.generate(prompt, **kwargs)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.generate(prompt, **kwargs)
        times.append((time.perf_counter() - start) / new_tokens)
    return statistics.median(times)
