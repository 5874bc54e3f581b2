import pytest
import torch
import transformers

import evoprune.stats.cache as cache_mod
from evoprune.data.tokens import CalibSpec
from evoprune.stats.cache import cached_dense_stats, stats_key


@pytest.fixture()
def model():
    config = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2)
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(config).eval()


def test_second_call_reads_the_cache_and_matches(model, tmp_path, monkeypatch):
    monkeypatch.setenv("EVOPRUNE_CACHE_DIR", str(tmp_path))
    windows = torch.randint(0, 64, (3, 12))
    calib = CalibSpec("wikitext2", 3, 12, 0)
    first = cached_dense_stats(model, windows, calib, with_hessian=True, with_grad=True)
    assert len(list((tmp_path / "stats").glob("*.pt"))) == 1

    def must_not_run(*_a, **_k):
        raise AssertionError("statistics recomputed despite a cache entry")

    monkeypatch.setattr(cache_mod, "collect_dense_stats", must_not_run)
    second = cached_dense_stats(model, windows, calib, with_hessian=True, with_grad=True)
    assert first.keys() == second.keys()
    for key in first:
        for leaf in ("X", "Hinv", "H", "G"):
            assert torch.equal(getattr(first[key], leaf), getattr(second[key], leaf))
    # q/k/v see the same input, so they share one Hessian tensor on disk and in memory
    assert second["0.self_attn.q_proj"].H.data_ptr() == second["0.self_attn.k_proj"].H.data_ptr()
    # an entry holding more than asked serves a smaller request, without the extra fields
    lesser = cached_dense_stats(model, windows, calib, with_hessian=False, with_grad=False)
    assert lesser["0.mlp.up_proj"].H is None and lesser["0.mlp.up_proj"].G is None
    assert torch.equal(lesser["0.mlp.up_proj"].X, first["0.mlp.up_proj"].X)


def test_key_depends_on_everything_the_stats_depend_on(model):
    base = stats_key(model, CalibSpec("wikitext2", 3, 12, 0), True, False)
    assert base != stats_key(model, CalibSpec("wikitext2", 3, 12, 1), True, False)
    assert base != stats_key(model, CalibSpec("tinystories", 3, 12, 0), True, False)
    assert base != stats_key(model, CalibSpec("wikitext2", 4, 12, 0), True, False)
    assert base != stats_key(model, CalibSpec("wikitext2", 3, 12, 0), True, True)
    with torch.no_grad():
        model.model.layers[0].self_attn.q_proj.weight.mul_(2)
    assert base != stats_key(model, CalibSpec("wikitext2", 3, 12, 0), True, False)
