"""Structured pruning: GQA consistency, exact parameter budgets, reload parity with transformers alone, bad input.

Real weights: the embedded SmolLM2 cut to 4 blocks (conftest), short calibration windows. A tiny random config
only covers what SmolLM2 cannot (other head layouts, Mistral, an unsupported architecture).
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from transformers import AutoConfig, GPT2Config, LlamaConfig, LlamaForCausalLM, MistralConfig

from evoprune.cli.app import main
from evoprune.data.tokens import CalibSpec
from evoprune.errors import EvopruneError
from evoprune.jobs.structured import StructuredSpec, prune_structured, unit_scores
from evoprune.model.loading import load_model
from evoprune.structured.allocate import allocate
from evoprune.structured.budget import (
    PROFILE_GRID,
    feasible_slopes,
    make_budget,
    parse_widths,
    profile_counts,
    uniform_counts,
)
from evoprune.structured.measure import count_params, paired_forward_latency
from evoprune.structured.save import reload_max_abs_diff, save_shrunk
from evoprune.structured.scores import aggregate_block
from evoprune.structured.shape import decoder_shape
from evoprune.structured.shrink import shrink_model

CALIB = CalibSpec("wikitext2", nsamples=4, seqlen=64, seed=0)


@pytest.fixture(scope="module")
def dense(truncated_model_dir):
    return load_model(str(truncated_model_dir), "cpu", "float32")


def _fresh(loaded):
    return type(loaded)(copy.deepcopy(loaded.model), loaded.tokenizer, loaded.source)


def _check_gqa(model) -> None:
    """Every block's shapes describe whole heads and whole KV groups with an integer query/KV ratio."""
    for block in model.model.layers:
        attn = block.self_attn
        d = attn.head_dim
        q, kv = attn.q_proj.out_features, attn.k_proj.out_features
        assert q % d == 0 and kv % d == 0 and attn.v_proj.out_features == kv
        assert attn.o_proj.in_features == q
        assert (q // d) % (kv // d) == 0 and attn.num_key_value_groups == (q // d) // (kv // d)
        assert block.mlp.gate_proj.out_features == block.mlp.up_proj.out_features == block.mlp.down_proj.in_features


@pytest.mark.slow
@pytest.mark.parametrize(("structure", "widths", "metric"), [
    ("mlp,heads", "uniform", "wanda"), ("mlp,groups", "per-layer", "magnitude"), ("mlp,heads", "per-layer", "flap"),
    ("mlp,heads", "uniform", "taylor"), ("blocks", "uniform", "shortgpt"),
])
def test_shrink_keeps_gqa_meets_budget_and_reloads(dense, tmp_path, structure, widths, metric):
    loaded = _fresh(dense)
    spec = StructuredSpec(structure, 0.25, metric, widths, tolerance=0.01)
    shape, budget = spec.check(loaded.model.config)
    before = count_params(loaded.model)
    selection = prune_structured(loaded, spec, CALIB)
    after = count_params(loaded.model)
    _check_gqa(loaded.model)
    if structure.endswith("heads"):  # heads: every KV group keeps the same number of query heads
        for keep in selection.layers:
            per_group = torch.bincount(keep.q_heads // shape.n_rep, minlength=shape.kv_heads)
            assert len(set(per_group.tolist())) == 1
    removed = before["decoder"] - after["decoder"]
    biases = sum(m.bias.numel() for m in loaded.model.modules() if getattr(m, "bias", None) is not None)
    assert removed + biases == shape.decoder_params - selection.decoder_params(shape)  # exact count
    assert budget.target <= removed + biases <= budget.limit
    save_shrunk(loaded.model, loaded.tokenizer, tmp_path, {})
    assert ("auto_map" in json.loads((tmp_path / "config.json").read_text())) == (not selection.uniform())
    ids = torch.arange(40).unsqueeze(0) * 7 % loaded.model.config.vocab_size
    diff = reload_max_abs_diff(loaded.model, tmp_path, ids)
    print(f"{structure} {widths} {metric}: removed {removed:,} of {before['decoder']:,} decoder parameters "
          f"(+{biases:,} compensation biases), reload max abs diff {diff:.3e}")
    assert diff < 1e-4


@pytest.mark.slow
def test_flap_compensation_beats_no_compensation(dense):
    """The bias FLAP adds replaces each removed channel by its calibration mean: the block's output on the
    calibration windows must be closer to the dense one than without it."""
    from evoprune.data.protocol import calib_windows
    from evoprune.jobs.structured import shrink_with_scores

    windows = calib_windows(dense, CALIB)
    shape = decoder_shape(dense.model.config)
    scores, calibration = unit_scores(dense, shape, "flap", CALIB, windows)
    with torch.no_grad():
        reference = dense.model(windows, use_cache=False).logits
    errors = {}
    for compensate in (True, False):
        model = copy.deepcopy(dense.model)
        spec = StructuredSpec("mlp", 0.2, "flap" if compensate else "wanda", "per-layer")
        shrink_with_scores(model, spec, scores, calibration if compensate else None)
        with torch.no_grad():
            errors[compensate] = (model(windows, use_cache=False).logits - reference).pow(2).mean().item()
    assert errors[True] < errors[False]


def test_summed_scores_follow_the_gqa_layout():
    """Query head h belongs to KV group h // n_rep (HF's repeat_kv); a group sums its heads plus k/v rows."""
    shape = decoder_shape(LlamaConfig(hidden_size=32, intermediate_size=8, num_hidden_layers=1,
                                      num_attention_heads=4, num_key_value_heads=2, head_dim=8))
    s = {n: torch.zeros(o, i) for n, (o, i) in {
        "self_attn.q_proj": (32, 32), "self_attn.k_proj": (16, 32), "self_attn.v_proj": (16, 32),
        "self_attn.o_proj": (32, 32), "mlp.gate_proj": (8, 32), "mlp.up_proj": (8, 32),
        "mlp.down_proj": (32, 8)}.items()}
    s["self_attn.q_proj"][3 * 8] = 1.0  # a row of query head 3
    s["self_attn.o_proj"][:, 2 * 8 + 1] = 1.0  # a column of query head 2
    s["self_attn.k_proj"][8] = 2.0  # a row of KV head 1
    s["mlp.down_proj"][:, 5] = 1.0
    agg = aggregate_block(shape, s)
    assert agg["heads"].tolist() == [0.0, 0.0, 32.0, 32.0]
    assert agg["groups"].tolist() == [0.0, 128.0]
    assert agg["mlp"].tolist() == [0, 0, 0, 0, 0, 32.0, 0, 0]


def _unit_weights(s: dict, d: int, n_rep: int) -> dict[str, list[torch.Tensor]]:
    """Every unit's weights, gathered by hand from the LLaMA layout (the definition aggregate_block reduces)."""
    q, k, v, o = (s[f"self_attn.{n}_proj"] for n in "qkvo")
    gate, up, down = s["mlp.gate_proj"], s["mlp.up_proj"], s["mlp.down_proj"]
    heads = [torch.cat([q[h * d:(h + 1) * d].reshape(-1), o[:, h * d:(h + 1) * d].reshape(-1)])
             for h in range(q.shape[0] // d)]
    groups = [torch.cat([*heads[g * n_rep:(g + 1) * n_rep], k[g * d:(g + 1) * d].reshape(-1),
                         v[g * d:(g + 1) * d].reshape(-1)]) for g in range(k.shape[0] // d)]
    mlp = [torch.cat([gate[c], up[c], down[:, c]]) for c in range(gate.shape[0])]
    resid_attn = [torch.cat([q[:, j], k[:, j], v[:, j], o[j]]) for j in range(q.shape[1])]
    resid_mlp = [torch.cat([gate[:, j], up[:, j], down[j]]) for j in range(gate.shape[1])]
    return {"heads": heads, "groups": groups, "mlp": mlp, "blocks": [torch.cat([t.reshape(-1) for t in s.values()])],
            "resid_attn": resid_attn, "resid_mlp": resid_mlp}


@pytest.mark.parametrize("aggregate,reduce", [
    ("sum", torch.sum), ("mean", torch.mean), ("l2", lambda t: t.pow(2).sum().sqrt()), ("max", torch.max)])
def test_every_aggregate_reduces_exactly_the_units_weights(aggregate, reduce):
    shape = decoder_shape(LlamaConfig(hidden_size=32, intermediate_size=8, num_hidden_layers=1,
                                      num_attention_heads=4, num_key_value_heads=2, head_dim=8))
    gen = torch.Generator().manual_seed(0)
    s = {n: torch.randn(o, i, generator=gen, dtype=torch.float64) for n, (o, i) in {
        "self_attn.q_proj": (32, 32), "self_attn.k_proj": (16, 32), "self_attn.v_proj": (16, 32),
        "self_attn.o_proj": (32, 32), "mlp.gate_proj": (8, 32), "mlp.up_proj": (8, 32),
        "mlp.down_proj": (32, 8)}.items()}
    agg = aggregate_block(shape, s, aggregate)
    for kind, units in _unit_weights(s, 8, shape.n_rep).items():
        expected = torch.stack([reduce(u) for u in units])
        assert torch.allclose(agg[kind].reshape(-1), expected), kind


def test_aggregate_is_checked_before_anything_loads():
    config = LlamaConfig(hidden_size=32, intermediate_size=8, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=8)
    with pytest.raises(EvopruneError, match="unknown --aggregate 'median'"):
        StructuredSpec("mlp", 0.2, "wanda", aggregate="median").check(config)
    with pytest.raises(EvopruneError, match="--metric flap scores units by its own rule"):
        StructuredSpec("mlp,heads", 0.2, "flap", "per-layer", aggregate="max").check(config)


@pytest.mark.parametrize("ratio", [0.1, 0.2, 0.3])
@pytest.mark.parametrize("structure", [("mlp",), ("mlp", "heads"), ("mlp", "groups")])
def test_budgets_are_exact_on_the_embedded_shape(ratio, structure):
    """Removed parameters of a real selection equal the arithmetic, and meet the target within the slack."""
    config = AutoConfig.for_model("llama", hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                  num_attention_heads=9, num_key_value_heads=3, head_dim=64)
    shape = decoder_shape(config)
    assert shape.decoder_params == 106_202_880  # SmolLM2-135M's 30 blocks, counted from its tensors
    budget = make_budget(shape, ratio)
    gen = torch.Generator().manual_seed(0)
    scores = {"mlp": torch.rand(30, 1536, generator=gen), "heads": torch.rand(30, 9, generator=gen),
              "groups": torch.rand(30, 3, generator=gen)}
    for widths in ("uniform", "per-layer"):
        selection = allocate(shape, structure, scores, budget, widths)
        removed = shape.decoder_params - selection.decoder_params(shape)
        assert budget.target <= removed <= budget.limit, widths
        if widths == "uniform":
            assert selection.uniform()


def test_uniform_heads_refuse_a_ratio_gqa_cannot_meet():
    shape = decoder_shape(LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                      num_attention_heads=9, num_key_value_heads=3, head_dim=64))
    with pytest.raises(EvopruneError, match="GQA"):
        uniform_counts(shape, ("heads",), make_budget(shape, 0.05))
    one_step = 30 * 3 * shape.q_head_cost  # one query head per KV group in every block
    assert uniform_counts(shape, ("heads",), make_budget(shape, one_step / shape.decoder_params)) == {"heads": 1}


def test_tiny_mistral_uniform_shrink_reloads(tmp_path):
    """Architecture coverage only (random weights): Mistral with 8 query heads over 2 KV heads."""
    from transformers import MistralForCausalLM

    torch.manual_seed(0)
    config = MistralConfig(vocab_size=64, hidden_size=96, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=8, num_key_value_heads=2, head_dim=16)
    model = MistralForCausalLM(config).eval()
    shape = decoder_shape(model.config)
    scores = {"mlp": torch.rand(2, 64), "heads": torch.rand(2, 8)}
    selection = allocate(shape, ("mlp", "heads"), scores, make_budget(shape, 0.3, 0.02), "uniform")
    shrink_model(model, shape, selection)
    _check_gqa(model)
    save_shrunk(model, None, tmp_path, {})
    assert reload_max_abs_diff(model, tmp_path, torch.arange(10).unsqueeze(0)) < 1e-5


def test_tiny_llama_per_layer_query_heads_reload(tmp_path):
    """Per-layer query heads per group differ between blocks: the remote-code file sets each block's own
    num_key_value_groups."""
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=96, intermediate_size=64, num_hidden_layers=3,
                                         num_attention_heads=8, num_key_value_heads=2, head_dim=16)).eval()
    shape = decoder_shape(model.config)
    scores = {"mlp": torch.rand(3, 64), "heads": torch.tensor([[0.0] * 8, [1.0] * 8, [2.0] * 8])}
    selection = allocate(shape, ("heads",), scores, make_budget(shape, 0.1, 0.05), "per-layer")
    assert not selection.uniform()
    shrink_model(model, shape, selection)
    _check_gqa(model)
    save_shrunk(model, None, tmp_path, {})
    assert reload_max_abs_diff(model, tmp_path, torch.arange(10).unsqueeze(0)) < 1e-5


@pytest.mark.parametrize(("args", "message"), [
    (["--structure", "attention"], "unknown structure"),
    (["--structure", "heads", "--ratio", "0.05"], "GQA"),
    (["--structure", "heads", "--ratio", "0.2"], "out of reach"),
    (["--structure", "blocks", "--ratio", "0.3"], "cannot be met"),
    (["--structure", "mlp", "--metric", "shortgpt"], "shortgpt"),
    (["--structure", "mlp", "--metric", "sparsegpt"], "no per-weight score"),
    (["--structure", "mlp", "--aggregate", "median"], "unknown --aggregate"),
    (["--aggregate", "max"], "needs --structure"),
    (["--recover-steps", "4"], "needs --structure"),
    (["--structure", "mlp", "--recover-steps", "-1"], "--recover-steps must be >= 0"),
    (["--structure", "mlp", "--recover-steps", "2", "--recover-lr", "0"], "--recover-lr > 0"),
    (["--structure", "mlp", "--widths", "profile:2"], "slope must be a number in [-1, 1]"),
    (["--structure", "mlp", "--widths", "wide"], "unknown --widths 'wide'"),
    (["--structure", "blocks", "--widths", "profile:0.2"], "thins every block"),
    (["--structure", "mlp", "--widths", "profile:0.2", "--depth", "1"], "--depth goes with --widths uniform"),
])
def test_bad_input_is_one_error_line_and_writes_nothing(truncated_model_dir, tmp_path, capsys, args, message):
    out = tmp_path / "out"
    assert main(["prune", "--model", str(truncated_model_dir), *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]
    assert not out.exists()


def test_an_architecture_without_units_is_refused(tmp_path, capsys):
    GPT2Config(n_layer=2, n_embd=32, n_head=2).save_pretrained(tmp_path / "gpt2")
    out = tmp_path / "out"
    assert main(["prune", "--model", str(tmp_path / "gpt2"), "--structure", "mlp", "--out", str(out)]) == 2
    assert "LLaMA-family" in capsys.readouterr().err and not out.exists()


def _zero_dropped(model, shape, selection) -> None:
    """The masking view of a selection: zero every weight of the removed units, keep the tensors full size."""
    d = shape.head_dim
    for block, keep in zip(model.model.layers, selection.layers, strict=True):
        attn, mlp = block.self_attn, block.mlp
        q_drop = torch.ones(shape.q_heads * d, dtype=torch.bool)
        q_drop[(keep.q_heads.unsqueeze(1) * d + torch.arange(d)).flatten()] = False
        kv_drop = torch.ones(shape.kv_heads * d, dtype=torch.bool)
        kv_drop[(keep.kv_heads.unsqueeze(1) * d + torch.arange(d)).flatten()] = False
        m_drop = torch.ones(shape.intermediate, dtype=torch.bool)
        m_drop[keep.mlp] = False
        with torch.no_grad():
            attn.q_proj.weight[q_drop] = 0
            attn.k_proj.weight[kv_drop] = 0
            attn.v_proj.weight[kv_drop] = 0
            attn.o_proj.weight[:, q_drop] = 0
            mlp.gate_proj.weight[m_drop] = 0
            mlp.up_proj.weight[m_drop] = 0
            mlp.down_proj.weight[:, m_drop] = 0


@pytest.mark.slow
@pytest.mark.parametrize(("structure", "widths"), [("mlp,heads", "uniform"), ("mlp,groups", "per-layer")])
def test_shrunk_model_equals_the_dense_model_with_its_units_zeroed(dense, structure, widths):
    """Shrinking removes exactly the chosen units and nothing else: its logits equal the dense model's with those
    units' weights zeroed (removed KV groups take their query heads along, so zeroing them is equivalent)."""
    from evoprune.jobs.structured import shrink_with_scores

    shape = decoder_shape(dense.model.config)
    scores, _ = unit_scores(dense, shape, "magnitude", CALIB, None)
    shrunk, masked = copy.deepcopy(dense.model), copy.deepcopy(dense.model)
    selection = shrink_with_scores(shrunk, StructuredSpec(structure, 0.2, "magnitude", widths), scores, None)
    _zero_dropped(masked, shape, selection)
    ids = torch.arange(48).unsqueeze(0) * 11 % dense.model.config.vocab_size
    with torch.no_grad():
        diff = (shrunk(ids, use_cache=False).logits - masked(ids, use_cache=False).logits).abs().max().item()
    print(f"{structure} {widths}: shrunk vs zeroed max abs diff {diff:.3e}")
    assert diff < 1e-4


def test_paired_latency_times_both_models_alternately(dense):
    loaded = _fresh(dense)
    calls = []
    hooks = [model.register_forward_pre_hook(lambda *_, name=name: calls.append(name))
             for name, model in (("pruned", loaded.model), ("dense", dense.model))]
    try:
        mine, theirs = paired_forward_latency(loaded.model, dense.model, torch.zeros(1, 16, dtype=torch.long), 3)
    finally:
        for hook in hooks:  # the dense model is the module's fixture
            hook.remove()
    assert mine > 0 and theirs > 0
    assert calls == ["pruned", "dense"] * 4  # a warm-up of each, then alternating passes


def test_another_aggregate_reaches_the_selection(dense):
    """`aggregate` reaches the unit scores: l2 and max keep other MLP channels than the sum, at the same budget."""
    kept, params = {}, set()
    for aggregate in ("sum", "l2", "max"):
        loaded = _fresh(dense)
        selection = prune_structured(loaded, StructuredSpec("mlp", 0.1, "wanda", aggregate=aggregate), CALIB)
        kept[aggregate] = [layer.mlp.tolist() for layer in selection.layers]
        params.add(count_params(loaded.model)["decoder"])
    assert kept["l2"] != kept["sum"] and kept["max"] != kept["sum"] and len(params) == 1


@pytest.mark.slow
def test_lora_recovery_lowers_held_out_perplexity_and_saves_a_plain_checkpoint(dense, tmp_path):
    from evoprune.jobs.structured import recover
    from evoprune.structured.recover import RecoverySpec, recovery_windows

    loaded = _fresh(dense)
    prune_structured(loaded, StructuredSpec("mlp", 0.2, "wanda"), CALIB)
    shapes = {n: tuple(p.shape) for n, p in loaded.model.named_parameters()}
    spec = RecoverySpec(steps=12, lr=1e-3, samples=32, seqlen=64, validation=8)
    train, validation = windows = recovery_windows(loaded.tokenizer, "wikitext2", spec)
    assert not set(map(tuple, train.tolist())) & set(map(tuple, validation.tolist()))  # held out
    record = recover(loaded, windows, spec)
    assert record["loss_last"] < record["loss_first"]
    assert record["validation_perplexity_after"] < record["validation_perplexity_before"]
    # merged: the same tensors as before, plain Linear layers, nothing left to train
    assert {n: tuple(p.shape) for n, p in loaded.model.named_parameters()} == shapes
    assert not any("lora" in n for n, _ in loaded.model.named_modules())
    assert not any(p.requires_grad for p in loaded.model.parameters())
    save_shrunk(loaded.model, loaded.tokenizer, tmp_path, {})
    assert reload_max_abs_diff(loaded.model, tmp_path, torch.arange(20).unsqueeze(0)) < 1e-4


@pytest.mark.parametrize("structure", [("mlp",), ("mlp", "heads"), ("residual",)])
@pytest.mark.parametrize("ratio", [0.1, 0.2, 0.3])
def test_profile_widths_meet_the_budget_and_slope_with_depth(structure, ratio):
    """Each slope of the auto grid meets the exact budget from above within the tolerance; slope 0 is equal
    widths; a positive slope thins deeper blocks more."""
    config = AutoConfig.for_model("llama", hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                  num_attention_heads=9, num_key_value_heads=3, head_dim=64)
    shape = decoder_shape(config)
    budget = make_budget(shape, ratio)
    for slope in PROFILE_GRID:
        counts = profile_counts(shape, structure, budget, slope)
        removed = sum(n * shape.unit_cost(k) for c in counts for k, n in c.items())
        assert budget.target <= removed <= budget.limit, slope
        per_layer = [sum(n * shape.unit_cost(k) for k, n in c.items()) for c in counts]
        if slope > 0:
            assert per_layer[-1] > per_layer[0] and per_layer == sorted(per_layer)
        if slope < 0:
            assert per_layer[-1] < per_layer[0]
    if structure != ("residual",):
        assert profile_counts(shape, structure, budget, 0.0) == [uniform_counts(shape, structure, budget)] * 30


def test_profile_auto_tries_only_the_slopes_that_meet_the_budget():
    config = AutoConfig.for_model("llama", hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                  num_attention_heads=9, num_key_value_heads=3, head_dim=64)
    shape = decoder_shape(config)
    assert feasible_slopes(shape, ("mlp",), make_budget(shape, 0.2)) == PROFILE_GRID
    # at half the decoder the steepest profiles empty their last MLPs: only the gentler slopes are tried
    steep = feasible_slopes(shape, ("mlp",), make_budget(shape, 0.5))
    assert 0.0 in steep and max(steep) < PROFILE_GRID[-1] and min(steep) > PROFILE_GRID[0]
    for slope in set(PROFILE_GRID) - set(steep):
        with pytest.raises(EvopruneError, match="gentler slope"):
            profile_counts(shape, ("mlp",), make_budget(shape, 0.5), slope)
    with pytest.raises(EvopruneError, match="no slope from -0.8 to 0.8 meets"):
        feasible_slopes(shape, ("groups",), make_budget(shape, 0.2))


def test_parse_widths():
    assert parse_widths("uniform") == ("uniform", None) and parse_widths("per-layer") == ("per-layer", None)
    assert parse_widths("profile:-0.25") == ("profile", -0.25) and parse_widths("profile:auto") == ("profile", None)
    for bad in ("profile", "profile:", "profile:x", "profile:1.5", "uniform:1", "PROFILE:0.1"):
        with pytest.raises(EvopruneError):
            parse_widths(bad)


def test_tiny_llama_profile_widths_reload(tmp_path):
    """A profile gives every block its own MLP width: saved with the remote-code file, reloaded identically."""
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=96, intermediate_size=64, num_hidden_layers=3,
                                         num_attention_heads=8, num_key_value_heads=2, head_dim=16)).eval()
    shape = decoder_shape(model.config)
    selection = allocate(shape, ("mlp",), {"mlp": torch.rand(3, 64)}, make_budget(shape, 0.15, 0.01), "profile:0.5")
    widths = [len(layer.mlp) for layer in selection.layers]
    assert widths[0] > widths[1] > widths[2]
    shrink_model(model, shape, selection)
    save_shrunk(model, None, tmp_path, {})
    assert reload_max_abs_diff(model, tmp_path, torch.arange(10).unsqueeze(0)) < 1e-5


@pytest.mark.slow
def test_profile_auto_picks_the_slope_with_the_lowest_validation_perplexity(dense):
    loaded = _fresh(dense)
    record: dict = {}
    selection = prune_structured(loaded, StructuredSpec("mlp", 0.2, "wanda", "profile:auto"), CALIB, record)
    tried = record["profile_search"]["validation_perplexity"]
    assert list(tried) == list(PROFILE_GRID)
    assert record["profile_search"]["chosen"] == min(tried, key=tried.get)
    widths = [len(layer.mlp) for layer in selection.layers]
    assert (len(set(widths)) == 1) == (record["profile_search"]["chosen"] == 0)
