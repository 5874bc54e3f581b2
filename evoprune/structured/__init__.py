"""Structured pruning that shrinks tensors: MLP channels, attention heads (GQA-consistent), whole blocks, or
DISP-style residual channel subsets per sublayer (`residual`).

Flow: `shape` (what a LLaMA-family config allows) → `budget` (how many units to remove, shape-only, so bad input
fails before the model loads) → `calibration` / `taylor` (statistics) → `scores` (per-weight metric summed over
each unit, FLAP, ShortGPT; `residual` for residual channels) → `allocate` (which units) → `shrink` (smaller
Linears) → `save` (plain HF or a small remote-code modeling file for per-layer widths and residual subsets).
"""
