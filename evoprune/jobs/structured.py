"""`evoprune prune --structure ...`: score units, choose widths under an exact parameter budget, shrink the model,
save it, and report parameters, CPU forward latency (dense and shrunk, same run) and reload parity."""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from evoprune.data.protocol import calib_windows, protocol_record
from evoprune.data.tokens import CalibSpec
from evoprune.errors import EvopruneError
from evoprune.model.loading import LoadedModel, model_path
from evoprune.paths import claim_output_dir
from evoprune.structured.allocate import UnitScores
from evoprune.structured.budget import feasible_slopes, max_depth
from evoprune.structured.calibration import Calibration, calibrate
from evoprune.structured.measure import count_params, forward_latency, generation_latency
from evoprune.structured.recover import RecoverySpec, lora_recover, recovery_windows
from evoprune.structured.save import reload_max_abs_diff, save_shrunk, write_report
from evoprune.structured.scores import flap_scores, shortgpt_scores, summed_scores
from evoprune.structured.selection import Selection
from evoprune.structured.shape import DecoderShape, parse_structures
from evoprune.structured.spec import StructuredSpec, shrink_with_scores
from evoprune.structured.taylor import taylor_scores

STRUCTURED_ONLY = ("taylor", "flap", "shortgpt")  # besides these, any per-weight metric is summed over units
LATENCY_TOKENS = 512
GENERATION_PROMPT, GENERATION_TOKENS = 64, 16


def check_structured(model: str, spec: StructuredSpec, seqlen: int) -> None:
    """CLI pre-flight: the metric resolves and the model's config admits the structure, ratio and widths."""
    from transformers import AutoConfig

    if spec.metric not in STRUCTURED_ONLY:
        _weight_method(spec.metric, seqlen)
    try:
        config = AutoConfig.from_pretrained(model_path(model))
    except (OSError, ValueError) as exc:
        raise EvopruneError(f"cannot read the config of {model!r}: {str(exc).splitlines()[0]}") from exc
    spec.check(config)


def _weight_method(metric: str, seqlen: int):
    from evoprune.jobs.prune import resolve_method

    method = resolve_method(metric, seqlen)
    if method.scorer is None:
        raise EvopruneError(f"--metric {metric} updates weights and has no per-weight score to sum over units")
    return method


def _summed(loaded: LoadedModel, shape: DecoderShape, metric: str, calib: CalibSpec,
            windows: torch.Tensor, aggregate: str = "sum") -> tuple[UnitScores, Calibration | None]:
    """Per-weight scores aggregated over units, and the calibration pass when one was needed (a W/X metric), so that
    a caller needing it too (block influence for `--depth`) does not run it again."""
    method = _weight_method(metric, calib.seqlen)
    leaves_needed = set(method.leaves)
    calibration = None
    if leaves_needed <= {"W"}:
        stats = None
    elif leaves_needed <= {"W", "X"}:
        calibration = calibrate(loaded.model, windows)
        stats = {key: {"X": m.rms().unsqueeze(0)} for key, m in calibration.moments.items()}
    else:  # G or Hinv: the project's cached dense statistics hold them with their contract definitions
        from evoprune.stats.cache import cached_dense_stats

        dense = cached_dense_stats(loaded.model, windows, calib, with_grad="G" in leaves_needed)
        stats = {key: {name: (getattr(st, name) if name == "G" else getattr(st, name).unsqueeze(0))
                       for name in leaves_needed - {"W"}} for key, st in dense.items()}

    def weight_score(i: int, name: str, lin: torch.nn.Linear) -> torch.Tensor:
        w = lin.weight.detach().float()
        extra = {} if stats is None else {k: v.to(w.device).float() for k, v in stats[f"{i}.{name}"].items()}
        return method.scorer({"W": w, **extra})

    return summed_scores(loaded.model, shape, weight_score, aggregate), calibration


def unit_scores(loaded: LoadedModel, shape: DecoderShape, metric: str, calib: CalibSpec,
                windows: torch.Tensor, aggregate: str = "sum") -> tuple[UnitScores, Calibration | None]:
    """The units' scores by `metric`; a per-weight one (Taylor's included) aggregated by `aggregate`."""
    if metric in ("flap", "shortgpt"):
        calibration = calibrate(loaded.model, windows)
        scores = flap_scores(loaded.model, shape, calibration) if metric == "flap" else shortgpt_scores(calibration)
        return scores, calibration
    if metric == "taylor":
        taylor = taylor_scores(loaded.model, windows)
        return summed_scores(loaded.model, shape, lambda i, name, _lin: taylor[f"{i}.{name}"], aggregate), None
    return _summed(loaded, shape, metric, calib, windows, aggregate)


