"""The Evaluator: holds the model and its calibration statistics, and scores a metric by how well the model it
prunes reconstructs the dense one. Built once per process (or per Ray actor); candidates are formula strings.

The model is pruned in place and restored from a kept copy of the weights, never reloaded per candidate.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable

import numpy as np
import torch

from evoprune.data.perplexity import perplexity as window_perplexity
from evoprune.data.protocol import PerplexitySpec, calib_windows, evaluation_windows, protocol_record
from evoprune.data.tokens import CalibSpec
from evoprune.fitness.errors import kl_from_dense, layer_error, output_energy, relative_output_error
from evoprune.fitness.spec import EvalSpec
from evoprune.model.layers import decoder_blocks, prunable_layers
from evoprune.model.loading import load_model
from evoprune.prune.masks import check_sparsity, parse_pattern, select_mask
from evoprune.prune.method import Scorer, layer_leaves
from evoprune.prune.metrics import BUILTIN_METRICS, metric_function
from evoprune.stats.blocks import capture_block_inputs, run_block
from evoprune.stats.cache import cached_dense_stats


class CandidateFailure(Exception):
    """A formula that cannot rank weights (NaN, inf, constant, wrong shape): worst fitness, with this reason."""


def _settings(spec: EvalSpec) -> list[tuple[float, object]]:
    """(sparsity, pattern) pairs a candidate is scored at: every sparsity for unstructured, N:M as it implies."""
    out = []
    for text in spec.patterns:
        pattern = parse_pattern(text)
        for sparsity in (None,) if pattern.structured else spec.sparsities:
            out.append((check_sparsity(sparsity, pattern), pattern))
    return out


def _row_subsets(leaves: dict[str, dict[str, torch.Tensor]], spec: EvalSpec) -> dict[str, torch.Tensor | None]:
    """Per layer, the sorted output rows the layer fitness scores: a fixed random subset drawn with the seed."""
    if spec.fitness != "layer" or spec.fitness_rows >= 1:
        return {}
    gen = torch.Generator().manual_seed(spec.seed)
    out = {}
    for key in sorted(leaves):
        rows = leaves[key]["W"].shape[0]
        keep = max(1, round(spec.fitness_rows * rows))
        out[key] = torch.randperm(rows, generator=gen)[:keep].sort().values.to(leaves[key]["W"].device)
    return out


class Evaluator:
    def __init__(self, spec: EvalSpec, progress: Callable[[str, int, int], None] | None = None) -> None:
        self.spec = spec
        self.loaded = load_model(spec.model, spec.device, spec.dtype)
        self.calib = CalibSpec(spec.calib, spec.nsamples, spec.seqlen, spec.seed)
        windows = calib_windows(self.loaded, self.calib)
        stats = cached_dense_stats(self.loaded.model, windows, self.calib, with_hessian=spec.fitness == "layer",
                                   with_grad="G" in spec.leaves, progress=progress)
        self.layers = prunable_layers(self.loaded.model)
        self.original = {key: ref.weight().detach().clone() for key, ref in self.layers.items()}
        self.leaves = {key: {k: v for k, v in layer_leaves(self.original[key], stats[key]).items()
                             if k in spec.leaves} for key in self.layers}
        self.hessians = {key: stats[key].H for key in self.layers} if spec.fitness == "layer" else {}
        self.rows = _row_subsets(self.leaves, spec)
        self.energies = self._energies()
        self.settings = _settings(spec)
        self._prepare_references(windows[: spec.fitness_samples])
        self.mask_cache: dict[str, float] = {}
        self.perplexity_cache: dict[str, float] = {}
        self._eval_windows: torch.Tensor | None = None

    @classmethod
    def from_layers(cls, spec: EvalSpec, leaves: dict[str, dict[str, torch.Tensor]],
                    hessians: dict[str, torch.Tensor]) -> Evaluator:
        """A layer-fitness evaluator over given leaves and Gram matrices, with no model (tests, synthetic runs)."""
        if spec.fitness != "layer":
            raise ValueError("only the layer fitness works without a model")
        ev = cls.__new__(cls)
        ev.spec, ev.leaves, ev.hessians, ev.layers, ev.mask_cache = spec, leaves, hessians, {}, {}
        ev.rows = _row_subsets(leaves, spec)
        ev.energies = ev._energies()
        ev.settings = _settings(spec)
        return ev

    @torch.no_grad()
    def _energies(self) -> dict[str, torch.Tensor]:
        """The dense ‖WX‖² of every layer: the layer fitness's fixed denominators."""
        return {key: output_energy(self._fitness_weight(key), H.to(self.leaves[key]["W"].device))
                for key, H in self.hessians.items()}

    def _fitness_weight(self, key: str) -> torch.Tensor:
        """The rows of W the layer fitness scores (all of them unless `fitness_rows` < 1)."""
        w = self.leaves[key]["W"]
        return w if self.rows.get(key) is None else w[self.rows[key]]

    def protocol(self) -> dict:
        return {**protocol_record(self.loaded, self.calib, None), "fitness": self.spec.fitness,
                "fitness_samples": self.spec.fitness_samples, "group": self.spec.group,
                "settings": [{"sparsity": s, "pattern": str(p)} for s, p in self.settings]}

    @torch.no_grad()
    def _prepare_references(self, windows: torch.Tensor) -> None:
        """Dense targets for the block and model fitness, computed once."""
        model = self.loaded.model
        if self.spec.fitness == "block":
            inputs = capture_block_inputs(model, windows)
            self.block_io = []
            for block in decoder_blocks(model):
                hidden = inputs.hidden
                inputs.hidden = run_block(block, inputs)
                self.block_io.append((hidden, inputs.hidden))
            self.block_kwargs, self.block_batch = inputs.kwargs, inputs.batch_size
        elif self.spec.fitness == "model":
            self.fitness_windows = windows.to(next(model.parameters()).device)
            self.dense_logprobs = torch.log_softmax(model(self.fitness_windows).logits.float(), dim=-1)

    # -- scoring --------------------------------------------------------------------------------------------
    def masks_for(self, scorer: Scorer, sparsity: float, pattern, subset: bool = False) -> dict[str, torch.Tensor]:
        """Keep-masks of every layer; `subset`: only the rows the layer fitness scores (scores are always
        computed on the whole matrix, since operators such as colnorm or mms read all of it)."""
        masks = {}
        for key, leaves in self.leaves.items():
            shape = leaves["W"].shape
            try:
                scores = scorer(leaves)
                scores = torch.as_tensor(scores, dtype=torch.float32, device=leaves["W"].device).expand(shape)
            except KeyError as exc:  # a leaf this evaluator does not compute (see EvalSpec.leaves)
                raise CandidateFailure(f"needs leaf {exc.args[0]}, not among this evaluator's leaves "
                                       f"{sorted(leaves)}") from exc
            except (RuntimeError, ValueError, TypeError, ZeroDivisionError, OverflowError) as exc:
                raise CandidateFailure(f"{type(exc).__name__} on layer {key}: {str(exc).splitlines()[0]}") from exc
            low, high = torch.aminmax(scores)  # one pass: NaN and ±inf propagate into the extremes
            if not (torch.isfinite(low) and torch.isfinite(high)):
                raise CandidateFailure(f"non-finite scores on layer {key}")
            if bool(low == high):
                raise CandidateFailure(f"constant scores on layer {key}")
            if subset and self.rows.get(key) is not None:
                scores = scores[self.rows[key]]
            masks[key] = select_mask(scores, sparsity, pattern, self.spec.group)
        return masks

    @staticmethod
    def mask_hash(masks: dict[str, torch.Tensor]) -> str:
        digest = hashlib.blake2b(digest_size=16)
        for key in sorted(masks):
            digest.update(np.packbits(masks[key].cpu().numpy()).tobytes())
        return digest.hexdigest()

    @torch.no_grad()
    def _apply(self, masks: dict[str, torch.Tensor] | None) -> None:
        for key, ref in self.layers.items():
            original = self.original[key]
            ref.set_weight(original if masks is None else original * masks[key])

    @torch.no_grad()
    def fitness_of_masks(self, masks: dict[str, torch.Tensor]) -> float:
        if self.spec.fitness == "layer":
            errors = [layer_error(self._fitness_weight(k), m, self.hessians[k].to(m.device), self.energies[k])
                      for k, m in masks.items()]
            return float(torch.stack(errors).mean())
        self._apply(masks)
        try:
            if self.spec.fitness == "block":
                errors = []
                for block, (hidden, dense_out) in zip(decoder_blocks(self.loaded.model), self.block_io, strict=True):
                    outs = [block(hidden[i : i + self.block_batch], **self.block_kwargs)
                            for i in range(0, len(hidden), self.block_batch)]
                    outs = torch.cat([o[0] if isinstance(o, tuple) else o for o in outs])
                    errors.append(relative_output_error(outs, dense_out))
                return float(torch.stack(errors).mean())
            return float(kl_from_dense(self.dense_logprobs, self.loaded.model(self.fitness_windows).logits))
        finally:
            self._apply(None)

    def evaluate_scorer(self, scorer: Scorer, name: str) -> dict:
        start = time.perf_counter()
        result = {"formula": name, "fitness": math.inf, "reason": None, "mask_hash": None, "cached": False}
        try:
            values, hashes = [], []
            for sparsity, pattern in self.settings:
                masks = self.masks_for(scorer, sparsity, pattern, subset=True)
                key = self.mask_hash(masks)
                hashes.append(key)
                if key in self.mask_cache:
                    result["cached"] = True
                else:
                    self.mask_cache[key] = self.fitness_of_masks(masks)
                values.append(self.mask_cache[key])
            fitness = float(np.mean(values))
            if not math.isfinite(fitness):
                raise CandidateFailure("non-finite fitness")
            result.update(fitness=fitness, mask_hash=hashlib.blake2b("".join(hashes).encode(),
                                                                    digest_size=16).hexdigest())
            result["cached"] = result["cached"] and len(hashes) == 1
        except CandidateFailure as exc:
            result["reason"] = str(exc)
        result["seconds"] = time.perf_counter() - start
        return result

    def evaluate(self, formula: str) -> dict:
        """Fitness of a formula string (or a built-in metric name); never raises for a bad formula."""
        try:
            scorer = self.scorer(formula)
        except Exception as exc:  # parse/compile failures are candidate failures, not crashes
            return {"formula": formula, "fitness": math.inf, "reason": f"compile: {str(exc).splitlines()[0]}",
                    "mask_hash": None, "cached": False, "seconds": 0.0}
        return self.evaluate_scorer(scorer, formula)

    def scorer(self, formula: str) -> Scorer:
        if formula in BUILTIN_METRICS:
            return metric_function(formula, self.spec.seqlen)
        from evoprune.formula import compile_formula, parse_formula

        return compile_formula(parse_formula(formula))

    # -- held-out quality -----------------------------------------------------------------------------------
    def perplexity(self, formula: str, sparsity: float = 0.5, pattern: str = "unstructured") -> float:
        """Perplexity on the evaluation split after pruning with dense statistics (restored afterwards)."""
        parsed = parse_pattern(pattern)
        masks = self.masks_for(self.scorer(formula), check_sparsity(sparsity if not parsed.structured else None,
                                                                    parsed), parsed)
        key = self.mask_hash(masks)  # rank-equivalent formulas (a search's best vs a baseline) are measured once
        if key in self.perplexity_cache:
            return self.perplexity_cache[key]
        if self._eval_windows is None:
            spec = PerplexitySpec(self.spec.eval_data, self.spec.eval_seqlen, self.spec.eval_max_tokens)
            self._eval_windows = evaluation_windows(self.loaded, spec)
        self._apply(masks)
        try:
            self.perplexity_cache[key] = window_perplexity(self.loaded.model, self._eval_windows)
        finally:
            self._apply(None)
        return self.perplexity_cache[key]
