"""How many units to remove: exact parameter arithmetic on the shape alone (no weights, no scores).

A budget is `ratio` of the decoder's parameters, met from above: at least the target is removed and at most
`tolerance` (a fraction of the decoder) more. Everything here runs before the model loads, so a ratio that would
break GQA consistency or that no width can meet fails in a second with one line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from evoprune.errors import EvopruneError
from evoprune.structured.shape import DecoderShape, unit_kinds

WIDTHS = ("uniform", "per-layer", "profile:SLOPE", "profile:auto")
# The slopes `profile:auto` tries on validation windows (those that can meet the budget). ±0.4 was the edge of an
# earlier grid and the choice in 5 of its 6 benchmark rows: the grid should not decide the answer.
PROFILE_GRID = (-0.8, -0.6, -0.4, -0.2, 0.0, 0.2, 0.4, 0.6, 0.8)


def parse_widths(text: str) -> tuple[str, float | None]:
    """`uniform`, `per-layer` -> (name, None); `profile:S` -> ("profile", S) with S in [-1, 1];
    `profile:auto` -> ("profile", None): the slope is chosen on validation windows."""
    name, sep, arg = str(text).partition(":")
    if name in ("uniform", "per-layer") and not sep:
        return name, None
    if name == "profile" and sep:
        if arg == "auto":
            return name, None
        try:
            slope = float(arg)
        except ValueError:
            slope = math.nan
        if -1.0 <= slope <= 1.0:
            return name, slope
        raise EvopruneError(f"--widths {text!r}: the profile's slope must be a number in [-1, 1] or auto")
    raise EvopruneError(f"unknown --widths {text!r} (use {', '.join(WIDTHS)})")


@dataclass(frozen=True)
class Budget:
    target: int  # parameters to remove, at least
    slack: int  # parameters that may be removed beyond the target

    @property
    def limit(self) -> int:
        return self.target + self.slack


def make_budget(shape: DecoderShape, ratio: float, tolerance: float = 0.005) -> Budget:
    if not 0.0 < ratio < 1.0:
        raise EvopruneError(f"--ratio must be in (0, 1), got {ratio}")
    if not 0.0 <= tolerance < 1.0:
        raise EvopruneError(f"--tolerance must be in [0, 1), got {tolerance}")
    return Budget(round(ratio * shape.decoder_params), round(tolerance * shape.decoder_params))


def max_removable(shape: DecoderShape, structures: tuple[str, ...]) -> int:
    """Every unit but one of each kind per layer (and one block): a layer never loses a whole structure."""
    if structures == ("blocks",):
        return (shape.layers - 1) * shape.block_params
    return shape.layers * sum((shape.units(k) - 1) * shape.unit_cost(k) for k in unit_kinds(structures))


def check_reachable(shape: DecoderShape, structures: tuple[str, ...], budget: Budget) -> None:
    most = max_removable(shape, structures)
    if most < budget.target:
        raise EvopruneError(f"--ratio {budget.target / shape.decoder_params:.4f} is out of reach: "
                            f"{'+'.join(structures)} can remove at most {most / shape.decoder_params:.4f} of the "
                            f"decoder's {shape.decoder_params:,} parameters (keeping one unit of each per layer)")


def uniform_counts(shape: DecoderShape, structures: tuple[str, ...], budget: Budget) -> dict[str, int]:
    """Units removed in EVERY layer (for blocks: in the model) so that the budget is met with equal widths.

    Attention goes by whole steps (a `heads` step is one query head per KV group, so groups stay equal); with
    mlp beside it, attention takes its proportional share rounded to a step (LLM-Pruner's equal ratio per
    structure) and MLP channels fill the rest to the exact budget. Residual subsets: see `_residual_counts`.
    """
    check_reachable(shape, structures, budget)
    if structures == ("blocks",):
        counts = {"blocks": math.ceil(budget.target / shape.block_params)}
    else:
        counts = _layer_counts(shape, structures, budget.target / shape.layers)
    removed = removed_params(shape, counts)
    if removed < budget.target or removed > budget.limit:
        _granularity_error(shape, structures, counts, budget)
    _check_hf_config(shape, counts)
    return counts


def depth_counts(shape: DecoderShape, structures: tuple[str, ...], budget: Budget, depth: int) -> dict[str, int]:
    """Units removed in every block that stays, once `depth` whole blocks are gone: depth and width together
    (removing a few blocks costs less than thinning all of them, and thinning costs less than many blocks).
    The blocks take `depth` × a block's parameters; the kept blocks' equal widths meet the rest exactly."""
    if "blocks" in structures:
        raise EvopruneError("--depth removes whole blocks beside the width units: leave blocks out of --structure")
    if "residual" in structures:
        raise EvopruneError("--depth with --structure residual is not supported (use --depth 0)")
    if not 0 <= depth < shape.layers:
        raise EvopruneError(f"--depth must be in [0, {shape.layers - 1}], got {depth}")
    rest = budget.target - depth * shape.block_params
    if rest <= 0:
        raise EvopruneError(f"--depth {depth} alone removes {depth * shape.block_params / shape.decoder_params:.4f} "
                            f"of the decoder, not less than --ratio {budget.target / shape.decoder_params:.4f}: "
                            "use --structure blocks, or a smaller --depth")
    kept = shape.layers - depth
    counts = _layer_counts(shape, structures, rest / kept)
    removed = depth * shape.block_params + kept * sum(n * shape.unit_cost(kind) for kind, n in counts.items())
    if removed < budget.target or removed > budget.limit:
        raise EvopruneError(f"--depth {depth} leaves {rest / shape.decoder_params:.4f} of the decoder for equal "
                            f"widths over {kept} blocks, which {'+'.join(structures)} steps cannot meet within "
                            f"--tolerance {budget.slack / shape.decoder_params:g} (add mlp or raise --tolerance)")
    _check_hf_config(shape, counts)
    return counts


def check_fixed_widths(text: str, label: str) -> None:
    """A config key's widths (structured search, tune): any `--widths` but `profile:auto`, which picks its slope per
    model on validation windows (per candidate it would cost a shrunk model per slope of PROFILE_GRID). One line
    naming `label`."""
    if text == "profile:auto":
        raise EvopruneError(f"{label}: profile:auto chooses its slope on validation windows per model; give a "
                            "fixed slope (profile:0.2) here")
    try:
        parse_widths(text)
    except EvopruneError as exc:
        raise EvopruneError(f"{label}: {exc}") from None


def profile_counts(shape: DecoderShape, structures: tuple[str, ...], budget: Budget,
                   slope: float) -> list[dict[str, int]]:
    """Units removed in each layer when widths follow a depth profile: layer l (relative depth d = l / (L − 1))
    takes target / L · (1 + slope · (2d − 1)) of the budget (slope > 0: deeper blocks lose more, < 0: earlier
    ones), split over its structures as equal widths split theirs. The shares sum to the target; each layer meets
    its own from above, so the total is exact from above within a channel a layer."""
    if "blocks" in structures:
        raise EvopruneError("--widths profile thins every block: leave blocks out of --structure")
    check_reachable(shape, structures, budget)
    last = max(1, shape.layers - 1)
    counts = [_layer_counts(shape, structures, budget.target / shape.layers * (1 + slope * (2 * layer / last - 1)))
              for layer in range(shape.layers)]
    removed = sum(n * shape.unit_cost(kind) for c in counts for kind, n in c.items())
    if removed < budget.target or removed > budget.limit:
        raise EvopruneError(f"--widths profile:{slope:g} cannot meet --ratio {budget.target / shape.decoder_params:.4f}"
                            f" within --tolerance (its steepest layers run out of units): use a gentler slope")
    return counts


def feasible_slopes(shape: DecoderShape, structures: tuple[str, ...], budget: Budget) -> tuple[float, ...]:
    """The slopes of `PROFILE_GRID` whose profile meets the budget (steep ones run out of units at high ratios);
    refuses in one line when none does."""
    feasible, last_error = [], None
    for slope in PROFILE_GRID:
        try:
            profile_counts(shape, structures, budget, slope)
        except EvopruneError as exc:
            last_error = exc
            continue
        feasible.append(slope)
    if not feasible:
        raise EvopruneError(f"--widths profile:auto: no slope from {PROFILE_GRID[0]:g} to {PROFILE_GRID[-1]:g} meets "
                            f"--ratio {budget.target / shape.decoder_params:.4f} ({last_error})")
    return tuple(feasible)


def max_depth(shape: DecoderShape, budget: Budget) -> int:
    """The most whole blocks that still leave some of the budget to the widths."""
    return max(0, min(shape.layers - 1, (budget.target - 1) // shape.block_params))


def _layer_counts(shape: DecoderShape, structures: tuple[str, ...], per_layer: float) -> dict[str, int]:
    if structures == ("residual",):
        return _residual_counts(shape, per_layer)
    counts: dict[str, int] = {}
    left = per_layer
    for kind in (s for s in structures if s in ("heads", "groups")):
        if "mlp" in structures:
            prunable = sum(shape.units(s) * shape.unit_cost(s) for s in structures)
            steps = round(per_layer / prunable * shape.units(kind))
        else:
            steps = math.ceil(per_layer / shape.unit_cost(kind))
        counts[kind] = min(steps, shape.units(kind) - 1)
        left -= counts[kind] * shape.unit_cost(kind)
    if "mlp" in structures:
        counts["mlp"] = min(max(0, math.ceil(left / shape.mlp_channel_cost)), shape.intermediate - 1)
    return counts


def _residual_counts(shape: DecoderShape, per_layer: float) -> dict[str, int]:
    """Residual channels removed from every attention and every MLP sublayer. Split in proportion to parameter
    cost: both kinds give up the same share of their channels (LLM-Pruner's equal ratio per structure), the MLP
    count rounded to a channel; the attention count, the finer step on LLaMA shapes (2·d·(q+kv) parameters a
    channel against 3·intermediate), fills the rest to the exact budget."""
    attn, mlp = shape.resid_attn_cost, shape.resid_mlp_cost
    n_mlp = min(round(per_layer / (attn + mlp)), shape.hidden - 1)
    n_attn = min(max(0, math.ceil((per_layer - n_mlp * mlp) / attn)), shape.hidden - 1)
    return {"resid_attn": n_attn, "resid_mlp": n_mlp}


def removed_params(shape: DecoderShape, counts: dict[str, int]) -> int:
    if "blocks" in counts:
        return counts["blocks"] * shape.block_params
    return shape.layers * sum(n * shape.unit_cost(kind) for kind, n in counts.items())


def _granularity_error(shape: DecoderShape, structures: tuple[str, ...], counts: dict[str, int],
                       budget: Budget) -> None:
    kind = "blocks" if "blocks" in counts else "resid_attn" if "resid_attn" in counts else next(
        (s for s in structures if s in ("heads", "groups")), "mlp")
    step = shape.unit_cost(kind) * (1 if kind == "blocks" else shape.layers)
    total = shape.decoder_params
    lo = (budget.target // step) * step / total
    hi = lo + step / total
    why = " (GQA: every KV group keeps the same number of query heads)" if kind == "heads" else ""
    hint = ("raise --tolerance" if kind == "blocks" else "raise --tolerance, or use --widths per-layer"
            if kind == "resid_attn" else "add mlp, or use --widths per-layer")
    raise EvopruneError(f"--ratio {budget.target / total:.4f} cannot be met with uniform {kind} steps of "
                        f"{step / total:.4f} of the decoder{why}; nearest reachable ratios are {lo:.4f} and "
                        f"{hi:.4f} (or {hint})")


def _check_hf_config(shape: DecoderShape, counts: dict[str, int]) -> None:
    """transformers' LlamaConfig refuses a hidden size that the query-head count does not divide."""
    q = shape.q_heads - counts.get("heads", 0) * shape.kv_heads - counts.get("groups", 0) * shape.n_rep
    if shape.hidden % q:
        raise EvopruneError(f"uniform widths would leave {q} query heads, which do not divide the hidden size "
                            f"{shape.hidden} (a config transformers refuses); use --widths per-layer")