def prune_structured(loaded: LoadedModel, spec: StructuredSpec, calib: CalibSpec,
                     record: dict | None = None) -> Selection:
    """Score, allocate and shrink `loaded.model` in place; FLAP compensates the removed channels with biases.
    With `depth`, blocks are ranked by ShortGPT's influence; `depth=None` is chosen on validation windows first."""
    shape, _ = spec.check(loaded.model.config)
    windows = calib_windows(loaded, calib) if spec.metric != "magnitude" or spec.depth != 0 else None
    scores, calibration = unit_scores(loaded, shape, spec.metric, calib, windows, spec.aggregate)
    if spec.depth != 0:
        calibration = calibration or calibrate(loaded.model, windows)
        scores = {**scores, "blocks": calibration.block_influence}
    if spec.depth is None:
        depth, tried = choose_depth(loaded, spec, scores, calibration, calib.data)
        spec = replace(spec, depth=depth)
        if record is not None:  # what the report shows: each depth's validation perplexity
            record["depth_search"] = {"chosen": depth, "validation_perplexity": tried,
                                      "windows": [DEPTH_WINDOWS, DEPTH_SEQLEN, DEPTH_SEED]}
    spec, searched = resolve_profile(loaded, spec, scores, calibration, calib.data)
    if record is not None:
        record.update(searched)
    return shrink_with_scores(loaded.model, spec, scores, calibration)


DEPTH_WINDOWS, DEPTH_SEQLEN, DEPTH_SEED = 8, 512, 1


def depth_validation_ids(loaded: LoadedModel, data: str) -> torch.Tensor:
    """Windows of the calibration text's validation split (never the test split) that judge `--depth auto`."""
    from evoprune.structured.pool import validation_windows

    return validation_windows(loaded.tokenizer, data, DEPTH_SEQLEN, DEPTH_WINDOWS, DEPTH_SEED)


def choose_depth(loaded: LoadedModel, spec: StructuredSpec, scores: UnitScores, calibration: Calibration | None,
                 data: str) -> tuple[int, dict[int, float]]:
    """Every depth from 0 to the most that leaves the widths a share, each applied to a copy of the dense model
    and scored by perplexity on validation windows; the lowest wins (ties: the shallower)."""
    shape, budget = spec.check(loaded.model.config)
    depths = range(max_depth(shape, budget) + 1)
    return _best_on_validation(loaded, {d: replace(spec, depth=d) for d in depths}, scores, calibration, data)


def choose_profile(loaded: LoadedModel, spec: StructuredSpec, scores: UnitScores, calibration: Calibration | None,
                   data: str) -> tuple[float, dict[float, float]]:
    """`--widths profile:auto`: every slope of `PROFILE_GRID` that meets the budget (0 is equal shares) applied to a
    copy of the dense model and scored by perplexity on validation windows; the lowest wins (ties: the first in the
    grid)."""
    shape, budget = spec.check(loaded.model.config)
    specs = {slope: replace(spec, widths=f"profile:{slope:g}")
             for slope in feasible_slopes(shape, parse_structures(spec.structure), budget)}
    return _best_on_validation(loaded, specs, scores, calibration, data)


def resolve_profile(loaded: LoadedModel, spec: StructuredSpec, scores: UnitScores, calibration: Calibration | None,
                    data: str) -> tuple[StructuredSpec, dict]:
    """`profile:auto` widths resolved to the chosen slope, with the report's `profile_search` record; any other
    widths as they are, with no record."""
    if spec.widths != "profile:auto":
        return spec, {}
    slope, tried = choose_profile(loaded, spec, scores, calibration, data)
    return replace(spec, widths=f"profile:{slope:g}"), {"profile_search": {
        "chosen": slope, "validation_perplexity": tried, "windows": [DEPTH_WINDOWS, DEPTH_SEQLEN, DEPTH_SEED]}}


