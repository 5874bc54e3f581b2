"""Layer-wise sparsity allocation: how a global budget is split across layers (and, for BESA, rows).

Every allocation ends in `exact_counts`: integer pruned counts per layer whose sum is round(target·N) over the
prunable weights N (so the achieved overall sparsity is the target to within one weight), every layer in
[0, MAX_LAYER_SPARSITY]. The shapes of the allocations:

- `uniform`: every layer at the target.
- `owl` (Yin et al. 2024, "Outlier Weighed Layerwise Sparsity"): a block's outlier ratio D = share of its Wanda
  scores |W|·‖X‖ above M× their mean; ratios min-max scaled to [0, 2λ] and centred, sparsity = target − scaled D
  (more outliers, fewer weights pruned). Paper defaults M = 5, λ = 0.08.
- `depth`: target + slope·(relative depth − ½) + a per-projection offset (`q_proj=-0.05`, ...): plain numbers a
  search can turn.
- `besa`: per-layer and per-row rates learned by block-wise reconstruction (`besa.py`).
- `tree:delta=0.1;<formula>`: a formula over per-layer descriptors, ranked across layers, maps to sparsities in
  [target − δ, target + δ] (`allocation_tree.py`; the search's allocation gene).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from evoprune.errors import EvopruneError
from evoprune.formula.descriptors import DESCRIPTORS
from evoprune.prune.allocation_tree import TREE_DELTA, canonical_tree, tree_fractions
from evoprune.prune.stages import StageSpec, parse_stage

MAX_LAYER_SPARSITY = 0.99
ALLOCATIONS: dict[str, tuple[str, ...] | None] = {
    "uniform": (),
    "owl": ("M", "lambda"),
    "depth": None,  # slope and per-projection offsets, any projection name
    "besa": ("rates", "epochs", "lr", "penalty", "samples", "rows"),
    "tree": ("delta",),  # plus its formula after ';'
}
OWL_M, OWL_LAMBDA = 5.0, 0.08


@dataclass(frozen=True)
class LayerInfo:
    """What an allocation may read of a layer without its statistics."""

    key: str  # "3.self_attn.q_proj"
    block: int
    nblocks: int
    rows: int
    cols: int

    @property
    def kind(self) -> str:
        return self.key.rsplit(".", 1)[-1]

    @property
    def numel(self) -> int:
        return self.rows * self.cols

    @property
    def depth(self) -> float:
        """Relative depth in [0, 1]."""
        return self.block / max(self.nblocks - 1, 1)


def parse_allocation(text: str) -> StageSpec:
    """`name[:key=value,...]`, and for `tree` its formula over the descriptors after a ';' (canonicalised)."""
    head, sep, formula = str(text).partition(";")
    spec = parse_stage(head, "allocation", ALLOCATIONS)
    if spec.name != "tree":
        if sep:
            raise EvopruneError(f"allocation {spec.name} takes no formula (only tree:delta=...;<formula> does)")
        return spec
    if not formula.strip():
        raise EvopruneError("allocation tree needs a formula over the layer descriptors after ';' "
                            f"(e.g. tree:delta=0.1;outlier; descriptors: {', '.join(DESCRIPTORS)})")
    if not 0 <= spec.get("delta", TREE_DELTA) <= 0.5:
        raise EvopruneError(f"allocation tree: delta must be in [0, 0.5], got {spec.get('delta', TREE_DELTA):g}")
    return StageSpec(spec.name, spec.params, canonical_tree(formula))


def layer_infos(shapes: Mapping[str, tuple[int, int]]) -> list[LayerInfo]:
    """Descriptors from `{"block.name": (rows, cols)}` in model order."""
    nblocks = 1 + max(int(key.split(".", 1)[0]) for key in shapes)
    return [LayerInfo(key, int(key.split(".", 1)[0]), nblocks, rows, cols) for key, (rows, cols) in shapes.items()]


def outlier_ratio(scores: list[torch.Tensor], m: float) -> float:
    """Share of the scores (all of a block's layers together) above m× their mean (OWL's layerwise outlier
    distribution)."""
    flat = torch.cat([s.reshape(-1).float() for s in scores])
    return float((flat > m * flat.mean()).float().mean())


def owl_block_ratios(infos: list[LayerInfo], scores_of: Callable[[str], torch.Tensor], m: float) -> dict[int, float]:
    """OWL's outlier ratio of every block, from a function giving a layer's Wanda scores |W|·‖X‖."""
    return {b: outlier_ratio([scores_of(i.key) for i in infos if i.block == b], m)
            for b in sorted({i.block for i in infos})}


def owl_fractions(infos: list[LayerInfo], block_ratios: Mapping[int, float], target: float,
                  lam: float) -> dict[str, float]:
    ratios = torch.tensor([block_ratios[b] for b in sorted(block_ratios)], dtype=torch.float64)
    span = ratios.max() - ratios.min()
    scaled = (ratios - ratios.min()) / span * 2 * lam if span > 0 else torch.zeros_like(ratios)
    scaled = scaled - scaled.mean()
    per_block = {b: target - float(v) for b, v in zip(sorted(block_ratios), scaled, strict=True)}
    return {info.key: per_block[info.block] for info in infos}


def depth_fractions(infos: list[LayerInfo], target: float, spec: StageSpec) -> dict[str, float]:
    slope = spec.get("slope", 0.0)
    offsets = {k: v for k, v in spec.params if k != "slope"}
    unknown = set(offsets) - {info.kind for info in infos}
    if unknown:
        raise EvopruneError(f"allocation depth: no layer of kind {sorted(unknown)[0]!r} "
                            f"(kinds: {', '.join(sorted({i.kind for i in infos}))})")
    return {i.key: target + slope * (i.depth - 0.5) + offsets.get(i.kind, 0.0) for i in infos}


def exact_counts(fractions: Mapping[str, float], infos: list[LayerInfo], target: float) -> dict[str, int]:
    """Integer pruned counts per layer: the fractions shifted by one common constant (found by bisection) so that,
    clipped to [0, MAX_LAYER_SPARSITY], they meet the budget; then rounded by largest remainder to the exact total."""
    if not 0.0 <= target <= MAX_LAYER_SPARSITY:
        raise EvopruneError(f"sparsity {target} is outside [0, {MAX_LAYER_SPARSITY}]")
    sizes = torch.tensor([i.numel for i in infos], dtype=torch.float64)
    base = torch.tensor([fractions[i.key] for i in infos], dtype=torch.float64)
    total = round(target * float(sizes.sum()))

    def pruned(shift: float) -> torch.Tensor:
        return (base + shift).clamp(0.0, MAX_LAYER_SPARSITY) * sizes

    lo, hi = -2.0, 2.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if float(pruned(mid).sum()) < total else (lo, mid)
    ideal = pruned(hi)
    counts = ideal.floor()
    cap = (sizes * MAX_LAYER_SPARSITY).floor()
    counts = torch.minimum(counts, cap)
    remainder = ideal - counts
    missing = int(total - counts.sum())  # >= 0: the floors never exceed a sum that meets the total
    order = torch.sort(-remainder, stable=True).indices  # largest remainder first, model order on ties
    while missing > 0:  # one more weight per layer with room; several rounds only where tiny layers hit their cap
        room = order[counts[order] < cap[order]][:missing]
        if len(room) == 0:
            raise EvopruneError(f"no allocation reaches sparsity {target} with every layer at most "
                                f"{MAX_LAYER_SPARSITY}")
        counts[room] += 1
        missing -= len(room)
    return {i.key: int(c) for i, c in zip(infos, counts.tolist(), strict=True)}


def row_counts(row_fractions: torch.Tensor, count: int, cols: int) -> torch.Tensor:
    """Per-row integer counts [rows] summing to exactly `count`, proportional to the learned row rates (BESA),
    each row within [0, MAX_LAYER_SPARSITY·cols]."""
    rows = row_fractions.numel()
    cap = int(MAX_LAYER_SPARSITY * cols)
    weights = row_fractions.double().clamp(min=0) + 1e-12
    ideal = (weights / weights.sum() * count).clamp(max=cap)
    for _ in range(50):  # redistribute what the cap cut off
        short = count - float(ideal.sum())
        free = ideal < cap
        if short < 0.5 or not free.any():
            break
        ideal[free] += short * weights[free] / weights[free].sum()
        ideal = ideal.clamp(max=cap)
    counts = ideal.floor().long()
    missing = count - int(counts.sum())
    order = torch.sort(-((ideal - counts) * (counts < cap)), stable=True).indices
    counts[order[:missing]] += 1
    if int(counts.sum()) != count or rows * cap < count:
        raise EvopruneError(f"cannot spread {count} pruned weights over {rows} rows of {cols}")
    return counts


def plan_targets(spec: StageSpec, infos: list[LayerInfo], target: float | None, structured: bool,
                 block_ratios: Mapping[int, float] | None = None,
                 row_rates: Mapping[str, torch.Tensor] | None = None,
                 descriptors: Mapping[str, torch.Tensor] | None = None) -> dict[str, int | torch.Tensor | None]:
    """Every layer's target: None under an N:M pattern, else exact pruned counts (per row for BESA).
    `block_ratios` (OWL's outlier ratios per block), `row_rates` (BESA's learned rates) and `descriptors` (the
    tree allocation's per-layer vectors, `allocation_tree.layer_descriptors`) come from a calibration pass the caller
    ran (see `jobs/prune.py`)."""
    if structured:
        return {info.key: None for info in infos}
    if spec.name == "uniform":
        fractions = {info.key: target for info in infos}
    elif spec.name == "depth":
        fractions = depth_fractions(infos, target, spec)
    elif spec.name == "owl":
        fractions = owl_fractions(infos, block_ratios, target, spec.get("lambda", OWL_LAMBDA))
    elif spec.name == "besa":
        fractions = {info.key: float(row_rates[info.key].mean()) for info in infos}
    elif spec.name == "tree":
        fractions = tree_fractions(infos, spec.expr, descriptors, target, spec.get("delta", TREE_DELTA))
    else:
        raise EvopruneError(f"unknown allocation {spec.name!r}")
    counts = exact_counts(fractions, infos, target)
    if spec.name == "besa" and spec.get("rows", 1):
        by_key = {info.key: info for info in infos}
        return {k: row_counts(row_rates[k], c, by_key[k].cols) for k, c in counts.items()}
    return counts
