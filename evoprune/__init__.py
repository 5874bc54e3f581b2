"""evoprune: discover pruning metrics for LLMs by evolving symbolic importance formulas."""

__version__ = "0.1.0"
