"""The structured evaluator: scores a formula (a candidate string over the leaves W and X) by the model it shrinks.

The formula's per-weight scores are aggregated over every unit (`summed_scores` with `structured.aggregate`, the
same as `prune --structure --metric FORMULA --aggregate ...`), widths are allocated under the exact parameter
budget, a copy of the dense model is shrunk, and the fitness is its perplexity on validation windows. Calibration
is the search's `evaluation` section (the same windows `prune` draws), so the search's best formula applied by
`prune --structure` gives the model it was scored on. Same interface as the unstructured `Evaluator` (`evaluate`,
`perplexity`, `protocol`), so the in-process pool and the Ray actors run it unchanged (the factory path is the
only difference).
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from dataclasses import asdict

import torch

from evoprune.data.perplexity import perplexity as window_perplexity
from evoprune.data.protocol import PerplexitySpec, calib_windows, evaluation_windows, protocol_record
from evoprune.data.tokens import CalibSpec
from evoprune.errors import EvopruneError
from evoprune.fitness.candidate import compile_score, parse_candidate
from evoprune.fitness.layer_fitness import checked_scores
from evoprune.fitness.result import EvalResult
from evoprune.fitness.structured_spec import StructuredSearchSpec
from evoprune.model.loading import load_model
from evoprune.structured.allocate import UnitScores
from evoprune.structured.calibration import calibrate
from evoprune.structured.pool import validation_windows
from evoprune.structured.scores import summed_scores
from evoprune.structured.selection import Selection
from evoprune.structured.shrink import shrink_model
from evoprune.structured.spec import StructuredSpec, select_units

FACTORY = "evoprune.fitness.structured_evaluator:StructuredEvaluator"


def selection_hash(selection: Selection) -> str:
    """Equal hashes, equal shrunk models: every block's kept heads and channels, and the blocks kept."""
    digest = hashlib.blake2b(str(selection.kept_blocks()).encode(), digest_size=16)
    for layer in selection.layers:  # a residual subset of None (every channel) hashes apart from any subset
        for kept in (layer.q_heads, layer.kv_heads, layer.mlp, layer.resid_attn, layer.resid_mlp):
            digest.update(b"all" if kept is None else kept.cpu().numpy().astype("int32").tobytes())
            digest.update(b"|")
    return digest.hexdigest()


class StructuredEvaluator:
    """The dense model, its channel statistics and the objective windows; `evaluate(formula)` is one candidate."""

    def __init__(self, spec: StructuredSearchSpec) -> None:
        ev, fit = spec.evaluation, spec.structured
        unknown = set(ev.leaves) - {"W", "X"}
        if unknown:
            raise EvopruneError(f"a structured search scores over W and X only; drop {sorted(unknown)} from "
                                "evaluation.leaves")
        self.spec, self.fit = ev, fit
        self.loaded = load_model(ev.model, ev.device, ev.dtype)
        self.structured = StructuredSpec(fit.structure, fit.ratio, "formula", fit.widths, depth=0,
                                         aggregate=fit.aggregate)
        self.shape, _ = self.structured.check(self.loaded.model.config)  # a budget no width meets: refused here
        self.calib = CalibSpec(ev.calib, ev.nsamples, ev.seqlen, ev.seed)
        moments = calibrate(self.loaded.model, calib_windows(self.loaded, self.calib)).moments
        self.x = {key: m.rms().unsqueeze(0) for key, m in moments.items()}
        device = next(self.loaded.model.parameters()).device
        self.objective = validation_windows(self.loaded.tokenizer, ev.calib, fit.objective_seqlen,
                                            fit.objective_windows, fit.objective_seed).to(device)
        self.selection_cache: dict[str, float] = {}
        self.perplexity_cache: dict[str, float] = {}
        self._eval_windows: torch.Tensor | None = None

    def unit_scores(self, candidate: str) -> UnitScores:
        recipe = parse_candidate(candidate)
        if not recipe.plain:
            raise EvopruneError("a structured search scores bare formulas (no allocation, refinement or update)")
        scorer = compile_score(recipe.score, self.spec.seqlen)

        def weight_score(i: int, name: str, lin: torch.nn.Linear) -> torch.Tensor:
            w = lin.weight.detach().float()  # constant or non-finite scores rank nothing: a failed candidate
            return checked_scores(scorer, {"W": w, "X": self.x[f"{i}.{name}"].to(w.device)}, f"{i}.{name}")

        return summed_scores(self.loaded.model, self.shape, weight_score, self.fit.aggregate)

    def selection(self, candidate: str) -> tuple[Selection, str]:
        """The units the candidate keeps, and their hash (equal hashes, equal shrunk models)."""
        selection = select_units(self.loaded.model.config, self.structured, self.unit_scores(candidate))
        return selection, selection_hash(selection)

    def _shrunk_perplexity(self, selection: Selection, windows: torch.Tensor) -> float:
        """Perplexity on `windows` of a copy of the dense model shrunk to `selection` (the dense model stays)."""
        model = copy.deepcopy(self.loaded.model)
        shrink_model(model, self.shape, selection, None)
        return window_perplexity(model, windows)

    def evaluate(self, candidate: str) -> dict:
        """Validation perplexity of the shrunk model; a formula that fails gives fitness inf, never an exception."""
        start = time.perf_counter()
        result = EvalResult(candidate)
        try:
            selection, key = self.selection(candidate)
            result.mask_hash, result.cached = key, key in self.selection_cache
            if not result.cached:  # a selection seen before needs no copy, no shrink, no forward pass
                self.selection_cache[key] = self._shrunk_perplexity(selection, self.objective)
            result.fitness = self.selection_cache[key]
            if not math.isfinite(result.fitness):
                result.fitness, result.reason = math.inf, "non-finite validation perplexity"
        except Exception as exc:  # noqa: BLE001 -- any failure is the candidate's (compile, scores, allocation)
            result.reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        result.seconds = time.perf_counter() - start
        return result.to_dict()

    def perplexity(self, candidate: str, sparsity: float | None = None, pattern: str | None = None) -> float:
        """Perplexity on the evaluation split of the model shrunk by `candidate` (the final table's number;
        `sparsity` and `pattern` are the unstructured rescorer's arguments and do not apply)."""
        del sparsity, pattern
        selection, key = self.selection(candidate)
        if key not in self.perplexity_cache:
            if self._eval_windows is None:
                spec = PerplexitySpec(self.spec.eval_data, self.spec.eval_seqlen, self.spec.eval_max_tokens)
                self._eval_windows = evaluation_windows(self.loaded, spec)
            self.perplexity_cache[key] = self._shrunk_perplexity(selection, self._eval_windows)
        return self.perplexity_cache[key]

    def protocol(self) -> dict:
        return {**protocol_record(self.loaded, self.calib, None), "fitness": "structured",
                "structured": asdict(self.fit),
                "objective": {"split": "calib (validation)", "windows": self.fit.objective_windows,
                              "seqlen": self.fit.objective_seqlen, "seed": self.fit.objective_seed}}
