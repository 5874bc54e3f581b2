"""`evoprune prune`: prune a model with one method and save it as a Hugging Face directory + report.json."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from evoprune.data.protocol import calib_windows, protocol_record
from evoprune.data.tokens import CalibSpec
from evoprune.errors import EvopruneError
from evoprune.model.layers import prunable_layers
from evoprune.model.loading import LoadedModel
from evoprune.paths import StagedDir
from evoprune.prune.allocation import (
    MAX_LAYER_SPARSITY,
    OWL_M,
    LayerInfo,
    layer_infos,
    owl_block_ratios,
    plan_targets,
)
from evoprune.prune.allocation_tree import layer_descriptors
from evoprune.prune.apply import MODES, LayerReport, Targets, prune_sequential, prune_with_stats
from evoprune.prune.besa import besa_rates
from evoprune.prune.masks import GROUPS, check_sparsity, parse_pattern
from evoprune.prune.method import Method, builtin_method, layer_leaves
from evoprune.prune.metrics import BUILTIN_METRICS, wanda
from evoprune.prune.recipe import Recipe
from evoprune.stats.cache import cached_dense_stats

Progress = Callable[[str, int, int], None]

log = logging.getLogger(__name__)  # the CLI shows these lines; library code never prints


@dataclass(frozen=True)
class PruneSpec:
    metric: str = "wanda"
    sparsity: float | None = 0.5
    pattern: str = "unstructured"
    group: str = "row"
    mode: str = "sequential"
    allocation: str = "uniform"
    refine: str = "none"
    update: str = "none"

    @property
    def recipe(self) -> Recipe:
        return Recipe.parse(self.metric, self.allocation, self.refine, self.update)

    def validate(self, method: Method | None = None) -> None:
        """Everything checkable without a model; raises EvopruneError."""
        if self.group not in GROUPS:
            raise EvopruneError(f"unknown group {self.group!r} (use {', '.join(GROUPS)})")
        if self.mode not in MODES:
            raise EvopruneError(f"unknown mode {self.mode!r} (use {', '.join(MODES)})")
        pattern = parse_pattern(self.pattern)
        check_sparsity(None if pattern.structured else self.sparsity, pattern)
        if not pattern.structured and self.sparsity > MAX_LAYER_SPARSITY:  # every allocation keeps layers below it
            raise EvopruneError(f"sparsity {self.sparsity} is outside [0, {MAX_LAYER_SPARSITY}]")
        self.recipe.check(pattern, chooses_own_mask=method is not None and method.is_sparsegpt)


def resolve_method(metric: str, seqlen: int) -> Method:
    """A built-in name; otherwise a formula string or an exported .json file (both parsed over a fixed
    vocabulary, never executed) or a .py file (imported: it is code), resolved by `evoprune.export.metric_file`.
    Cheap and model-free, so the CLI calls it before loading anything; bad input raises EvopruneError."""
    if metric in BUILTIN_METRICS:
        return builtin_method(metric, seqlen)
    from evoprune.export.metric_file import load_metric  # sympy and the printers: only when a formula is given

    return load_metric(metric)


def resolve_recipe(metric: str, seqlen: int) -> tuple[Method, Recipe | None]:
    """`resolve_method`, plus the recipe a metric file carries (an exported recipe search, or a recipe JSON
    whose score may be a built-in name); None when `metric` is not such a file."""
    recipe = None
    if Path(metric).suffix in (".json", ".py"):
        from evoprune.export.metric_file import load_recipe_file

        recipe = load_recipe_file(metric)
    if recipe is not None and recipe.score in BUILTIN_METRICS:
        return builtin_method(recipe.score, seqlen), recipe
    return resolve_method(metric, seqlen), recipe


def with_file_stages(spec: PruneSpec, recipe: Recipe | None) -> PruneSpec:
    """The file's stages where the command line kept a stage's default; a stage given both ways, differently,
    is refused (which one was meant is not ours to guess)."""
    if recipe is None:
        return spec
    values = {}
    for stage, default in (("allocation", "uniform"), ("refine", "none"), ("update", "none")):
        given, in_file = getattr(spec, stage), str(getattr(recipe, stage))
        if given != default and in_file != default and str(getattr(spec.recipe, stage)) != in_file:
            raise EvopruneError(f"the recipe file sets {stage} {in_file}; --{stage} {given} contradicts it "
                                f"(drop --{stage})")
        values[stage] = given if given != default else in_file
    return replace(spec, **values)


def model_infos(model: torch.nn.Module) -> list[LayerInfo]:
    return layer_infos({key: tuple(ref.weight().shape) for key, ref in prunable_layers(model).items()})


def plan_model_targets(loaded: LoadedModel, method: Method, spec: PruneSpec, calib: CalibSpec,
                       windows: torch.Tensor | None, progress: Progress | None = None) -> Targets:
    """Per-layer targets of the recipe's allocation; OWL and BESA read the dense model on the calibration data."""
    recipe, pattern = spec.recipe, parse_pattern(spec.pattern)
    infos = model_infos(loaded.model)
    target = None if pattern.structured else spec.sparsity
    block_ratios = rates = descriptors = None
    if not pattern.structured and recipe.allocation.name == "tree":  # descriptors of the dense model
        stats = cached_dense_stats(loaded.model, windows, calib, progress=progress)
        layers = prunable_layers(loaded.model)
        descriptors = layer_descriptors(infos, lambda k: layers[k].weight(), lambda k: stats[k].X)
    elif not pattern.structured and recipe.allocation.name == "owl":
        stats = cached_dense_stats(loaded.model, windows, calib, progress=progress)
        layers = prunable_layers(loaded.model)
        block_ratios = owl_block_ratios(infos, lambda k: wanda(layer_leaves(layers[k].weight(), stats[k])),
                                        recipe.allocation.get("M", OWL_M))
    elif not pattern.structured and recipe.allocation.name == "besa":
        if method.scorer is None or method.needs_grad:
            raise EvopruneError("allocation besa ranks weights by a score of W, X and Hinv (not G or sparsegpt)")
        rates = besa_rates(loaded.model, windows, method.scorer, target, recipe.allocation, progress)
    return plan_targets(recipe.allocation, infos, target, pattern.structured, block_ratios, rates, descriptors)


