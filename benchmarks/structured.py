"""Structured pruning on the embedded model: 10 / 20 / 30 % of the decoder's parameters removed, physically.

Rows: magnitude and Wanda summed per unit (uniform widths, LLM-Pruner's equal ratio per structure), LLM-Pruner's
Taylor |W·G| (uniform), FLAP (fluctuation metric, per-layer widths by its standardised global ranking, bias
compensation), ShortGPT (drop the blocks of lowest influence), and Wanda summed per unit with FLAP-style per-layer
widths. Columns: wikitext2 test perplexity (16,384 tokens, 512-token windows), exact parameter counts, CPU forward
latency of a 1×512 input relative to the dense model. Every row comes from this one run; each method's scores are
computed once from the dense model and applied to a fresh copy of it at each ratio.

    python benchmarks/structured.py           # writes results/structured.md and results/structured.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import torch

from evoprune.data.perplexity import perplexity
from evoprune.data.protocol import PerplexitySpec, calib_windows, evaluation_windows, protocol_record
from evoprune.data.tokens import CalibSpec
from evoprune.jobs.structured import StructuredSpec, latency_ids, shrink_with_scores, unit_scores
from evoprune.model.loading import load_model
from evoprune.structured.measure import count_params, forward_latency
from evoprune.structured.shape import decoder_shape

RESULTS = Path(__file__).parent / "results"
# (row label, metric, structure, widths)
METHODS = [
    ("magnitude-group", "magnitude", "mlp,heads", "uniform"),
    ("Wanda-group", "wanda", "mlp,heads", "uniform"),
    ("LLM-Pruner Taylor", "taylor", "mlp,heads", "uniform"),
    ("FLAP", "flap", "mlp,heads", "per-layer"),
    ("ShortGPT", "shortgpt", "blocks", "uniform"),
    ("Wanda-group, per-layer widths", "wanda", "mlp,heads", "per-layer"),
]
RATIOS = (0.1, 0.2, 0.3)


def measure(model: torch.nn.Module, eval_ids: torch.Tensor, lat_ids: torch.Tensor, repeats: int) -> dict:
    start = time.perf_counter()
    ppl = perplexity(model, eval_ids)
    return {"perplexity": ppl, "eval_seconds": time.perf_counter() - start, "params": count_params(model),
            "latency_s": forward_latency(model, lat_ids, repeats)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-eval-tokens", type=int, default=16384)
    parser.add_argument("--latency-repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("EVOPRUNE_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    torch.set_num_threads(args.threads)
    loaded = load_model("smollm2-135m", "cpu", "float32")
    calib, evaluation = CalibSpec("wikitext2", 32, 256, 0), PerplexitySpec("wikitext2", 512, args.max_eval_tokens)
    windows, eval_ids, lat_ids = calib_windows(loaded, calib), evaluation_windows(loaded, evaluation), latency_ids(
        loaded)
    shape = decoder_shape(loaded.model.config)
    dense = {"method": "dense", "ratio": 0.0, **measure(loaded.model, eval_ids, lat_ids, args.latency_repeats)}
    print(f"dense ppl {dense['perplexity']:.2f}", flush=True)
    rows = []
    for label, metric, structure, widths in METHODS:
        start = time.perf_counter()
        scores, calibration = unit_scores(loaded, shape, metric, calib, windows)
        score_seconds = time.perf_counter() - start
        for ratio in RATIOS:
            spec = StructuredSpec(structure, ratio, metric, widths)
            model = copy.deepcopy(loaded.model)
            selection = shrink_with_scores(model, spec, scores, calibration)
            row = {"method": label, "metric": metric, "structure": structure, "widths": widths, "ratio": ratio,
                   "score_seconds": score_seconds, "uniform": selection.uniform(),
                   **measure(model, eval_ids, lat_ids, args.latency_repeats)}
            row["removed_decoder"] = dense["params"]["decoder"] - row["params"]["decoder"]
            rows.append(row)
            print(f"{label:<32} {ratio:.1f} ppl {row['perplexity']:9.2f} decoder {row['params']['decoder']:,} "
                  f"latency {row['latency_s'] / dense['latency_s']:.2f}", flush=True)
            del model
    dense["latency_end_s"] = forward_latency(loaded.model, lat_ids, args.latency_repeats)  # drift check
    write(dense, rows, protocol_record(loaded, calib, evaluation), args)


def write(dense: dict, rows: list[dict], protocol: dict, args: argparse.Namespace) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "structured.json").write_text(json.dumps({"protocol": protocol, "dense": dense, "rows": rows},
                                                        indent=2) + "\n")
    lines = [
        "# Structured pruning on the embedded model (SmolLM2-135M, 4-bit weights dequantised to fp32)", "",
        f"`python benchmarks/structured.py` — one run, {args.threads} CPU threads. Perplexity: wikitext2 test, "
        f"{protocol['evaluation']['max_tokens']:,} tokens in 512-token windows. Calibration: 32 × 256 tokens of "
        "wikitext2 validation, seed 0. Ratio = fraction of the decoder's parameters removed (target); "
        "'removed' is the exact count (FLAP's compensation biases are counted in the decoder). Latency: median "
        f"of {args.latency_repeats} forward passes of 1×512 tokens after a warm-up, relative to the dense model "
        f"(dense {dense['latency_s']:.3f} s at the start of the run, {dense['latency_end_s']:.3f} s at its end).",
        "", f"Dense: perplexity {dense['perplexity']:.2f}, {dense['params']['total']:,} parameters "
        f"({dense['params']['decoder']:,} in the decoder).", "",
        "| method | widths | ratio | perplexity | decoder params | removed | removed % | total params | "
        "latency vs dense |", "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["ratio"], r["perplexity"])):
        lines.append(f"| {r['method']} | {r['structure']} {r['widths']} | {r['ratio']:.1f} | "
                     f"{r['perplexity']:.2f} | {r['params']['decoder']:,} | {r['removed_decoder']:,} | "
                     f"{100 * r['removed_decoder'] / dense['params']['decoder']:.2f} | {r['params']['total']:,} | "
                     f"{r['latency_s'] / dense['latency_s']:.2f} |")
    (RESULTS / "structured.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
