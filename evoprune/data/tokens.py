"""Token streams: calibration windows and evaluation windows (the Wanda/SparseGPT protocol)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from evoprune.errors import EvopruneError


@dataclass(frozen=True)
class CalibSpec:
    """Everything calibration windows depend on; recorded in every output."""

    data: str = "wikitext2"
    nsamples: int = 32
    seqlen: int = 256
    seed: int = 0

    def validate(self) -> None:
        if self.nsamples < 1:
            raise EvopruneError(f"--nsamples must be >= 1, got {self.nsamples}")
        if self.seqlen < 2:
            raise EvopruneError(f"--seqlen must be >= 2, got {self.seqlen}")


def tokenize(tokenizer, text: str) -> torch.Tensor:
    """The whole text as one 1-D id tensor, without special tokens (no BOS), as the reference protocol."""
    return torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)


def calibration_windows(ids: torch.Tensor, nsamples: int, seqlen: int, seed: int) -> torch.Tensor:
    """`nsamples` random windows of `seqlen` tokens, [nsamples, seqlen].

    Starts are drawn exactly as the reference: `torch.manual_seed(seed)` then one `torch.randint` call, but
    from a private generator so the caller's global RNG state is untouched.
    """
    if len(ids) <= seqlen + 1:
        raise EvopruneError(f"calibration text has {len(ids)} tokens, fewer than seqlen+2={seqlen + 2}")
    gen = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(ids) - seqlen - 1, (nsamples,), generator=gen)
    return torch.stack([ids[s : s + seqlen] for s in starts.tolist()])


def eval_windows(ids: torch.Tensor, seqlen: int, max_tokens: int | None) -> torch.Tensor:
    """Non-overlapping windows over the first `max_tokens` ids, [n, seqlen] (a short tail is dropped)."""
    if max_tokens is not None:
        ids = ids[:max_tokens]
    n = len(ids) // seqlen
    if n == 0:
        raise EvopruneError(f"evaluation text has {len(ids)} tokens, fewer than one window of {seqlen}")
    return ids[: n * seqlen].view(n, seqlen)
