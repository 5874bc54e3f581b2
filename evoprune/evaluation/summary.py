"""Human-readable lines for a zero-shot result (`harness.run_tasks`): group means first, then single tasks."""

from __future__ import annotations

# Past this many sets a group prints only its mean; every set is in the JSON.
_MAX_LISTED = 8


def summary_lines(result: dict) -> list[str]:
    limit = result.get("limit")
    per = f"first {limit} examples per task" if limit else "all examples"
    lines = [f"zero-shot (lm-eval {result.get('lm_eval_version', '?')}, 0-shot, {per}, "
             f"{result.get('seconds', 0.0):.1f}s):"]
    for name, mean in result["groups"].items():
        if "acc" in mean:
            lines.append(f"  {name:<40} acc {mean['acc']:.4f} ± {mean['acc_stderr']:.4f}  "
                         f"(mean of {mean['sets']} sets, {mean['examples']} examples)")
    grouped = len(result["groups"]) > 0
    listed = result["results"] if not grouped or len(result["results"]) <= _MAX_LISTED else {}
    for name, metrics in listed.items():
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if not k.endswith("stderr") and k != "examples")
        lines.append(f"  {name:<40} {shown}  ({metrics.get('examples', 0)} examples)")
    return lines
