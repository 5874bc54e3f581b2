"""Run a model block by block: capture what enters the first decoder block, then feed blocks one at a time.

Working block by block keeps memory bounded (one block's activations) and lets a sequential prune feed block
l+1 with the outputs of the already-pruned block l, as Wanda and SparseGPT do.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from evoprune.model.layers import decoder_blocks


class _Stop(Exception):
    """Raised inside the first block's pre-hook: nothing past the embeddings needs to run."""


@dataclass
class BlockInputs:
    hidden: torch.Tensor  # [n, seqlen, d] hidden states entering the current block
    kwargs: dict  # the extra arguments the model passes every block (masks, rotary embeddings), batch 1
    batch_size: int


@torch.no_grad()
def capture_block_inputs(model: torch.nn.Module, windows: torch.Tensor, batch_size: int = 8) -> BlockInputs:
    """Hidden states entering block 0 for every window, plus the keyword arguments blocks receive.

    The kwargs are captured from a batch-1 call; their tensors broadcast over any batch size.
    """
    block = decoder_blocks(model)[0]
    device = next(model.parameters()).device
    hidden, captured = [], {}

    def hook(_module, args, kwargs):
        hidden.append(args[0] if args else kwargs["hidden_states"])
        if not captured:
            captured.update({k: v for k, v in kwargs.items() if k != "hidden_states"})
        raise _Stop

    handle = block.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for start in range(0, len(windows), batch_size):
            chunk = windows[start : start + batch_size].to(device)
            if not captured:  # first call with batch 1 so captured tensors broadcast
                _run_until_stop(model, chunk[:1])
                hidden.pop()
            _run_until_stop(model, chunk)
    finally:
        handle.remove()
    captured.pop("past_key_value", None)
    captured.pop("past_key_values", None)
    captured["use_cache"] = False
    return BlockInputs(torch.cat(hidden), captured, batch_size)


def _run_until_stop(model: torch.nn.Module, ids: torch.Tensor) -> None:
    try:
        model(ids, use_cache=False)
    except _Stop:
        pass


@torch.no_grad()
def run_block(block: torch.nn.Module, inputs: BlockInputs) -> torch.Tensor:
    """Outputs of `block` for every window, batched as the inputs were captured."""
    outs = []
    for start in range(0, len(inputs.hidden), inputs.batch_size):
        out = block(inputs.hidden[start : start + inputs.batch_size], **inputs.kwargs)
        outs.append(out[0] if isinstance(out, tuple) else out)
    return torch.cat(outs)
