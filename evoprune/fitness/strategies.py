"""Fitness strategies that need the model: `block` (each block's output error on cached dense inputs) and `model`
(KL to the dense model's next-token distribution). Each is chosen once by the Evaluator; `layer` is the pure
`LayerFitness`. A strategy receives the pruned weights, writes them into the model, scores, and restores."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

import torch

from evoprune.fitness.errors import kl_from_dense, relative_output_error
from evoprune.model.layers import decoder_blocks
from evoprune.stats.blocks import capture_block_inputs, run_block

Pruned = Mapping[str, tuple[torch.Tensor, torch.Tensor]]
Apply = Callable[[Mapping[str, torch.Tensor] | None], None]  # weights into the model (None: restore dense)


class BlockStrategy:
    subset = False  # a block's output needs every row of every layer

    @torch.no_grad()
    def __init__(self, model: torch.nn.Module, windows: torch.Tensor, apply: Apply) -> None:
        self.model, self.apply = model, apply
        inputs = capture_block_inputs(model, windows)
        self.block_io = []
        for block in decoder_blocks(model):
            hidden = inputs.hidden
            inputs.hidden = run_block(block, inputs)
            self.block_io.append((hidden, inputs.hidden))
        self.kwargs, self.batch = inputs.kwargs, inputs.batch_size

    @torch.no_grad()
    def error(self, pruned: Pruned) -> float:
        self.apply({key: new for key, (_, new) in pruned.items()})
        try:
            errors = []
            for block, (hidden, dense_out) in zip(decoder_blocks(self.model), self.block_io, strict=True):
                outs = [block(hidden[i : i + self.batch], **self.kwargs) for i in range(0, len(hidden), self.batch)]
                outs = torch.cat([o[0] if isinstance(o, tuple) else o for o in outs])
                errors.append(relative_output_error(outs, dense_out))
            return float(torch.stack(errors).mean())
        finally:
            self.apply(None)


class ModelStrategy:
    subset = False

    @torch.no_grad()
    def __init__(self, model: torch.nn.Module, windows: torch.Tensor, apply: Apply) -> None:
        self.model, self.apply = model, apply
        self.windows = windows.to(next(model.parameters()).device)
        self.dense_logprobs = torch.log_softmax(model(self.windows).logits.float(), dim=-1)

    @torch.no_grad()
    def error(self, pruned: Pruned) -> float:
        self.apply({key: new for key, (_, new) in pruned.items()})
        try:
            return float(kl_from_dense(self.dense_logprobs, self.model(self.windows).logits))
        finally:
            self.apply(None)


class FitnessStrategy(Protocol):
    """`LayerFitness`, `BlockStrategy` or `ModelStrategy`: chosen once per Evaluator."""

    subset: bool  # whether it scores only the layer fitness's row subset

    def error(self, pruned: Pruned) -> float: ...
