"""The end of a run: best.json (best first, with perplexity for the top few), the Pareto front, and the table
of the best formulas beside the built-in baselines."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from evoprune.formula import formula_size, parse_formula
from evoprune.search import run_dir
from evoprune.search.loop import BASELINE_FORMULAS, pareto_front, ranked

BEST_KEPT = 10


def finish_run(out: Path, state: dict, rescore_top: int, leaves: tuple[str, ...], protocol: dict,
               perplexity_fn: Callable[[str], float] | None) -> dict:
    best = []
    for i, (form, result) in enumerate(ranked(state["cache"])[:BEST_KEPT]):
        ppl = perplexity_fn(form) if perplexity_fn is not None and i < rescore_top else None
        best.append({"formula": form, "canonical": form, "fitness": result["fitness"],
                     "size": formula_size(parse_formula(form)), "perplexity": ppl})
    baselines = []
    if perplexity_fn is not None:
        for name, text in BASELINE_FORMULAS.items():
            if name in ("wanda", "magnitude") and {s.name for s in parse_formula(text).free_symbols} <= set(leaves):
                baselines.append({"method": name, "formula": text, "perplexity": perplexity_fn(name)})
    payload = {"best": best, "baselines": baselines, "pareto": pareto_front(state["cache"]),
               "history": state["history"], "protocol": protocol,
               "cache": cache_summary(state)}
    run_dir.write_best(out, payload)
    return payload


def cache_summary(state: dict) -> dict:
    candidates = sum(h["candidates"] for h in state["history"])
    evaluations = sum(h["evaluations"] for h in state["history"])
    mask_hits = sum(1 for r in state["cache"].values() if r.get("cached"))
    return {"candidates": candidates, "unique_formulas": len(state["cache"]), "evaluations": evaluations,
            "canonical_hit_rate": 1 - evaluations / candidates if candidates else 0.0,
            "mask_hash_hits": mask_hits}
