"""Per-layer input statistics accumulated over calibration tokens: Σx², token count, and optionally XᵀX."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch

from evoprune.model.layers import LinearRef
from evoprune.stats.blocks import BlockInputs, run_block

Acc = TypeVar("Acc")


@dataclass
class InputAccumulator:
    sumsq: torch.Tensor  # [in] Σ_t x_tj²
    tokens: int
    gram: torch.Tensor | None  # [in, in] Σ_t x_t x_tᵀ, kept only when asked

    @classmethod
    def empty(cls, width: int, device: torch.device, with_gram: bool) -> InputAccumulator:
        gram = torch.zeros(width, width, device=device) if with_gram else None
        return cls(torch.zeros(width, device=device), 0, gram)

    def add(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).float()
        self.sumsq += x.pow(2).sum(0)
        self.tokens += x.shape[0]
        if self.gram is not None:
            self.gram.addmm_(x.t(), x)

    def rms(self) -> torch.Tensor:
        """Leaf X: sqrt(Σ x² / T)."""
        return (self.sumsq / max(self.tokens, 1)).sqrt()

    def hessian(self) -> torch.Tensor:
        """H = XᵀX / T (the mean Gram matrix)."""
        assert self.gram is not None, "collected without the Gram matrix"
        return self.gram / max(self.tokens, 1)


@torch.no_grad()
def observe_block(block: torch.nn.Module, layers: list[LinearRef], inputs: BlockInputs,
                  make: Callable[[LinearRef], Acc]) -> tuple[dict[str, Acc], torch.Tensor]:
    """Run `block` once with one accumulator per layer (`make(ref)`, anything with `add(x)`) fed that layer's
    input; returns the accumulators keyed by layer name and the block's outputs."""
    accs, handles = {}, []
    for ref in layers:
        acc = make(ref)
        accs[ref.name] = acc
        handles.append(ref.module.register_forward_hook(lambda _m, args, _o, acc=acc: acc.add(args[0])))
    try:
        outputs = run_block(block, inputs)
    finally:
        for handle in handles:
            handle.remove()
    return accs, outputs


def accumulate_block(
    block: torch.nn.Module, layers: list[LinearRef], inputs: BlockInputs, with_gram: bool
) -> tuple[dict[str, InputAccumulator], torch.Tensor]:
    """Statistics of every layer's input while running `block` once; also returns the block's outputs."""
    device = inputs.hidden.device
    return observe_block(block, layers, inputs,
                         lambda ref: InputAccumulator.empty(ref.weight().shape[1], device, with_gram))


def damped_inverse_diag(hessian: torch.Tensor, percdamp: float = 0.01) -> torch.Tensor:
    """Leaf Hinv: diag((H + λI)⁻¹), λ = percdamp·mean(diag H); dead channels get H_jj = 1 as SparseGPT does."""
    h = hessian.clone()
    diag = torch.diagonal(h)
    diag[diag == 0] = 1.0
    diag += percdamp * diag.mean()
    return torch.diagonal(torch.cholesky_inverse(torch.linalg.cholesky(h))).clone()
