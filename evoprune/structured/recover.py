"""Optional recovery of a shrunk model: a short LoRA fine-tune (peft) on the calibration text's validation split,
merged back into the weights, so the saved model is still a plain checkpoint (no peft needed to load it).

LLM-Pruner recovers its pruned models the same way (LoRA on every linear layer, next-token loss). Off by default:
`prune --structure ... --recover-steps N`; the report keeps the recovery apart (its losses, seconds and the
validation perplexity before and after), because a recovered model is no longer the pruning metric's alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from evoprune.errors import EvopruneError

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class RecoverySpec:
    steps: int = 0  # optimiser steps; 0: no recovery
    rank: int = 8
    alpha: float = 16.0
    lr: float = 2e-4
    batch: int = 4  # windows a step
    samples: int = 128  # windows of the calibration text's validation split to draw batches from
    seqlen: int = 256
    validation: int = 16  # other windows of that split, none of whose tokens is trained on: perplexity before/after
    seed: int = 0

    def check(self) -> None:
        if self.steps < 0:
            raise EvopruneError(f"--recover-steps must be >= 0, got {self.steps}")
        if self.steps and (min(self.rank, self.batch, self.samples, self.validation) < 1 or self.seqlen < 2
                           or not self.lr > 0):
            raise EvopruneError("--recover-rank, --recover-samples, the batch and the validation windows must be "
                                ">= 1 and --recover-lr > 0")


def recovery_windows(tokenizer, data: str, spec: RecoverySpec) -> tuple[torch.Tensor, torch.Tensor]:
    """(training windows, validation windows): disjoint chunks of the calibration text's validation split (never
    the test split), drawn by a seeded permutation."""
    from evoprune.data.text import load_text
    from evoprune.data.tokens import tokenize
    from evoprune.structured.pool import split_validation

    return split_validation(tokenize(tokenizer, load_text(data, "calib")), spec.seqlen, spec.samples,
                            spec.validation, spec.seed)


def lora_recover(model: torch.nn.Module, windows: torch.Tensor, spec: RecoverySpec) -> tuple[torch.nn.Module, dict]:
    """Fine-tune LoRA adapters on `windows` ([n, seqlen] token ids) for `spec.steps` steps, merge them into the
    weights and return (the model with merged weights, a record of the run). The returned model is `model`'s own
    modules (peft's merge_and_unload), with its tensor shapes unchanged."""
    from peft import LoraConfig, get_peft_model

    spec.check()
    torch.manual_seed(spec.seed)
    names = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    targets = sorted(names & set(LORA_TARGETS))
    if not targets:
        raise EvopruneError("recovery found none of the LLaMA projections to adapt")
    config = LoraConfig(r=spec.rank, lora_alpha=spec.alpha, lora_dropout=0.0, target_modules=targets, bias="none")
    peft_model = get_peft_model(model, config)
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=spec.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(spec.seed)
    windows = windows.to(next(model.parameters()).device)
    losses = []
    start = time.perf_counter()
    peft_model.train()
    for _ in range(spec.steps):
        ids = windows[torch.randint(len(windows), (spec.batch,), generator=gen)]
        loss = peft_model(input_ids=ids, labels=ids, use_cache=False).loss
        if not torch.isfinite(loss):
            raise EvopruneError(f"recovery diverged (loss {loss.item()}): try a smaller --recover-lr")
        loss.backward()
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)
        losses.append(loss.item())
    peft_model.eval()
    merged = peft_model.merge_and_unload()
    for p in merged.parameters():
        p.requires_grad_(False)
    head = max(1, min(10, len(losses) // 5))
    record = {"method": "LoRA (peft), merged", "steps": spec.steps, "rank": spec.rank, "alpha": spec.alpha,
              "lr": spec.lr, "batch": spec.batch, "windows": list(windows.shape), "targets": targets,
              "trainable_params": sum(p.numel() for p in trainable), "seconds": time.perf_counter() - start,
              "loss_first": sum(losses[:head]) / head, "loss_last": sum(losses[-head:]) / head}
    return merged, record
