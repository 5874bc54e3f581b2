import pytest
import torch

from evoprune.errors import EvopruneError
from evoprune.prune.masks import Pattern, check_sparsity, parse_pattern, select_mask


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.5, 0.7, 0.99])
def test_unstructured_row_prunes_exactly_floor_per_row(sparsity):
    scores = torch.randn(7, 33)
    mask = select_mask(scores, sparsity, parse_pattern("unstructured"), "row")
    assert ((~mask).sum(dim=1) == int(sparsity * 33)).all()
    # the pruned ones are the lowest of their row
    for row, keep in zip(scores, mask, strict=True):
        if (~keep).any() and keep.any():
            assert row[~keep].max() <= row[keep].min()


def test_unstructured_layer_group_differs_from_row_group():
    scores = torch.tensor([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]])
    row = select_mask(scores, 0.5, parse_pattern("unstructured"), "row")
    layer = select_mask(scores, 0.5, parse_pattern("unstructured"), "layer")
    assert row.tolist() == [[False, False, True, True], [False, False, True, True]]
    assert layer.tolist() == [[False, False, False, False], [True, True, True, True]]
    assert int((~layer).sum()) == 4


@pytest.mark.parametrize("pattern", ["2:4", "4:8", "1:4", "3:4", "1:2"])
def test_n_m_keeps_exactly_n_in_every_group(pattern):
    n, m = map(int, pattern.split(":"))
    scores = torch.randn(5, 8 * m)
    mask = select_mask(scores, 1 - n / m, parse_pattern(pattern))
    assert (mask.reshape(5, 8, m).sum(-1) == n).all()
    grouped, keep = scores.reshape(5, 8, m), mask.reshape(5, 8, m)
    for g, k in zip(grouped.reshape(-1, m), keep.reshape(-1, m), strict=True):
        assert g[~k].max() <= g[k].min()


def test_ties_prune_lower_index_first():
    scores = torch.ones(2, 8)
    assert select_mask(scores, 0.5, parse_pattern("unstructured")).tolist() == [[False] * 4 + [True] * 4] * 2
    assert select_mask(scores, 0.5, parse_pattern("2:4")).tolist() == [[False, False, True, True] * 2] * 2
    layer = select_mask(scores, 0.25, parse_pattern("unstructured"), "layer")
    assert layer[0].tolist() == [False] * 4 + [True] * 4 and layer[1].all()


def test_bad_patterns_and_sparsities_are_user_errors():
    for text in ["2-4", "4:2", "0:4", "x"]:
        with pytest.raises(EvopruneError):
            parse_pattern(text)
    with pytest.raises(EvopruneError):
        check_sparsity(1.0, parse_pattern("unstructured"))
    with pytest.raises(EvopruneError):
        check_sparsity(0.3, parse_pattern("2:4"))
    assert check_sparsity(None, parse_pattern("2:4")) == 0.5
    with pytest.raises(EvopruneError, match="not divisible"):
        select_mask(torch.randn(2, 6), 0.4, parse_pattern("3:5"))
    with pytest.raises(ValueError, match="NaN"):
        select_mask(torch.tensor([[float("nan"), 1.0]]), 0.5, parse_pattern("unstructured"))


def _stable_sort_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The tie rule's definition: a stable ascending sort, the first k dropped."""
    mask = torch.ones_like(scores, dtype=torch.bool)
    if k > 0:
        mask.scatter_(-1, torch.sort(scores, dim=-1, stable=True).indices[..., :k], False)
    return mask


@pytest.mark.parametrize("quantize", [None, 4.0, 0.5])
@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_selection_equals_a_stable_sort_with_and_without_ties(quantize, sparsity):
    """The fast selection (partition + boundary tie-break) is the stable sort's mask, bit for bit."""
    gen = torch.Generator().manual_seed(int(sparsity * 1000) + int(quantize or 0))
    scores = torch.randn(37, 96, generator=gen)
    if quantize:  # coarse grids make ties common, as the 4-bit embedded model does
        scores = (scores * quantize).round()
    for group, view in (("row", scores), ("layer", scores.reshape(1, -1))):
        expected = _stable_sort_mask(view, int(sparsity * view.shape[-1])).reshape(scores.shape)
        assert torch.equal(select_mask(scores, sparsity, Pattern(), group), expected)
    assert torch.equal(select_mask(scores, 0.5, Pattern(2, 4)),
                       _stable_sort_mask(scores.reshape(37, 24, 4), 2).reshape(scores.shape))
