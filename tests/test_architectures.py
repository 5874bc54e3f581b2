"""Layer discovery and pruning mechanics on tiny random-config models of each supported family."""

import pytest
import torch
import transformers

from evoprune.model.layers import decoder_blocks, prunable_layers
from evoprune.prune.apply import fraction_targets, prune_sequential, prune_with_stats
from evoprune.prune.masks import parse_pattern
from evoprune.prune.method import builtin_method
from evoprune.prune.recipe import Recipe
from evoprune.stats.collect import collect_dense_stats

V = 96
CONFIGS = {
    "llama": (transformers.LlamaConfig, dict(hidden_size=32, intermediate_size=64, num_attention_heads=4,
                                             num_key_value_heads=2), 7),
    "mistral": (transformers.MistralConfig, dict(hidden_size=32, intermediate_size=64, num_attention_heads=4,
                                                 num_key_value_heads=2), 7),
    "qwen2": (transformers.Qwen2Config, dict(hidden_size=32, intermediate_size=64, num_attention_heads=4,
                                             num_key_value_heads=2), 7),
    "gpt2": (transformers.GPT2Config, dict(n_embd=32, n_head=4, n_positions=64), 4),
    "opt": (transformers.OPTConfig, dict(hidden_size=32, ffn_dim=64, num_attention_heads=4, word_embed_proj_dim=32,
                                         max_position_embeddings=64), 6),
    "gpt_neox": (transformers.GPTNeoXConfig, dict(hidden_size=32, intermediate_size=64, num_attention_heads=4), 4),
    "phi": (transformers.PhiConfig, dict(hidden_size=32, intermediate_size=64, num_attention_heads=4), 6),
}


def tiny_model(family: str) -> torch.nn.Module:
    cls, kwargs, _ = CONFIGS[family]
    layers_key = "n_layer" if family == "gpt2" else "num_hidden_layers"
    config = cls(vocab_size=V, **{layers_key: 2}, **kwargs)
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(config).eval()


@pytest.mark.parametrize("family", list(CONFIGS))
def test_discovery_finds_every_block_linear_and_never_embeddings(family):
    model = tiny_model(family)
    layers = prunable_layers(model)
    assert len(decoder_blocks(model)) == 2
    assert len(layers) == 2 * CONFIGS[family][2]
    prunable_weights = {id(ref.module.weight) for ref in layers.values()}
    assert id(model.get_input_embeddings().weight) not in prunable_weights
    assert id(model.get_output_embeddings().weight) not in prunable_weights
    for ref in layers.values():  # [out, in] view whatever the storage layout (GPT-2's Conv1D)
        assert ref.weight().dim() == 2


@pytest.mark.parametrize("family", list(CONFIGS))
@pytest.mark.parametrize("metric,pattern", [("wanda", "unstructured"), ("sparsegpt", "2:4")])
def test_sequential_prune_is_exact_and_model_still_runs(family, metric, pattern):
    model = tiny_model(family)
    windows = torch.randint(0, V, (4, 16))
    with torch.no_grad():
        dense_logits = model(windows).logits
    targets = fraction_targets(model, 0.5, parse_pattern(pattern))
    reports = prune_sequential(model, windows, builtin_method(metric, 16), Recipe(metric), targets,
                               parse_pattern(pattern))
    assert all(r.pruned == r.total // 2 for r in reports)
    for key, ref in prunable_layers(model).items():
        assert int((ref.weight() == 0).sum()) >= ref.weight().numel() // 2, key
    with torch.no_grad():
        logits = model(windows).logits
    assert torch.isfinite(logits).all() and not torch.allclose(logits, dense_logits)


@pytest.mark.parametrize("family", ["llama", "gpt2", "opt"])
def test_dense_stats_with_gradients_drive_gblm(family):
    model = tiny_model(family)
    windows = torch.randint(0, V, (3, 16))
    stats = collect_dense_stats(model, windows, with_hessian=True, with_grad=True)
    assert set(stats) == set(prunable_layers(model))
    for key, st in stats.items():
        ref = prunable_layers(model)[key]
        assert st.X.shape == (ref.weight().shape[1],) and st.G.shape == ref.weight().shape
        assert (st.G > 0).any() and st.H.shape == (st.X.numel(),) * 2
        assert torch.allclose(st.H.diagonal(), st.X.pow(2), rtol=1e-4, atol=1e-6)  # X is the RMS
    unstructured = parse_pattern("unstructured")
    reports = prune_with_stats(model, stats, builtin_method("gblm", 16), Recipe("gblm"),
                               fraction_targets(model, 0.5, unstructured), unstructured)
    assert all(r.sparsity == 0.5 for r in reports)
    assert all(p.grad is None for p in model.parameters())


def test_per_block_and_per_layer_sparsity():
    model = tiny_model("llama")
    windows = torch.randint(0, V, (2, 16))
    unstructured = parse_pattern("unstructured")
    reports = prune_sequential(model, windows, builtin_method("wanda", 16), Recipe(),
                               fraction_targets(model, [0.25, 0.75], unstructured), unstructured)
    for r in reports:
        assert r.sparsity == (0.25 if r.layer.startswith("0.") else 0.75), r
    model = tiny_model("llama")
    targets = {key: (0.5 if "mlp" in key else 0.125) for key in prunable_layers(model)}
    reports = prune_with_stats(model, {}, builtin_method("magnitude", 16), Recipe("magnitude"),
                               fraction_targets(model, targets, unstructured), unstructured)
    assert {r.layer: r.sparsity for r in reports} == targets
