"""What one tune trial evaluates: unit scores from the chosen pool windows mixed by the chosen weights, the model
shrunk by them, and its perplexity on the objective windows (validation text disjoint from the pool).

Everything that does not depend on a trial is computed once: the pool and objective windows, every pool window's
channel moments (FLAP, Wanda and any W/X metric read them), and the scores of weight-only metrics. Only Taylor
needs a gradient pass over the chosen windows per trial.
"""

from __future__ import annotations

import copy

import torch

from evoprune.data.perplexity import perplexity
from evoprune.data.text import load_text
from evoprune.data.tokens import tokenize
from evoprune.jobs.structured import StructuredSpec, shrink_with_scores
from evoprune.jobs.tune_config import STRUCTURED_METRICS, TuneConfig
from evoprune.jobs.tune_space import TrialChoice, decode
from evoprune.model.loading import LoadedModel
from evoprune.structured.allocate import UnitScores
from evoprune.structured.calibration import Calibration
from evoprune.structured.mix import mix_scores
from evoprune.structured.pool import pool_moments, split_validation
from evoprune.structured.scores import flap_scores, summed_scores
from evoprune.structured.selection import Selection
from evoprune.structured.shape import decoder_shape, parse_structures
from evoprune.structured.taylor import taylor_scores


class TuneProblem:
    """The dense model and the trial-independent statistics; `objective(params, spec)` is one trial."""

    def __init__(self, loaded: LoadedModel, cfg: TuneConfig) -> None:
        from evoprune.jobs.prune import resolve_method

        self.loaded, self.cfg = loaded, cfg
        self.shape = decoder_shape(loaded.model.config)
        ids = tokenize(loaded.tokenizer, load_text(cfg.data, "calib"))
        self.pool, self.objective_ids = split_validation(ids, cfg.seqlen, cfg.pool, cfg.objective_windows,
                                                         cfg.split_seed)
        self.methods = {m: resolve_method(m, cfg.seqlen) for m in cfg.metrics if m not in STRUCTURED_METRICS}
        needs_moments = "flap" in cfg.metrics or any("X" in m.leaves for m in self.methods.values())
        self.moments = pool_moments(loaded.model, self.pool) if needs_moments else {}
        # weight-only metrics (magnitude, formulas in W) do not depend on the windows: score them once
        self.fixed = {m: self._summed(m, None) for m, method in self.methods.items() if "X" not in method.leaves}
        self.dense_objective = self.perplexity(loaded.model)

    def perplexity(self, model: torch.nn.Module) -> float:
        return perplexity(model, self.objective_ids)

    def _summed(self, metric: str, chosen: dict | None) -> UnitScores:
        method = self.methods[metric]

        def weight_score(i: int, name: str, lin: torch.nn.Linear) -> torch.Tensor:
            w = lin.weight.detach().float()
            extra = {} if chosen is None else {"X": chosen[f"{i}.{name}"].rms().unsqueeze(0).to(w.device)}
            return method.scorer({"W": w, **extra})

        return summed_scores(self.loaded.model, self.shape, weight_score)

    def _taylor(self, windows: tuple[int, ...]) -> UnitScores:
        taylor = taylor_scores(self.loaded.model, self.pool[list(windows)])
        return summed_scores(self.loaded.model, self.shape, lambda i, name, _lin: taylor[f"{i}.{name}"])

    def scores(self, choice: TrialChoice) -> UnitScores:
        """The mixed unit scores of one trial's windows and weights."""
        chosen = {key: acc.chosen(list(choice.windows)) for key, acc in self.moments.items()}
        # a metric weighted zero adds nothing: skip its statistics (Taylor's gradient pass is most of a trial)
        weights = {m: w for m, w in choice.weights.items() if w > 0} or choice.weights
        components: dict[str, UnitScores] = {}
        for metric in weights:
            if metric == "taylor":
                components[metric] = self._taylor(choice.windows)
            elif metric == "flap":
                calibration = Calibration(chosen, torch.zeros(0))  # FLAP reads the moments only
                components[metric] = flap_scores(self.loaded.model, self.shape, calibration)
            else:
                components[metric] = self.fixed[metric] if metric in self.fixed else self._summed(metric, chosen)
        return mix_scores(components, weights, parse_structures(self.cfg.structure))

    def spec(self, ratio: float | None = None) -> StructuredSpec:
        cfg = self.cfg
        return StructuredSpec(cfg.structure, cfg.ratio if ratio is None else ratio, "mix", cfg.widths,
                              cfg.tolerance)

    def apply(self, model: torch.nn.Module, params: dict, spec: StructuredSpec) -> Selection:
        """Shrink `model` (the dense model or a copy of it) in place by one trial's parameters."""
        return shrink_with_scores(model, spec, self.scores(decode(params, self.cfg)), None)

    def objective(self, params: dict, spec: StructuredSpec) -> float:
        model = copy.deepcopy(self.loaded.model)
        self.apply(model, params, spec)
        value = self.perplexity(model)
        del model
        return value
