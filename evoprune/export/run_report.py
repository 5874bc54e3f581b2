"""`evoprune report`: report.md beside the PNGs of plots.py, for a finished run or one still going (then from the
checkpoint: what exists is shown, and the report says what is still missing)."""

from __future__ import annotations

import math
from pathlib import Path

from evoprune.export.plots import write_plots
from evoprune.export.provenance import FITNESS_MEANING
from evoprune.export.run_view import RunView, display_text

REPORT_MD = "report.md"
TOP = 10


def _num(value) -> str:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return "-"
    return f"{value:.6g}" if abs(value) < 1e6 else f"{value:.4g}"


def _code(text: str) -> str:
    """A formula inside a Markdown table cell: in backticks, with the table's `|` escaped (|W| would split it)."""
    return "`" + str(text).replace("|", "\\|") + "`"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
            *("| " + " | ".join(row) + " |" for row in rows)]


def _summary(run: RunView) -> str:
    history = run.history
    candidates = sum(h.get("candidates", 0) for h in history)
    evaluations = sum(h.get("evaluations", 0) for h in history)
    failures = sum(h.get("failures", 0) for h in history)
    evaluation = run.config.get("evaluation", {}) or {}
    settings = ", ".join(f"{s:g}" for s in evaluation.get("sparsities", [])) or "-"
    return (f"**{run.status}** · {run.generations_done}/{run.generations_total or '?'} generations · {candidates} "
            f"candidates ({evaluations} evaluated, {failures} failed) · model `{evaluation.get('model')}` · fitness "
            f"`{evaluation.get('fitness')}` ({FITNESS_MEANING.get(evaluation.get('fitness'), '?')}) at sparsity "
            f"{settings}, patterns {', '.join(evaluation.get('patterns', []))} · population "
            f"{run.config.get('population')}, seed {run.config.get('seed')}")


def _protocol_lines(run: RunView) -> list[str]:
    evaluation, protocol = run.config.get("evaluation", {}) or {}, run.protocol
    calib = protocol.get("calibration") or {"data": evaluation.get("calib"), "split": "calib",
                                            **{k: evaluation.get(k) for k in ("nsamples", "seqlen", "seed")}}
    lines = [f"- model: `{protocol.get('model', evaluation.get('model'))}`"
             + (f" ({protocol['dtype']} on {protocol.get('device')}, {protocol.get('torch_threads')} threads)"
                if "dtype" in protocol else ""),
             f"- calibration: {calib.get('data')} ({calib.get('split')} split), {calib.get('nsamples')} windows x "
             f"{calib.get('seqlen')} tokens, seed {calib.get('seed')}; dense statistics",
             f"- fitness: {evaluation.get('fitness')}, {evaluation.get('group', 'row')} groups",
             f"- perplexity: {evaluation.get('eval_data')} (eval split), {evaluation.get('eval_seqlen')}-token "
             f"windows, first {evaluation.get('eval_max_tokens')} tokens"]
    if protocol.get("tie_rule"):
        lines.append(f"- ties: {protocol['tie_rule']}")
    cache = (run.best_payload or {}).get("cache") if run.finished else None
    if cache:
        lines.append(f"- caches: {cache.get('unique_formulas')} distinct formulas; canonical-cache hit rate "
                     f"{cache.get('canonical_hit_rate', 0):.0%}, mask-hash hit rate "
                     f"{cache.get('mask_hash_hit_rate', 0):.0%}")
    return lines


def _figure(figures: dict[str, Path | None], key: str, alt: str) -> list[str]:
    return [f"![{alt}]({figures[key].name})", ""] if figures.get(key) else []


