"""`evoprune prune --structure ...`: the structured branch of `prune` (it keeps `prune`'s own options), validated
before the model loads and before --out is touched."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from evoprune.cli import options as opt
from evoprune.data.text import load_text

console = Console()


def parse_depth(text: str) -> int | None:
    """`--depth`: a number of whole blocks, or auto (chosen on validation windows)."""
    from evoprune.errors import EvopruneError

    if text == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise EvopruneError(f"--depth must be a whole number of blocks or auto, got {text!r}") from None


def prune_structured(structure: str, ratio: float, widths: str, tolerance: float, metric: str, out: Path,
                     force: bool, model: str, device: str, dtype: str, calib: str, nsamples: int, seqlen: int,
                     seed: int, depth: str = "0", aggregate: str = "sum",
                     recover: tuple[int, float, int] = (0, 2e-4, 8)) -> None:
    from evoprune.jobs.structured import StructuredSpec, check_structured, structured_job
    from evoprune.paths import check_output_dir
    from evoprune.structured.recover import RecoverySpec

    spec = StructuredSpec(structure, ratio, metric, widths, tolerance, parse_depth(depth), aggregate)
    check_structured(model, spec, seqlen)
    steps, lr, rank = recover
    recovery = RecoverySpec(steps=steps, lr=lr, rank=rank, seed=seed)
    recovery.check()
    calib_spec = opt.calib_spec(calib, nsamples, seqlen, seed)
    load_text(calib, "calib")
    check_output_dir(out, force)
    loaded = opt.load(model, device, dtype)
    report = structured_job(loaded, spec, calib_spec, out, force, recovery)
    params, latency = report["params"], report["latency"]
    if "depth_search" in report:
        tried = report["depth_search"]["validation_perplexity"]
        console.print("depth (validation perplexity): " + ", ".join(f"{d}: {p:.2f}" for d, p in tried.items())
                      + f" -> {report['depth_search']['chosen']}")
    if "profile_search" in report:
        tried = report["profile_search"]["validation_perplexity"]
        console.print("profile slope (validation perplexity): " + ", ".join(f"{s:g}: {p:.2f}" for s, p in tried.items())
                      + f" -> {report['profile_search']['chosen']:g}")
    if "recovery" in report:
        rec = report["recovery"]
        console.print(f"LoRA recovery: {rec['steps']} steps in {rec['seconds']:.0f}s, loss {rec['loss_first']:.3f} "
                      f"-> {rec['loss_last']:.3f}; validation perplexity {rec['validation_perplexity_before']:.2f} "
                      f"-> {rec['validation_perplexity_after']:.2f}")
    kept = len(report["blocks_kept"])
    by = metric if aggregate == "sum" else f"{metric} ({aggregate} per unit)"
    console.print(f"shrunk {structure} by {by} ({widths}, {kept} blocks kept): removed "
                  f"{params['removed_decoder']:,} decoder "
                  f"parameters ({params['removed_fraction_of_decoder']:.4f}; target {params['target_removed']:,}), "
                  f"{params['dense']['total']:,} -> {params['pruned']['total']:,} in all; forward latency "
                  f"{latency['pruned_s']:.3f}s vs dense {latency['dense_s']:.3f}s ({latency['ratio']:.2f}x); "
                  f"generation {report['generation']['pruned_s_per_token'] * 1000:.1f} ms/token vs dense "
                  f"{report['generation']['dense_s_per_token'] * 1000:.1f} ({report['generation']['ratio']:.2f}x); "
                  f"reload max |Δlogit| {report['reload_max_abs_diff']:.2e} -> {out}")