def prune_loaded(loaded: LoadedModel, method: Method, spec: PruneSpec, calib: CalibSpec,
                 progress: Progress | None = None) -> list[LayerReport]:
    """Prune `loaded.model` in place with `method` and the spec's recipe; returns every layer's achieved sparsity."""
    spec.validate(method)
    recipe, pattern = spec.recipe, parse_pattern(spec.pattern)
    needs_calib = method.needs_stats or recipe.needs_hessian or recipe.allocation.name in ("owl", "besa", "tree")
    windows = calib_windows(loaded, calib) if needs_calib else None
    _warn_small_resolve(loaded.model, recipe, calib)
    targets = plan_model_targets(loaded, method, spec, calib, windows, progress)
    if not needs_calib:  # magnitude alone: calibration cannot change the result, skip it
        return prune_with_stats(loaded.model, {}, method, recipe, targets, pattern, spec.group)
    if spec.mode == "sequential" or method.is_sparsegpt:
        grads = None
        if method.needs_grad:  # G always comes from the dense model: take it from the statistics cache
            dense = cached_dense_stats(loaded.model, windows, calib, with_grad=True, progress=progress)
            grads = {key: st.G for key, st in dense.items()}
        return prune_sequential(loaded.model, windows, method, recipe, targets, pattern, spec.group, progress,
                                grads)
    stats = cached_dense_stats(loaded.model, windows, calib, with_hessian=recipe.needs_hessian,
                               with_grad=method.needs_grad, progress=progress)
    return prune_with_stats(loaded.model, stats, method, recipe, targets, pattern, spec.group)


def _warn_small_resolve(model: torch.nn.Module, recipe: Recipe, calib: CalibSpec) -> None:
    """The exact re-solve fits the calibration tokens: with fewer than ~2x the widest layer input it overfits
    (4 SmolLM2 blocks at 2:4, held-out error against the sweep alone: 512 tokens +2 %, 4,096 −5 %, 8,192 −9 %)."""
    if not recipe.update.get("resolve", 0):
        return
    tokens = calib.nsamples * calib.seqlen
    width = max(ref.weight().shape[1] for ref in prunable_layers(model).values())
    if tokens < 2 * width:
        log.warning("resolve fits %d calibration tokens, fewer than twice the widest layer input (%d): the "
                    "re-solved weights may overfit them (raise --nsamples or --seqlen)", tokens, width)


def layer_table(reports: list[LayerReport]) -> dict:
    pruned, total = sum(r.pruned for r in reports), sum(r.total for r in reports)
    return {"overall": pruned / total,
            "layers": [{**asdict(r), "sparsity": r.sparsity} for r in reports]}


def save_pruned(loaded: LoadedModel, out: Path, report: dict) -> None:
    """A directory plain transformers loads: config, safetensors weights, tokenizer, and report.json."""
    loaded.model.save_pretrained(out)
    loaded.tokenizer.save_pretrained(out)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")


def prune_job(loaded: LoadedModel, method: Method, spec: PruneSpec, calib: CalibSpec, out: Path,
              force: bool = False, progress: Progress | None = None) -> dict:
    """Prune with the already-resolved `method` and save; returns the report written to `out/report.json`."""
    with StagedDir(out, force) as staged:  # swapped onto `out` only once saved: a failure keeps its old contents
        return _prune_into(loaded, method, spec, calib, staged.path, progress)


def _prune_into(loaded: LoadedModel, method: Method, spec: PruneSpec, calib: CalibSpec, out: Path,
                progress: Progress | None) -> dict:
    start = time.perf_counter()
    reports = prune_loaded(loaded, method, spec, calib, progress=progress)
    seconds = time.perf_counter() - start
    report = {"protocol": protocol_record(loaded, calib, None), "prune": asdict(spec),
              "recipe": spec.recipe.to_dict(),
              "sparsity": layer_table(reports), "seconds": {"prune": seconds}}
    save_pruned(loaded, out, report)
    return report


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the weights, to restore the dense model between prunes without reloading it."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
