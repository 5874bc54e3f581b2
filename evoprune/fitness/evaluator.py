"""The Evaluator: holds the model and its calibration statistics, and scores a candidate recipe by how well the
model it prunes reconstructs the dense one. Built once per process (or per Ray actor); candidates are strings
(a formula, a built-in name, or a recipe's JSON: see `candidate.py`).

The fitness strategy is chosen once: `layer` is the pure `LayerFitness` (Gram matrices, no forward pass), `fisher`
the same weighted by the loss's output sensitivities (one backward pass per calibration window, cached),
`block`/`model` run the pruned model (`strategies.py`). The model is pruned in place and restored from a kept copy
of the weights, never reloaded per candidate.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Mapping

import numpy as np
import torch

from evoprune.data.perplexity import perplexity as window_perplexity
from evoprune.data.protocol import PerplexitySpec, calib_windows, evaluation_windows, protocol_record
from evoprune.data.tokens import CalibSpec
from evoprune.errors import EvopruneError
from evoprune.fitness.candidate import compile_score, parse_candidate
from evoprune.fitness.layer_fitness import CandidateFailure, LayerFitness
from evoprune.fitness.result import EvalResult
from evoprune.fitness.spec import LAYER_FITNESSES, EvalSpec
from evoprune.fitness.strategies import BlockStrategy, FitnessStrategy, ModelStrategy
from evoprune.model.layers import prunable_layers
from evoprune.model.loading import load_model
from evoprune.prune.allocation import OWL_M, layer_infos, owl_block_ratios, plan_targets
from evoprune.prune.allocation_tree import layer_descriptors
from evoprune.prune.apply import LayerTarget
from evoprune.prune.masks import Pattern, check_sparsity, parse_pattern
from evoprune.prune.method import Scorer, layer_leaves
from evoprune.prune.metrics import wanda
from evoprune.prune.recipe import Recipe
from evoprune.stats.cache import cached_dense_stats, cached_output_sensitivities

__all__ = ["CandidateFailure", "Evaluator", "RecipeEvaluator", "settings_of", "targets_for"]


def settings_of(spec: EvalSpec) -> list[tuple[float, Pattern]]:
    """(sparsity, pattern) pairs a candidate is scored at: every sparsity for unstructured, N:M as it implies."""
    out = []
    for text in spec.patterns:
        pattern = parse_pattern(text)
        for sparsity in (None,) if pattern.structured else spec.sparsities:
            out.append((check_sparsity(sparsity, pattern), pattern))
    return out


def targets_for(recipe: Recipe, leaves: Mapping[str, Mapping[str, torch.Tensor]], x: Mapping[str, torch.Tensor],
                sparsity: float, pattern: Pattern,
                descriptors: Mapping[str, torch.Tensor] | None = None) -> dict[str, LayerTarget]:
    """Per-layer targets of a recipe's allocation from the leaves (OWL reads W and the dense X; a tree allocation
    its per-layer `descriptors`, computed here when not given)."""
    infos = layer_infos({key: tuple(lv["W"].shape) for key, lv in leaves.items()})
    if recipe.allocation.name == "tree" and descriptors is None and not pattern.structured:
        descriptors = layer_descriptors(infos, lambda k: leaves[k]["W"], x.__getitem__)
    if recipe.allocation.name == "besa" and not pattern.structured:
        raise CandidateFailure("allocation besa trains on the model; it is not available inside a fitness")
    ratios = None
    if recipe.allocation.name == "owl" and not pattern.structured:
        ratios = owl_block_ratios(infos, lambda k: wanda({"W": leaves[k]["W"], "X": x[k]}),
                                  recipe.allocation.get("M", OWL_M))
    try:
        return plan_targets(recipe.allocation, infos, None if pattern.structured else sparsity, pattern.structured,
                            ratios, descriptors=descriptors)
    except EvopruneError as exc:
        raise CandidateFailure(str(exc)) from exc


def masks_hash(pruned: Mapping[str, tuple[torch.Tensor, torch.Tensor]], recipe: Recipe) -> str:
    """Hash of the final masks and of the update stage (same masks + same update = same weights)."""
    digest = hashlib.blake2b(str(recipe.update).encode(), digest_size=16)
    for key in sorted(pruned):
        digest.update(np.packbits(pruned[key][0].cpu().numpy()).tobytes())
    return digest.hexdigest()


class RecipeEvaluator:
    """Scores candidates with a fitness strategy over given layers: no model (the layer fitness alone: tests,
    synthetic runs) or, through `Evaluator`, the loaded model's."""

    def __init__(self, spec: EvalSpec, fitness: LayerFitness, x: Mapping[str, torch.Tensor],
                 strategy: FitnessStrategy | None = None) -> None:
        self.spec, self.fitness, self.x = spec, fitness, x
        self.strategy = strategy or fitness
        self.settings = settings_of(spec)
        self.mask_cache: dict[str, float] = {}
        self._targets: dict[tuple[str, float, str], dict[str, LayerTarget]] = {}
        self._descriptors: dict[str, torch.Tensor] | None = None  # the tree allocation's, computed once

    @classmethod
    def from_layers(cls, spec: EvalSpec, leaves: dict[str, dict[str, torch.Tensor]],
                    hessians: Mapping[str, torch.Tensor]) -> RecipeEvaluator:
        """The layer fitness over given leaves (with X) and Gram matrices, with no model."""
        if spec.fitness != "layer":
            raise EvopruneError("only the layer fitness works without a model (fisher needs its gradients)")
        x = {key: lv["X"] for key, lv in leaves.items()}
        return cls(spec, LayerFitness(leaves, hessians, spec.group, spec.fitness_rows, spec.seed), x)

    def targets(self, recipe: Recipe, sparsity: float, pattern: Pattern) -> dict[str, LayerTarget]:
        key = (str(recipe.allocation), sparsity, str(pattern))
        if key not in self._targets:
            if recipe.allocation.name == "tree" and self._descriptors is None:
                infos = layer_infos({k: tuple(lv["W"].shape) for k, lv in self.fitness.leaves.items()})
                self._descriptors = layer_descriptors(infos, lambda k: self.fitness.leaves[k]["W"], self.x.__getitem__)
            self._targets[key] = targets_for(recipe, self.fitness.leaves, self.x, sparsity, pattern,
                                             self._descriptors)
        return self._targets[key]

    def evaluate_recipe(self, scorer: Scorer, recipe: Recipe, name: str) -> EvalResult:
        start = time.perf_counter()
        result = EvalResult(name)
        try:
            values, hashes, hits = [], [], 0
            for sparsity, pattern in self.settings:
                targets = self.targets(recipe, sparsity, pattern)
                began = time.perf_counter()
                pruned = self.fitness.prune(scorer, recipe, targets, pattern, subset=self.strategy.subset)
                result.prune_seconds += time.perf_counter() - began
                key = masks_hash(pruned, recipe)
                hashes.append(key)
                if key in self.mask_cache:
                    hits += 1
                else:
                    self.mask_cache[key] = self.strategy.error(pruned)
                values.append(self.mask_cache[key])
            fitness = float(np.mean(values))
            if not math.isfinite(fitness):
                raise CandidateFailure("non-finite fitness")
            result.fitness = fitness
            result.mask_hash = hashlib.blake2b("".join(hashes).encode(), digest_size=16).hexdigest()
            result.cached = hits == len(hashes) == 1
        except CandidateFailure as exc:
            result.reason = str(exc)
        result.seconds = time.perf_counter() - start
        return result

    def evaluate(self, candidate: str) -> dict:
        """Fitness of a candidate string (formula, built-in name or recipe JSON); never raises for a bad one."""
        try:
            recipe = parse_candidate(candidate)
            scorer = compile_score(recipe.score, self.spec.seqlen)
        except Exception as exc:  # parse/compile failures are candidate failures, not crashes
            return EvalResult(candidate, reason=f"compile: {str(exc).splitlines()[0]}").to_dict()
        return self.evaluate_recipe(scorer, recipe, candidate).to_dict()


