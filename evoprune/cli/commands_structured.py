"""`evoprune prune --structure ...`: the structured branch of `prune` (it keeps `prune`'s own options), validated
before the model loads and before --out is touched."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from evoprune.cli import options as opt
from evoprune.data.text import load_text

console = Console()


def prune_structured(structure: str, ratio: float, widths: str, tolerance: float, metric: str, out: Path,
                     force: bool, model: str, device: str, dtype: str, calib: str, nsamples: int, seqlen: int,
                     seed: int) -> None:
    from evoprune.jobs.structured import StructuredSpec, check_structured, structured_job
    from evoprune.paths import check_output_dir

    spec = StructuredSpec(structure, ratio, metric, widths, tolerance)
    check_structured(model, spec, seqlen)
    calib_spec = opt.calib_spec(calib, nsamples, seqlen, seed)
    load_text(calib, "calib")
    check_output_dir(out, force)
    loaded = opt.load(model, device, dtype)
    report = structured_job(loaded, spec, calib_spec, out, force)
    params, latency = report["params"], report["latency"]
    console.print(f"shrunk {structure} by {metric} ({widths}): removed {params['removed_decoder']:,} decoder "
                  f"parameters ({params['removed_fraction_of_decoder']:.4f}; target {params['target_removed']:,}), "
                  f"{params['dense']['total']:,} -> {params['pruned']['total']:,} in all; forward latency "
                  f"{latency['pruned_s']:.3f}s vs dense {latency['dense_s']:.3f}s ({latency['ratio']:.2f}x); "
                  f"reload max |Δlogit| {report['reload_max_abs_diff']:.2e} -> {out}")