def _best_on_validation(loaded: LoadedModel, specs: dict, scores: UnitScores, calibration: Calibration | None,
                        data: str) -> tuple:
    """(the key of the spec whose shrunk copy has the lowest validation perplexity, every key's perplexity)."""
    import copy

    from evoprune.data.perplexity import perplexity

    ids = depth_validation_ids(loaded, data).to(next(loaded.model.parameters()).device)
    tried: dict = {}
    for key, candidate in specs.items():
        model = copy.deepcopy(loaded.model)
        shrink_with_scores(model, candidate, scores, calibration)
        tried[key] = perplexity(model, ids)
        del model
    return min(tried, key=tried.get), tried  # ties: the first in `specs`' order (min keeps the first)


def recover(loaded: LoadedModel, windows: tuple[torch.Tensor, torch.Tensor], recovery: RecoverySpec) -> dict:
    """LoRA recovery of the shrunk `loaded.model` in place (merged) on `windows` = (training, validation) from
    `recovery_windows`, with the perplexity before and after on the validation windows it was not trained on."""
    from evoprune.data.perplexity import perplexity

    train, validation = windows
    validation = validation.to(next(loaded.model.parameters()).device)
    before = perplexity(loaded.model, validation)
    loaded.model, record = lora_recover(loaded.model, train, recovery)
    return {**record, "validation_windows": list(validation.shape), "validation_perplexity_before": before,
            "validation_perplexity_after": perplexity(loaded.model, validation)}


def latency_ids(loaded: LoadedModel) -> torch.Tensor:
    """A fixed 1×512 input: latency depends on the shape, not on the token values."""
    vocab = loaded.model.config.vocab_size
    return (torch.arange(LATENCY_TOKENS) % vocab).unsqueeze(0).to(next(loaded.model.parameters()).device)


def structured_job(loaded: LoadedModel, spec: StructuredSpec, calib: CalibSpec, out: Path,
                   force: bool = False, recovery: RecoverySpec | None = None) -> dict:
    """Shrink (then, with `recovery.steps`, fine-tune LoRA adapters and merge them), save to `out` and return the
    report written to `out/report.json`."""
    shape, budget = spec.check(loaded.model.config)
    # a text too short for the recovery's windows fails here, before the output directory is claimed
    windows = recovery_windows(loaded.tokenizer, calib.data, recovery) if recovery and recovery.steps else None
    claim_output_dir(out, force)
    ids = latency_ids(loaded)
    dense_params, dense_latency = count_params(loaded.model), forward_latency(loaded.model, ids)
    prompt = ids[:, :GENERATION_PROMPT]
    dense_generation = generation_latency(loaded.model, prompt, GENERATION_TOKENS)
    start = time.perf_counter()
    searched: dict = {}
    selection = prune_structured(loaded, spec, calib, searched)
    seconds = time.perf_counter() - start
    if windows is not None:
        searched["recovery"] = recover(loaded, windows, recovery)
    params = count_params(loaded.model)
    report = {
        "protocol": protocol_record(loaded, calib, None), "structured": asdict(spec),
        "widths": selection.widths(), "blocks_kept": selection.kept_blocks(), **searched,
        "params": {"dense": dense_params, "pruned": params, "removed_decoder": dense_params["decoder"]
                   - params["decoder"], "target_removed": budget.target,
                   "removed_fraction_of_decoder": (dense_params["decoder"] - params["decoder"])
                   / dense_params["decoder"]},
        "latency": {"input": list(ids.shape), "dense_s": dense_latency,
                    "pruned_s": forward_latency(loaded.model, ids), "threads": torch.get_num_threads()},
        "seconds": {"prune": seconds},
    }
    report["latency"]["ratio"] = report["latency"]["pruned_s"] / dense_latency
    pruned_generation = generation_latency(loaded.model, prompt, GENERATION_TOKENS)
    report["generation"] = {"prompt_tokens": GENERATION_PROMPT, "new_tokens": GENERATION_TOKENS, "greedy": True,
                            "dense_s_per_token": dense_generation, "pruned_s_per_token": pruned_generation,
                            "ratio": pruned_generation / dense_generation}
    save_shrunk(loaded.model, loaded.tokenizer, out, report)
    report["reload_max_abs_diff"] = reload_max_abs_diff(loaded.model, out, ids[:, :128])
    write_report(out, report)  # again, now with the parity it measured
    return report
