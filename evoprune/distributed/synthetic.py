"""A model-free evaluator: scores a formula by pruning synthetic tensors (for tests, benchmarks, cluster checks).

It does real torch work (a masked layer's output error over calibration batches), is deterministic for a given
spec and thread count, and needs no model download, so it can check that a Ray cluster is wired correctly.
"""

from __future__ import annotations

import ast
import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from evoprune.formula import protected
from evoprune.prune.masks import Pattern, select_mask

# The registry's protected semantics (one definition: formula/protected.py), not a copy of them.
_FUNCS = {"abs": torch.abs, "sqrt": protected.sqrt, "log": protected.log, "exp": protected.exp}
_BINOPS = {ast.Add: torch.add, ast.Sub: torch.sub, ast.Mult: torch.mul, ast.Div: protected.div}


@dataclass(frozen=True)
class SyntheticSpec:
    """Sizes set the cost: one candidate does `batches` matmuls of [tokens, cols] x [cols, rows]."""

    seed: int = 0
    rows: int = 256
    cols: int = 256
    tokens: int = 512
    batches: int = 4
    sparsity: float = 0.5
    sleep_s: float = 0.0  # extra wall time per candidate (makes mid-run fault injection easy to time)
    device: str = "cpu"   # "cuda" inside a GPU actor (Ray sets CUDA_VISIBLE_DEVICES to the actor's GPU)


def _eval_node(node: ast.AST, leaves: dict[str, torch.Tensor]) -> torch.Tensor:
    # A tiny whitelist interpreter: the real formula package is not needed to exercise the pool.
    if isinstance(node, ast.Expression):
        return _eval_node(node.body, leaves)
    if isinstance(node, ast.Name) and node.id in leaves:
        return leaves[node.id]
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return torch.tensor(float(node.value), device=leaves["W"].device)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_eval_node(node.operand, leaves)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)](_eval_node(node.left, leaves), _eval_node(node.right, leaves))
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) in _FUNCS and len(node.args) == 1:
        return _FUNCS[node.func.id](_eval_node(node.args[0], leaves))
    raise ValueError(f"unsupported syntax: {ast.dump(node)[:60]}")


class SyntheticEvaluator:
    """`evaluate(formula) -> dict` in the Evaluator contract's shape; lower fitness is better."""

    def __init__(self, spec: SyntheticSpec) -> None:
        self.spec = spec
        gen = torch.Generator().manual_seed(spec.seed)
        w = torch.randn(spec.rows, spec.cols, generator=gen)
        scale = torch.rand(1, spec.cols, generator=gen) * 3 + 0.1  # uneven input channels, so X matters
        inputs = [torch.randn(spec.tokens, spec.cols, generator=gen) * scale for _ in range(spec.batches)]
        x_rms = torch.sqrt(sum((b**2).sum(0, keepdim=True) for b in inputs) / (spec.tokens * spec.batches))
        leaves = {"W": w, "X": x_rms, "G": torch.rand(spec.rows, spec.cols, generator=gen),
                  "Hinv": 1.0 / (x_rms**2 + 0.01)}
        # Generated on the CPU (same numbers everywhere), then moved.
        self.inputs = [b.to(spec.device) for b in inputs]
        self.leaves = {k: v.to(spec.device) for k, v in leaves.items()}

    def evaluate(self, formula: str) -> dict[str, Any]:
        start = time.perf_counter()
        result = {"formula": formula, "fitness": math.inf, "reason": None, "mask_hash": None, "cached": False}
        try:
            scores = _eval_node(ast.parse(formula, mode="eval"), self.leaves).expand_as(self.leaves["W"])
        except (SyntaxError, ValueError, RuntimeError) as exc:
            result["reason"] = f"bad formula: {exc}"
        else:
            if torch.isfinite(scores).all():
                result["fitness"] = self._output_error(scores)
            else:
                result["reason"] = "non-finite scores"
        if self.spec.sleep_s:
            time.sleep(self.spec.sleep_s)
        result["seconds"] = time.perf_counter() - start
        return result

    def _output_error(self, scores: torch.Tensor) -> float:
        """Relative output error of the layer after keeping the top (1 - sparsity) scores of every row."""
        w = self.leaves["W"]
        mask = select_mask(scores, self.spec.sparsity, Pattern()).to(w.dtype)  # the project's one tie rule
        err = ref = 0.0
        for batch in self.inputs:
            dense = batch @ w.T
            err += float(((batch @ (w * mask).T - dense) ** 2).sum())
            ref += float((dense**2).sum())
        return err / ref