def _history_section(run: RunView, figures: dict[str, Path | None]) -> list[str]:
    lines = ["## Fitness per generation", "", *_figure(figures, "fitness", "best and median fitness per generation")]
    if not run.history:
        return lines + ["No generation has finished yet."]
    return lines + _table(["generation", "best", "median", "candidates", "evaluated", "failures", "seconds"],
                          [[str(h.get("generation")), _num(h.get("best")), _num(h.get("median")),
                            str(h.get("candidates")), str(h.get("evaluations")), str(h.get("failures")),
                            _num(h.get("seconds"))] for h in run.history])


def _best_section(run: RunView) -> list[str]:
    lines = ["## Best formulas", ""]
    if not run.best_rows:
        return lines + ["No formula with a finite fitness yet."]
    lines += _table(["#", "formula", "fitness", "size", "prune s", "perplexity"],
                    [[str(i + 1), _code(r.get("text") or display_text(r["canonical"])), _num(r.get("fitness")),
                      str(r.get("size")), _num(r.get("prune_seconds")), _num(r.get("perplexity"))]
                     for i, r in enumerate(run.best_rows[:TOP])])
    return lines + ["", f"Export one: `evoprune export {run.path} --rank 1 --out metric.py` (or `--format json`, "
                        "`--format latex`)."]


def _perplexity_section(run: RunView, figures: dict[str, Path | None]) -> list[str]:
    lines = ["## Perplexity of the best formulas beside the baselines", "",
             *_figure(figures, "perplexity", "perplexity of the best formulas and the baselines")]
    if not run.baselines:
        return lines + ["No perplexity measured yet (the search re-scores its best formulas and the baselines at "
                        "the end)."]
    return lines + _table(["baseline", "formula", "perplexity"],
                          [[b["method"], _code(_baseline_text(b.get("formula", ""))), _num(b.get("perplexity"))]
                           for b in run.baselines])


def _baseline_text(formula: str) -> str:
    """A built-in's formula as written; a hand-made recipe (JSON) as one line of its stages."""
    return display_text(formula) if formula.lstrip().startswith("{") else formula


def _pareto_section(run: RunView, figures: dict[str, Path | None]) -> list[str]:
    lines = ["## Pareto front: fitness vs formula size", "", *_figure(figures, "pareto", "fitness vs size")]
    if not run.pareto:
        return lines + ["No formula with a finite fitness yet."]
    return lines + _table(["size", "fitness", "formula"],
                          [[str(p.get("size")), _num(p.get("fitness")), _code(display_text(p.get("canonical", "")))]
                           for p in run.pareto])


def _seconds_section(run: RunView) -> list[str]:
    """Fitness against the time a recipe takes to prune (only where that front has a trade-off to show)."""
    front = (run.best_payload or {}).get("pareto_seconds") or []
    if len(front) < 2:
        return []
    return ["## Pareto front: fitness vs pruning seconds", "",
            *_table(["prune s", "fitness", "recipe"],
                    [[_num(p.get("prune_seconds")), _num(p.get("fitness")), _code(display_text(p.get("canonical", "")))]
                     for p in front])]


def report_markdown(run: RunView, figures: dict[str, Path | None]) -> str:
    lines = [f"# evoprune run `{run.path.name}`", "", _summary(run), ""]
    if not run.finished:
        lines += ["> This run has no final best.json yet: the tables come from its last checkpoint, and perplexities "
                  "are measured when it finishes. Run `evoprune report` again then.", ""]
    for section in (_history_section(run, figures), _best_section(run), _perplexity_section(run, figures),
                    _pareto_section(run, figures), _seconds_section(run), ["## Protocol", "", *_protocol_lines(run)]):
        if section:
            lines += [*section, ""]
    return "\n".join(lines)


def write_report(run_path: Path, out: Path | None = None) -> tuple[Path, dict[str, Path | None]]:
    """report.md and the PNGs into `out` (default: the run directory). Only these files are (re)written."""
    run = RunView.open(run_path)
    out = Path(out) if out is not None else run.path
    figures = write_plots(run, out)
    path = out / REPORT_MD
    path.write_text(report_markdown(run, figures), encoding="utf-8")
    return path, figures
