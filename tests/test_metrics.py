import math

import pytest
import torch

from evoprune.errors import EvopruneError
from evoprune.prune.masks import parse_pattern, select_mask
from evoprune.prune.method import builtin_method
from evoprune.prune.metrics import gblm, magnitude, metric_function, pruner_zero, ria, wanda
from evoprune.prune.sparsegpt import sparsegpt_prune

W = torch.tensor([[1.0, -2.0], [-3.0, 4.0]])
X = torch.tensor([[2.0, 0.5]])
G = torch.tensor([[1.0, 3.0], [5.0, 2.0]])
LEAVES = {"W": W, "X": X, "G": G}


def test_magnitude_and_wanda_by_hand():
    assert magnitude(LEAVES).tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert wanda(LEAVES).tolist() == [[2.0, 1.0], [6.0, 2.0]]


def test_ria_by_hand():
    # row sums of |W|: 3, 7; column sums: 4, 6; X^0.5 = [sqrt2, sqrt0.5]
    expected = [[(1 / 3 + 1 / 4) * math.sqrt(2), (2 / 3 + 2 / 6) * math.sqrt(0.5)],
                [(3 / 7 + 3 / 4) * math.sqrt(2), (4 / 7 + 4 / 6) * math.sqrt(0.5)]]
    assert torch.allclose(ria(LEAVES), torch.tensor(expected))


def test_gblm_by_hand():
    # |W|*X*sqrt(seqlen) + |W|*G with seqlen 4
    assert gblm(LEAVES, seqlen=4).tolist() == [[1 * 2 * 2 + 1, 2 * 0.5 * 2 + 6], [3 * 2 * 2 + 15, 4 * 0.5 * 2 + 8]]


def test_pruner_zero_by_hand():
    # minmax(G) = (G - 1) / 4
    assert pruner_zero(LEAVES).tolist() == [[0.0, 4 * 0.5], [9 * 1.0, 16 * 0.25]]


def test_unknown_metric_is_user_error():
    with pytest.raises(EvopruneError, match="unknown metric"):
        metric_function("nope", 256)
    assert builtin_method("sparsegpt", 256).is_sparsegpt


def _layer_error(w_orig, w_new, h):
    d = w_orig - w_new
    return float(torch.einsum("oi,ij,oj->", d, h, d))


def test_sparsegpt_exact_sparsity_and_beats_plain_masking():
    torch.manual_seed(0)
    # correlated input channels (as real activations are): the OBS update has something to compensate
    x = torch.randn(512, 64) @ (torch.eye(64) + 0.5 * torch.randn(64, 64))
    h = x.t() @ x / 512
    w = torch.randn(32, 64)
    for pattern, sparsity in [("unstructured", 0.5), ("2:4", 0.5), ("unstructured", 0.7)]:
        new_w, mask = sparsegpt_prune(w, h, sparsity, parse_pattern(pattern), blocksize=16)
        assert torch.equal(new_w == 0, ~mask) or ((new_w == 0) >= ~mask).all()
        assert int((~mask).sum()) == int(sparsity * 32 * 16) * 4  # exact per 16-column block
        if pattern == "2:4":
            assert (mask.reshape(32, 16, 4).sum(-1) == 2).all()
        wanda_mask = select_mask(w.abs() * h.diagonal().sqrt(), sparsity, parse_pattern(pattern))
        assert _layer_error(w, new_w, h) < 0.8 * _layer_error(w, w * wanda_mask, h)


@pytest.mark.parametrize("name", ["magnitude", "wanda", "ria", "pruner-zero"])
def test_baseline_formulas_rank_as_the_builtin_functions(name):
    """BASELINE_FORMULAS (what the search seeds and reports) select the same masks as the built-in functions."""
    from evoprune.formula import compile_formula, parse_formula
    from evoprune.prune.metrics import BASELINE_FORMULAS

    gen = torch.Generator().manual_seed(0)
    leaves = {"W": torch.randn(16, 32, generator=gen), "X": torch.rand(1, 32, generator=gen) + 0.1,
              "G": torch.rand(16, 32, generator=gen)}
    formula = compile_formula(parse_formula(BASELINE_FORMULAS[name]))(leaves)
    builtin = metric_function(name, 16)(leaves)
    for pattern in ("unstructured", "2:4"):
        parsed = parse_pattern(pattern)
        assert torch.equal(select_mask(formula.expand(16, 32), 0.5, parsed), select_mask(builtin, 0.5, parsed))
