"""StructuredSpec (what `prune --structure` is asked for, checked against a model config before it loads) and
`shrink_with_scores` (allocate widths from unit scores under the exact budget and shrink a model in place)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from evoprune.errors import EvopruneError
from evoprune.structured.allocate import UnitScores, allocate
from evoprune.structured.budget import (
    Budget,
    check_reachable,
    depth_counts,
    feasible_slopes,
    make_budget,
    max_depth,
    parse_widths,
    profile_counts,
    uniform_counts,
)
from evoprune.structured.calibration import Calibration
from evoprune.structured.scores import AGGREGATES
from evoprune.structured.selection import Selection
from evoprune.structured.shape import DecoderShape, decoder_shape, parse_structures
from evoprune.structured.shrink import shrink_model


@dataclass(frozen=True)
class StructuredSpec:
    structure: str = "mlp,heads"
    ratio: float = 0.2  # of the decoder's parameters
    metric: str = "wanda"
    widths: str = "uniform"
    tolerance: float = 0.005  # allowed overshoot, as a fraction of the decoder's parameters
    # Whole blocks (least influential, ShortGPT's score) removed beside the widths; None: chosen by perplexity on
    # validation windows among 0 .. the most that leaves the widths a share (`choose_depth`).
    depth: int | None = 0
    aggregate: str = "sum"  # how a per-weight metric becomes a unit's score (scores.AGGREGATES)

    def check(self, config) -> tuple[DecoderShape, Budget]:
        """Everything that can fail from the config alone: runs before the model loads."""
        structures = parse_structures(self.structure)
        widths, slope = parse_widths(self.widths)
        if self.aggregate not in AGGREGATES:
            raise EvopruneError(f"unknown --aggregate {self.aggregate!r} (use {', '.join(AGGREGATES)})")
        if self.aggregate != "sum" and self.metric in ("flap", "shortgpt"):
            raise EvopruneError(f"--metric {self.metric} scores units by its own rule: --aggregate applies to "
                                "per-weight metrics (and taylor)")
        if self.metric == "shortgpt" and structures != ("blocks",):
            raise EvopruneError("--metric shortgpt scores whole blocks: use --structure blocks")
        if self.metric == "flap" and "blocks" in structures:
            raise EvopruneError("--metric flap scores heads and channels, not blocks")
        if self.metric == "flap" and "residual" in structures:
            raise EvopruneError("--metric flap scores heads and MLP channels, not residual channels: use a "
                                "per-weight metric (wanda, magnitude, a formula) or taylor")
        shape = decoder_shape(config)
        if widths != "uniform" and config.model_type != "llama":
            raise EvopruneError(f"--widths {widths} writes a LLaMA modeling file; use uniform for "
                                f"{config.model_type!r} models")
        if "residual" in structures and config.model_type != "llama":
            raise EvopruneError("--structure residual writes a LLaMA modeling file (residual channel subsets); "
                                f"{config.model_type!r} models are not supported")
        budget = make_budget(shape, self.ratio, self.tolerance)
        if self.depth != 0 and "residual" in structures:
            raise EvopruneError("--depth with --structure residual is not supported (use --depth 0)")
        if self.depth != 0:
            if self.widths != "uniform":
                raise EvopruneError("--depth goes with --widths uniform")
            if self.metric == "flap":
                raise EvopruneError("--depth with --metric flap is not supported (FLAP allocates its own widths)")
            if "blocks" in structures:
                raise EvopruneError("--depth removes whole blocks beside the width units: leave blocks out of "
                                    "--structure")
            for depth in [self.depth] if self.depth is not None else range(max_depth(shape, budget) + 1):
                if depth:
                    depth_counts(shape, structures, budget, depth)
                else:
                    uniform_counts(shape, structures, budget)
            return shape, budget
        if widths == "profile":
            if slope is None:
                feasible_slopes(shape, structures, budget)
            else:
                profile_counts(shape, structures, budget, slope)
        elif widths == "uniform" or structures == ("blocks",):
            uniform_counts(shape, structures, budget)
        else:
            check_reachable(shape, structures, budget)
        return shape, budget


def select_units(config, spec: StructuredSpec, scores: UnitScores) -> Selection:
    """Which units the spec keeps, from scores computed once; nothing is shrunk (a search hashes the selection
    first and shrinks a copy only for one it has not seen)."""
    shape, budget = spec.check(config)
    if spec.depth is None:
        raise EvopruneError("depth 'auto' must be resolved first (choose_depth)")
    return allocate(shape, parse_structures(spec.structure), scores, budget, spec.widths, spec.depth)


def shrink_with_scores(model: torch.nn.Module, spec: StructuredSpec, scores: UnitScores,
                       calibration: Calibration | None) -> Selection:
    """Allocate and shrink with scores computed once (scores do not depend on the ratio: a benchmark reuses them
    on fresh copies of the dense model)."""
    selection = select_units(model.config, spec, scores)
    shape = decoder_shape(model.config)
    means = None
    if spec.metric == "flap":
        means = {i: {"o_proj": calibration.moments[f"{i}.self_attn.o_proj"].mean(),
                     "down_proj": calibration.moments[f"{i}.mlp.down_proj"].mean()} for i in range(shape.layers)}
    shrink_model(model, shape, selection, means)
    return selection
