"""Structured pruning that shrinks tensors: MLP channels, attention heads (GQA-consistent), whole blocks.

Flow: `shape` (what a LLaMA-family config allows) → `budget` (how many units to remove, shape-only, so bad input
fails before the model loads) → `calibration` / `taylor` (statistics) → `scores` (per-weight metric summed over
each unit, FLAP, ShortGPT) → `allocate` (which units) → `shrink` (smaller Linears) → `save` (plain HF or a
small remote-code modeling file for per-layer widths).
"""
