"""Discovery: does a recipe search beat the best hand-made recipe under the same protocol?

For each track (`metric-only`: no weight update, against Wanda, RIA, Wanda+OWL; `reconstruct`: the OBS update on,
against Wanda+OBS and SparseGPT) and each setting (50 %, 70 % unstructured, 2:4), one search with the track's
preset (`search_spaces/<track>.yaml`, the setting as its only fitness setting; no allocation gene under 2:4, where
the pattern fixes every layer). The search's own final table re-scores its best recipes and the hand-made ones
with the sequential protocol (32 x 256 wikitext2 validation tokens, seed 0; perplexity on the first 16,384
wikitext2 test tokens). Rows go to results/discovery.rows.jsonl as soon as a search ends (`--resume` keeps them),
the table to results/discovery.md, with the goals of issue 10 and the margin by which each is met or missed.

    python benchmarks/discovery.py                                   # every track and setting (hours on a CPU)
    python benchmarks/discovery.py --tracks reconstruct --settings 50% --set generations=6
    python benchmarks/discovery.py --resume --tag seeded --set seed_baselines=true --settings 70%   # a variant
    python benchmarks/discovery.py --transfer runs/discovery/metric-only-50   # best recipe, tinystories calib
    # the reconstruct rows guided by the model fitness (the ones that beat SparseGPT), ~14 min each on 2 CPU cores;
    # their overrides column lists what reconstruct.yaml now holds (they were run before the preset took it):
    python benchmarks/discovery.py --resume --tracks reconstruct --settings 50% 70% --tag model-seeded
    # 2:4 with the exact re-solve of the kept weights (~41 min; its table adds SparseGPT's mask re-solved):
    python benchmarks/discovery.py --resume --tracks reconstruct --settings 2:4 --tag resolve-seeded \
        --set population=16 --set generations=5 --set rescore_top=1 --set reselect_top=0 \
        --set seed_baselines=true --set evaluation.fitness=model --set evaluation.fitness_rows=1 \
        --set 'update_choices=["obs:resolve=20","sweep:groups=4,resolve=20"]'
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from thread_noise import evolved_vs_rival, short, threads_text  # noqa: E402  (one comparison for both reports)

ROWS = RESULTS / "discovery.rows.jsonl"
RUNS = Path("runs/discovery")
SETTINGS = {"50%": ([0.5], ["unstructured"]), "70%": ([0.7], ["unstructured"]), "2:4": ([0.5], ["2:4"])}
# What each track is measured against (the hand-made rows its final table re-scores) and issue 10's goals.
HAND_MADE = {"metric-only": {"50%": ["wanda", "wanda+owl", "wanda+swaps"], "70%": ["wanda", "wanda+owl", "wanda+swaps"],
                             "2:4": ["wanda", "wanda+swaps"]},
             "reconstruct": {"50%": ["wanda+obs", "sparsegpt"], "70%": ["wanda+obs", "sparsegpt"],
                             "2:4": ["wanda+obs", "sparsegpt"]}}
GOALS = {("metric-only", "50%"): ("<=", 57.7, "Wanda 60.77 - 5 %"),
         ("metric-only", "2:4"): ("<=", 150.0, "Wanda 170.1"),
         ("metric-only", "70%"): ("<", "wanda+owl", "below Wanda+OWL"),
         ("reconstruct", "50%"): ("<", 52.26, "below SparseGPT 52.26"),
         ("reconstruct", "2:4"): ("<", 85.9, "below SparseGPT 85.9"),
         ("reconstruct", "70%"): ("<", "sparsegpt", "below SparseGPT")}


def track_config(track: str, setting: str, overrides: dict):
    from evoprune.search.config import load_config, with_overrides

    sparsities, patterns = SETTINGS[setting]
    structured = patterns != ["unstructured"]
    changes = {"evaluation": {"sparsities": sparsities, "patterns": patterns}, "rescore_mode": "sequential",
               "baselines": HAND_MADE[track][setting]}
    if structured:
        changes["allocation_tree"] = False
    config = with_overrides(load_config(f"search_spaces/{track}.yaml"), changes)
    return with_overrides(config, overrides)


def run_one(track: str, setting: str, overrides: dict, tag: str = "") -> dict:
    from evoprune.jobs.search import search_job

    config = track_config(track, setting, overrides)
    out = RUNS / (f"{track}-{setting.replace('%', '').replace(':', 'of')}" + (f"-{tag}" if tag else ""))
    start = time.perf_counter()
    payload = search_job(config, out, force=True)
    wall = time.perf_counter() - start
    measured = [r for r in payload["best"] if r["perplexity"] is not None]
    best = min(measured, key=lambda r: r["perplexity"], default=None)
    hand = [r for r in payload["baselines"] if r["perplexity"] is not None]
    top_hand = min(hand, key=lambda r: r["perplexity"], default=None)
    search_seconds = sum(h["seconds"] for h in payload["history"])
    return {"track": track, "setting": setting, "tag": tag, "run": str(out), "config_overrides": overrides,
            "evolved": None if best is None else {"recipe": best["recipe"], "text": best["text"],
                                                  "perplexity": best["perplexity"], "fitness": best["fitness"]},
            "hand_made": {r["method"]: r["perplexity"] for r in payload["baselines"]},
            "best_hand_made": None if top_hand is None else top_hand["method"],
            "search_seconds": search_seconds, "wall_seconds": wall,
            "candidates": payload["cache"]["candidates"], "evaluated": payload["cache"]["evaluations"]}


def goal_text(row: dict) -> str:
    op, bound, name = GOALS[(row["track"], row["setting"])]
    if row["evolved"] is None:
        return f"{name}: no evolved recipe was measured"
    value = row["evolved"]["perplexity"]
    if isinstance(bound, str):
        if row["hand_made"].get(bound) is None:
            return f"{name}: {bound} not measured"
        bound = row["hand_made"][bound]
    met = value <= bound if op == "<=" else value < bound
    text = f"{name} ({op} {bound:.2f}): {'met' if met else 'missed'} by {abs(value - bound) / bound:.1%}"
    hand = row["best_hand_made"]
    if hand is not None:  # the point: the evolved recipe against the best hand-made one of its track
        best = row["hand_made"][hand]
        if abs(value - best) < 5e-3:  # the search handed back the hand-made recipe (a seed) itself
            text += f"; the same perplexity as {hand}"
        else:
            text += f"; {'below' if value < best else 'above'} {hand} by {abs(value - best) / best:.1%}"
    return text


def thread_noise() -> list[str]:
    """The same reconstruct prunes at 1 and 2 torch threads (results/thread_noise.md), when measured."""
    path = RESULTS / "thread_noise.rows.jsonl"
    if not path.is_file():
        return []
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    cells = [f"{short(r['method'])} {r['pattern']} {r['perplexity']:.2f} ({threads_text(r['threads'])})"
             for r in rows]
    verdicts = []
    for rival, evolved, pattern, ratios in evolved_vs_rival(rows):
        wins = {ratio < 1 for ratio in ratios.values()}
        where = "50 % unstructured" if pattern == "unstructured" else pattern
        name = "SparseGPT" if rival == "sparsegpt" else f"`{short(rival)}`"
        verdicts.append(f"{'At' if not verdicts else 'at'} {where} the evolved `{short(evolved)}` " + (
            f"and {name} swap places between thread counts: a tie within rounding noise, whichever way the "
            "table's single measurement falls" if len(wins) > 1 else
            f"is {'ahead of' if wins == {True} else 'behind'} {name} at every thread count"))
    return ["", "The thread count alone (summation order) moves the same prunes ([thread_noise.md](thread_noise.md)): "
            + ", ".join(cells) + ". " + "; ".join(verdicts) + "."]


def report(rows: list[dict], transfer: list[dict]) -> str:
    lines = ["# Discovery: evolved recipes against the best hand-made ones", "",
             "Produced by `python benchmarks/discovery.py`. SmolLM2-135M-Instruct (embedded), sequential protocol "
             "for every perplexity (32 x 256 wikitext2 validation tokens for calibration, first 16,384 wikitext2 "
             "test tokens, 512-token windows). Each row is one search with `search_spaces/<track>.yaml` at one "
             "setting (overrides listed); the search's fitness is the preset's `fisher` reconstruction error (layer "
             "errors weighted by the loss's output sensitivities) unless the overrides set `evaluation.fitness: "
             "model` (KL to the dense model on 8 calibration windows, every row pruned: slower, but it ranks "
             "allocations as perplexity does), the perplexities are its final table's sequential re-scoring.", "",
             "Noise floor of the reconstruct track: SparseGPT's perplexity moves with float rounding alone. Its "
             "saliency inside the sweep (`W**2/Hinv + sweep`, the same masks layer by layer) gives 52.16 / 52.83 / "
             "53.18 at 50 % with triangular solves over 16 / 32 / 128 columns, against 52.22 for SparseGPT's column "
             "loop: a rounding difference flips a near-tie in one block, the sweep carries it forward, and later "
             "blocks see other inputs. Differences of ~1 % on this track are not findings.", *thread_noise(), "",
             "| track | setting | best hand-made | its ppl | best evolved recipe | its ppl | goal | search s | "
             "wall s | candidates / evaluated | overrides |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        hand, evolved = row["best_hand_made"], row["evolved"]
        hand_cells = f"{hand} | {row['hand_made'][hand]:.2f}" if hand else "- | -"
        evolved_cells = f"`{evolved['text']}` | {evolved['perplexity']:.2f}" if evolved else "- | -"
        setting = row["setting"] + (f" ({row['tag']})" if row.get("tag") else "")
        lines.append(f"| {row['track']} | {setting} | {hand_cells} | {evolved_cells} | {goal_text(row)} | "
                     f"{row['search_seconds']:.0f} | {row['wall_seconds']:.0f} | {row['candidates']} / "
                     f"{row['evaluated']} | {json.dumps(row['config_overrides'])} |")
    if rows:
        lines += ["", "All hand-made rows of each search's table:", ""]
        for r in rows:
            tag = f" ({r['tag']})" if r.get("tag") else ""
            lines.append(f"- {r['track']} {r['setting']}{tag}: " + ", ".join(
                f"{k} {v:.2f}" if v is not None else f"{k} failed" for k, v in r["hand_made"].items()))
    transfer = list({(t["label"], t["calib"], t["eval"]): t for t in transfer}.values())  # a rerun replaces a row
    if transfer:
        lines += ["", "## Transfer: the best recipe, unchanged, calibrated and evaluated on other texts", "",
                  "Sequential protocol, 32 x 256 calibration tokens of the named text (validation split), 16,384 "
                  "evaluation tokens (wikitext2: test split; tinystories: its one split, so only with another "
                  "calibration text).", "",
                  "| run | recipe | calibration | evaluated on | perplexity |", "|---|---|---|---|---|"]
        lines += [f"| {t['run']} | `{t['label']}` | {t['calib']} | {t['eval']} | {t['perplexity']:.2f} |"
                  for t in sorted(transfer, key=lambda t: (t["run"], t["calib"], t["eval"]))]
    return "\n".join(lines) + "\n"


def transfer_rows(run: Path, calib: str, evaluate_on: str = "wikitext2") -> list[dict]:
    """The run's best recipe and its track's hand-made rivals (Wanda; with an update Wanda+OBS and SparseGPT), each
    pruned sequentially with `calib` calibration; perplexity on `evaluate_on` (its evaluation split: wikitext2 test,
    or a text with one split, e.g. tinystories valid — then calibrate on another text)."""
    from evoprune.data.perplexity import perplexity
    from evoprune.data.protocol import PerplexitySpec, evaluation_windows
    from evoprune.data.tokens import CalibSpec
    from evoprune.jobs.prune import PruneSpec, prune_loaded, resolve_method, snapshot
    from evoprune.model.loading import load_model
    from evoprune.prune.recipe import Recipe
    from evoprune.search.run_dir import read_best, read_config

    best = read_best(run)["best"][0]
    setting = read_config(run)["evaluation"]
    sparsity, pattern = setting["sparsities"][0], setting["patterns"][0]
    loaded = load_model("smollm2-135m", "cpu", "float32")
    dense = snapshot(loaded.model)
    windows = evaluation_windows(loaded, PerplexitySpec(evaluate_on, 512, 16384))
    rows = []
    evolved = Recipe.from_dict(best["recipe"])
    if evolved.update.name == "none":
        rivals = [("wanda", Recipe.parse("wanda"))]
    else:  # the reconstruct track's hand-made rivals: Wanda's mask + the OBS update, and SparseGPT
        rivals = [("wanda+obs", Recipe.parse("wanda", update="obs")), ("sparsegpt", Recipe.parse("sparsegpt"))]
    for label, recipe in (*rivals, (best["text"], evolved)):
        spec = PruneSpec(recipe.score, None if pattern != "unstructured" else sparsity, pattern, "row",
                         "sequential", str(recipe.allocation), str(recipe.refine), str(recipe.update))
        loaded.model.load_state_dict(dense)
        prune_loaded(loaded, resolve_method(recipe.score, 256), spec, CalibSpec(calib, 32, 256, 0))
        rows.append({"label": label, "calib": calib, "eval": evaluate_on, "run": str(run),
                     "perplexity": perplexity(loaded.model, windows)})
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", nargs="*", default=list(HAND_MADE))
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS))
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE for every search")
    parser.add_argument("--resume", action="store_true", help="keep rows already in discovery.rows.jsonl")
    parser.add_argument("--tag", default="", help="a variant (e.g. seeded): its own run directory and table row")
    parser.add_argument("--transfer", type=Path, default=None, help="a finished run: transfer check only")
    parser.add_argument("--transfer-calib", default="tinystories")
    parser.add_argument("--transfer-eval", default="wikitext2", help="the text the transfer check evaluates on")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("EVOPRUNE_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    from evoprune.search.config import parse_overrides

    RESULTS.mkdir(exist_ok=True)
    keep = args.resume or args.report_only or args.transfer is not None
    rows = [json.loads(x) for x in ROWS.read_text().splitlines()] if keep and ROWS.is_file() else []
    if not keep:
        ROWS.write_text("")
    if args.transfer is not None:
        if args.transfer_eval == args.transfer_calib and args.transfer_calib != "wikitext2":
            parser.error("calibrate and evaluate on different texts (tinystories has one split)")
        for row in transfer_rows(args.transfer, args.transfer_calib, args.transfer_eval):
            rows.append({"transfer": row})
            with ROWS.open("a") as fh:
                fh.write(json.dumps({"transfer": row}) + "\n")
    elif not args.report_only:
        overrides = parse_overrides(args.overrides)
        done = {(r["track"], r["setting"], r.get("tag", "")) for r in rows if "track" in r}
        for track in args.tracks:
            for setting in args.settings:
                if (track, setting, args.tag) in done:
                    continue
                row = run_one(track, setting, overrides, args.tag)
                rows.append(row)
                with ROWS.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
                print(f"{track} {setting}: {goal_text(row)}", flush=True)
    text = report([r for r in rows if "track" in r], [r["transfer"] for r in rows if "transfer" in r])
    (RESULTS / "discovery.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
