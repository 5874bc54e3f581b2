"""The GP engine: DEAP trees over the formula registry, a canonical-form cache, per-generation checkpoints with
every RNG state, resume, hall of fame and Pareto front. It receives a `map_fn` and never imports Ray."""

from evoprune.prune.metrics import BASELINE_FORMULAS
from evoprune.search.config import SearchConfig, load_config, parse_overrides, with_overrides
from evoprune.search.loop import run_search
from evoprune.search.ranking import hall_of_fame, pareto_front

__all__ = ["BASELINE_FORMULAS", "SearchConfig", "hall_of_fame", "load_config", "pareto_front", "parse_overrides",
           "run_search", "with_overrides"]
