"""What crosses to an evaluator: a candidate string. A formula or built-in name is a plain recipe (uniform
allocation, no refinement, no update); a JSON object is a whole recipe (`prune.recipe.Recipe.to_dict`)."""

from __future__ import annotations

import json

from evoprune.errors import EvopruneError
from evoprune.prune.method import Scorer
from evoprune.prune.metrics import BUILTIN_METRICS, metric_function
from evoprune.prune.recipe import Recipe


def parse_candidate(text: str) -> Recipe:
    if text.lstrip().startswith("{"):
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EvopruneError(f"recipe JSON: {exc}") from None
        return Recipe.from_dict(raw)
    return Recipe(score=text)


def candidate_text(recipe: Recipe) -> str:
    """The inverse of `parse_candidate`: a plain recipe is its score; any other its sorted JSON."""
    return recipe.score if recipe.plain else json.dumps(recipe.to_dict(), sort_keys=True)


def compile_score(score: str, seqlen: int) -> Scorer:
    """A built-in metric or a formula string (parsed over a fixed vocabulary, never executed)."""
    if score == "sparsegpt":
        raise EvopruneError("sparsegpt is not a score: use a score with update obs")
    if score in BUILTIN_METRICS:
        return metric_function(score, seqlen)
    from evoprune.formula import compile_formula, parse_formula

    return compile_formula(parse_formula(score))
