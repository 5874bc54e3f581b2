"""A model-free layer-fitness evaluator over random but structured layers (for fast search tests)."""

import torch

from evoprune.fitness.evaluator import RecipeEvaluator
from evoprune.fitness.spec import EvalSpec

SYNTHETIC_SPEC = EvalSpec(leaves=("W", "X", "Hinv"))


def synthetic_evaluator(seed: int = 0, layers: int = 3) -> RecipeEvaluator:
    gen = torch.Generator().manual_seed(seed)
    leaves, hessians = {}, {}
    for i in range(layers):
        x = torch.randn(256, 48, generator=gen) * torch.rand(48, generator=gen).pow(3) * 4  # uneven channels
        h = x.t() @ x / 256
        w = torch.randn(24, 48, generator=gen)
        leaves[f"{i}.fc"] = {"W": w, "X": h.diagonal().sqrt().unsqueeze(0),
                             "Hinv": torch.linalg.inv(h + 0.01 * h.diagonal().mean() * torch.eye(48))
                             .diagonal().unsqueeze(0)}
        hessians[f"{i}.fc"] = h
    return RecipeEvaluator.from_layers(SYNTHETIC_SPEC, leaves, hessians)
