"""The model card (`README.md`) of a pruned model directory: recipe, sparsity per layer, protocol, perplexity.

Built only from the directory's report.json (plus an optional evaluation), so the card never states a number the
report does not hold.
"""

from __future__ import annotations

import json
from pathlib import Path


def _recipe_lines(report: dict) -> list[str]:
    spec = report.get("prune", {})
    lines = [f"- metric: `{spec.get('metric', '?')}`", f"- pattern: `{spec.get('pattern', '?')}`"]
    if spec.get("sparsity") is not None:
        lines.append(f"- target sparsity: {spec['sparsity']}")
    for key in ("group", "mode", "allocation", "refine", "update"):
        if spec.get(key) is not None:
            lines.append(f"- {key}: `{spec[key]}`")
    return lines


def _protocol_lines(protocol: dict) -> list[str]:
    lines = [f"- base model: `{protocol.get('model', '?')}`",
             f"- device / dtype: {protocol.get('device', '?')} / {protocol.get('dtype', '?')}",
             f"- ties: {protocol.get('tie_rule', '?')}"]
    calib = protocol.get("calibration")
    if calib:
        lines.append(f"- calibration: {calib.get('nsamples')} x {calib.get('seqlen')} tokens of "
                     f"`{calib.get('data')}` ({calib.get('source', calib.get('split'))}), seed {calib.get('seed')}")
    return lines


def _evaluation_lines(evaluation: dict | None) -> list[str]:
    if not evaluation or "perplexity" not in evaluation:
        return ["Not measured at prune time. Measure it with `evoprune eval --model <this directory>` "
                "(add `--tasks blimp` for zero-shot accuracy)."]
    spec = evaluation.get("protocol", {}).get("evaluation", {})
    lines = [f"- perplexity: **{evaluation['perplexity']:.3f}** on {evaluation.get('tokens', '?')} tokens of "
             f"`{spec.get('data', '?')}` ({spec.get('source', 'test split')}), {spec.get('seqlen', '?')}-token "
             "windows"]
    groups = evaluation.get("zeroshot", {}).get("groups", {})
    for name, mean in groups.items():
        if "acc" in mean:
            lines.append(f"- {name} zero-shot accuracy: {mean['acc']:.4f} ± {mean['acc_stderr']:.4f} "
                         f"({mean['examples']} examples over {mean['sets']} sets)")
    return lines


def model_card(report: dict, save_format: str = "safetensors", evaluation: dict | None = None) -> str:
    protocol = report.get("protocol", {})
    sparsity = report.get("sparsity", {})
    spec = report.get("prune", {})
    if save_format == "compressed-tensors":
        loading = ("Weights are stored in the compressed-tensors sparse layout (see `quantization_config` in "
                   "config.json): non-zero values plus a bitmask per prunable Linear layer. "
                   "evoprune reads it back dense (`evoprune eval --model <this directory>`, "
                   "`evoprune.model.sparse_layout.load_decompressed`); compressed-tensors 0.15+ no longer "
                   "decompresses sparsity, so plain transformers does not.")
    else:
        loading = ("Dense safetensors with exact zeros: `AutoModelForCausalLM.from_pretrained(<this directory>)` "
                   "loads it with plain transformers.")
    lines = [f"# {Path(str(protocol.get('model', 'model'))).name} pruned with evoprune "
             f"({spec.get('metric', '?')}, {spec.get('pattern', '?')})", "",
             f"Pruned by evoprune from `{protocol.get('model', '?')}`: overall sparsity "
             f"**{sparsity.get('overall', float('nan')):.4f}** over the prunable Linear layers of the decoder "
             "blocks (embeddings and lm_head are never pruned).", "",
             "## Recipe", "", *_recipe_lines(report), "",
             "## Protocol", "", *_protocol_lines(protocol), "",
             "## Perplexity", "", *_evaluation_lines(evaluation or report.get("evaluation")), "",
             "## Format", "", loading, "",
             "## Sparsity per layer", "", "| layer | shape | pruned | total | sparsity |", "|---|---|---|---|---|"]
    for layer in sparsity.get("layers", []):
        shape = "x".join(str(x) for x in layer.get("shape", []))
        lines.append(f"| {layer['layer']} | {shape} | {layer['pruned']} | {layer['total']} | "
                     f"{layer['sparsity']:.4f} |")
    lines += ["", "Full record: `report.json` in this directory."]
    return "\n".join(lines) + "\n"


def write_model_card(out: Path, save_format: str = "safetensors", evaluation: dict | None = None) -> Path:
    report = json.loads((out / "report.json").read_text())
    path = out / "README.md"
    path.write_text(model_card(report, save_format, evaluation))
    return path