class Evaluator(RecipeEvaluator):
    """The model, its cached dense statistics, the chosen fitness strategy, and held-out perplexity."""

    def __init__(self, spec: EvalSpec, progress: Callable[[str, int, int], None] | None = None) -> None:
        self.loaded = load_model(spec.model, spec.device, spec.dtype)
        self.calib = CalibSpec(spec.calib, spec.nsamples, spec.seqlen, spec.seed)
        windows = calib_windows(self.loaded, self.calib)
        # Gram matrices always: the layer fitness reads them and any recipe with swaps or an update needs them
        stats = cached_dense_stats(self.loaded.model, windows, self.calib, with_hessian=True,
                                   with_grad="G" in spec.leaves, progress=progress)
        self.layers = prunable_layers(self.loaded.model)
        self.original = {key: ref.weight().detach().clone() for key, ref in self.layers.items()}
        leaves = {key: {k: v for k, v in layer_leaves(self.original[key], stats[key]).items() if k in spec.leaves}
                  for key in self.layers}
        x = {key: stats[key].X.to(self.original[key].device).float().unsqueeze(0) for key in self.layers}
        sensitivity = (cached_output_sensitivities(self.loaded.model, windows, self.calib, progress)
                       if spec.fitness == "fisher" else None)
        fitness = LayerFitness(leaves, {key: stats[key].H for key in self.layers}, spec.group,
                               spec.fitness_rows if spec.fitness in LAYER_FITNESSES else 1.0, spec.seed,
                               sensitivity)
        samples = self.samples = windows[: spec.fitness_samples]
        strategies = {"layer": lambda: fitness, "fisher": lambda: fitness,
                      "block": lambda: BlockStrategy(self.loaded.model, samples, self._apply),
                      "model": lambda: ModelStrategy(self.loaded.model, samples, self._apply)}
        super().__init__(spec, fitness, x, strategies[spec.fitness]())
        self.perplexity_cache: dict[str, float] = {}
        self._eval_windows: torch.Tensor | None = None
        self._model_strategy: ModelStrategy | None = None

    def protocol(self) -> dict:
        return {**protocol_record(self.loaded, self.calib, None), "fitness": self.spec.fitness,
                "fitness_samples": self.spec.fitness_samples, "group": self.spec.group,
                "settings": [{"sparsity": s, "pattern": str(p)} for s, p in self.settings]}

    @torch.no_grad()
    def _apply(self, weights: Mapping[str, torch.Tensor] | None) -> None:
        for key, ref in self.layers.items():
            ref.set_weight(self.original[key] if weights is None else weights[key])

    def model_fitness(self, candidate: str) -> float:
        """The `model` fitness of a candidate whatever fitness this evaluator searches with: KL to the dense model
        on the first `fitness_samples` calibration windows, every row pruned, mean over the settings. A second,
        slower opinion on a search's best (calibration text only: the evaluation split stays held out)."""
        if self._model_strategy is None:
            self._model_strategy = (self.strategy if isinstance(self.strategy, ModelStrategy)
                                    else ModelStrategy(self.loaded.model, self.samples, self._apply))
        recipe = parse_candidate(candidate)
        scorer = compile_score(recipe.score, self.spec.seqlen)
        values = [self._model_strategy.error(self.fitness.prune(scorer, recipe, self.targets(recipe, sparsity, pattern),
                                                                pattern, subset=False))
                  for sparsity, pattern in self.settings]
        return float(np.mean(values))

    # -- held-out quality -----------------------------------------------------------------------------------
    def perplexity(self, candidate: str, sparsity: float = 0.5, pattern: str = "unstructured") -> float:
        """Perplexity on the evaluation split after pruning with dense statistics (restored afterwards)."""
        recipe = parse_candidate(candidate)
        parsed = parse_pattern(pattern)
        sparsity = check_sparsity(sparsity if not parsed.structured else None, parsed)
        pruned = self.fitness.prune(compile_score(recipe.score, self.spec.seqlen), recipe,
                                    self.targets(recipe, sparsity, parsed), parsed, subset=False)
        key = masks_hash(pruned, recipe)  # rank-equivalent formulas (a search's best vs a baseline): measured once
        if key in self.perplexity_cache:
            return self.perplexity_cache[key]
        self._apply({key_: new for key_, (_, new) in pruned.items()})
        try:
            self.perplexity_cache[key] = self.model_perplexity()
        finally:
            self._apply(None)
        return self.perplexity_cache[key]

    def model_perplexity(self) -> float:
        """Perplexity of the model as it is now on the evaluation split (a caller that pruned it another way,
        e.g. sequentially, measures with this and then calls `restore`)."""
        if self._eval_windows is None:
            spec = PerplexitySpec(self.spec.eval_data, self.spec.eval_seqlen, self.spec.eval_max_tokens)
            self._eval_windows = evaluation_windows(self.loaded, spec)
        return window_perplexity(self.loaded.model, self._eval_windows)

    def restore(self) -> None:
        """The dense weights back in every prunable layer."""
        self._apply(None)
