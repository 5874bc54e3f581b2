"""Options shared by several commands, so each is spelled and documented once."""

from __future__ import annotations

import typer

from evoprune.data.tokens import CalibSpec
from evoprune.model.loading import EMBEDDED_NAME, LoadedModel, load_model

Model = typer.Option(EMBEDDED_NAME, "--model", help="smollm2-135m (embedded), a local HF directory, or a hub id.")
Device = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N.")
Dtype = typer.Option("auto", "--dtype", help="auto (float32 on CPU, bfloat16 on GPU), float32, bfloat16, float16.")
Calib = typer.Option("wikitext2", "--calib", help="Calibration data: wikitext2, c4, tinystories or a text file.")
NSamples = typer.Option(32, "--nsamples", help="Number of calibration windows.")
SeqLen = typer.Option(256, "--seqlen", help="Calibration window length in tokens.")
Seed = typer.Option(0, "--seed", help="Seed of the calibration window draw.")
EvalData = typer.Option("wikitext2", "--eval", help="Evaluation data (its test split): name or text file.")
EvalSeqLen = typer.Option(512, "--eval-seqlen", help="Evaluation window length.")
MaxEvalTokens = typer.Option(16384, "--max-eval-tokens", help="Evaluate on the first N tokens (0 = all).")
Tasks = typer.Option(None, "--tasks", help="Zero-shot lm-eval tasks, comma-separated or repeated: blimp (local "
                     "files), blimp_<set>, or any lm-eval task whose data is reachable.")
Limit = typer.Option(None, "--limit", help="Examples per zero-shot task (default: all; BLiMP has 1,000 per set).")
TaskBatch = typer.Option(32, "--task-batch-size", help="Zero-shot scoring batch size.")
Allocation = typer.Option("uniform", "--allocation", help="Per-layer sparsity: uniform, owl[:M=5,lambda=0.08], "
                          "depth[:slope=0.1,q_proj=-0.05,...], besa[:epochs=4,rows=1,...], or "
                          "'tree:delta=0.1;<formula over depth, attn, qk, out, outlier, energy, spread>' (an "
                          "evolved allocation); exact global budget.")
Refine = typer.Option("none", "--refine", help="Mask refinement: none or swaps[:budget=8,candidates=8] "
                      "(error-lowering 1-swaps inside each row or N:M group, from the Gram matrix).")
Update = typer.Option("none", "--update", help="Weight update after masking: none, obs[:blocksize=128,damp=0.01] "
                      "(SparseGPT's column sweep over a fixed mask), or sweep[:blocksize=128,damp=0.01,groups=1] "
                      "(the metric picks the mask inside the sweep, on the updated weights; W**2/Hinv = SparseGPT); "
                      "obs and sweep take resolve=N: N conjugate-gradient steps toward the exact least-squares "
                      "weights for the final mask (20: within 2 % of its error).")


def calib_spec(data: str, nsamples: int, seqlen: int, seed: int) -> CalibSpec:
    spec = CalibSpec(data, nsamples, seqlen, seed)
    spec.validate()
    return spec


def load(model: str, device: str, dtype: str) -> LoadedModel:
    from evoprune.cli.progress import status
    from evoprune.model.loading import resolve_device, resolve_dtype

    resolve_dtype(dtype, resolve_device(device))  # fail before the slow load
    with status(f"loading {model}"):
        return load_model(model, device, dtype)
