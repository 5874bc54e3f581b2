"""DISP-style residual channel subsets (`prune --structure residual`): each sublayer reads and writes its own
subset S of the hidden channels. Exact budgets, index-select / index-add semantics (S = everything is the dense
model bit for bit; a real S equals the dense model with the removed columns and rows zeroed), reload parity with
transformers alone, bad input.

Real weights: the embedded SmolLM2 cut to 4 blocks (conftest), short calibration windows.
"""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from transformers import AutoConfig, GPT2Config, LlamaConfig, MistralConfig

from evoprune.cli.app import main
from evoprune.data.tokens import CalibSpec
from evoprune.errors import EvopruneError
from evoprune.jobs.structured import StructuredSpec, unit_scores
from evoprune.model.loading import load_model
from evoprune.structured.allocate import allocate
from evoprune.structured.budget import make_budget
from evoprune.structured.measure import count_params
from evoprune.structured.remote_modeling import SubsetLlamaAttention, SubsetLlamaMLP
from evoprune.structured.residual import residual_channel_sums
from evoprune.structured.save import reload_max_abs_diff, save_shrunk
from evoprune.structured.selection import full_selection
from evoprune.structured.shape import decoder_shape
from evoprune.structured.shrink import shrink_model
from evoprune.structured.spec import shrink_with_scores

CALIB = CalibSpec("wikitext2", nsamples=4, seqlen=64, seed=0)


@pytest.fixture(scope="module")
def dense(truncated_model_dir):
    return load_model(str(truncated_model_dir), "cpu", "float32")


def _ids(model, n: int = 48) -> torch.Tensor:
    return torch.arange(n).unsqueeze(0) * 11 % model.config.vocab_size


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids, use_cache=False).logits


def _embedded_shape():
    config = AutoConfig.for_model("llama", hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                  num_attention_heads=9, num_key_value_heads=3, head_dim=64)
    return decoder_shape(config)


def test_a_residual_channel_sums_its_columns_in_and_its_row_out():
    """Channel j of the attention sublayer: column j of q/k/v, row j of o_proj; of the MLP: column j of gate/up,
    row j of down_proj."""
    hidden, q, kv, inter = 8, 8, 4, 6
    s = {n: torch.zeros(o, i) for n, (o, i) in {
        "self_attn.q_proj": (q, hidden), "self_attn.k_proj": (kv, hidden), "self_attn.v_proj": (kv, hidden),
        "self_attn.o_proj": (hidden, q), "mlp.gate_proj": (inter, hidden), "mlp.up_proj": (inter, hidden),
        "mlp.down_proj": (hidden, inter)}.items()}
    s["self_attn.q_proj"][:, 3] = 1.0
    s["self_attn.v_proj"][:, 3] = 1.0
    s["self_attn.o_proj"][5] = 2.0
    s["mlp.up_proj"][:, 1] = 1.0
    s["mlp.down_proj"][6] = 1.0
    sums = residual_channel_sums(s)
    assert sums["resid_attn"].tolist() == [0, 0, 0, q + kv, 0, 2.0 * q, 0, 0]
    assert sums["resid_mlp"].tolist() == [0, inter, 0, 0, 0, 0, inter, 0]


def test_unit_costs_on_the_embedded_shape():
    shape = _embedded_shape()
    assert shape.resid_attn_cost == (576 + 192 + 192) + 576  # q, k, v input columns + the o_proj output row
    assert shape.resid_mlp_cost == 2 * 1536 + 1536  # gate, up input columns + the down_proj output row


@pytest.mark.parametrize("ratio", [0.05, 0.2, 0.5])
@pytest.mark.parametrize("widths", ["uniform", "per-layer"])
def test_budgets_are_exact_on_the_embedded_shape(ratio, widths):
    shape = _embedded_shape()
    budget = make_budget(shape, ratio)
    gen = torch.Generator().manual_seed(0)
    scores = {"resid_attn": torch.rand(30, 576, generator=gen), "resid_mlp": torch.rand(30, 576, generator=gen) * 3}
    selection = allocate(shape, ("residual",), scores, budget, widths)
    removed = shape.decoder_params - selection.decoder_params(shape)
    assert budget.target <= removed <= budget.limit
    assert not selection.uniform() and selection.residual()  # always the remote-code model
    for keep in selection.layers:
        for kept in (keep.resid_attn, keep.resid_mlp):
            assert 1 <= len(kept) <= 576 and torch.equal(kept, torch.unique(kept))  # sorted, distinct
        assert len(keep.q_heads) == 9 and len(keep.kv_heads) == 3 and len(keep.mlp) == 1536
    widths_ = selection.widths()
    if widths == "uniform":
        n_attn, n_mlp = 576 - widths_["resid_attn"][0], 576 - widths_["resid_mlp"][0]
        assert set(widths_["resid_attn"]) == {576 - n_attn} and set(widths_["resid_mlp"]) == {576 - n_mlp}
        # the same share of channels from both kinds (in proportion to parameter cost), up to the attention fill
        assert abs(n_attn - n_mlp) <= math.ceil(shape.resid_mlp_cost / shape.resid_attn_cost)
        for layer, keep in enumerate(selection.layers):  # each sublayer drops its lowest-scoring channels
            for kind, kept, n in (("resid_attn", keep.resid_attn, n_attn), ("resid_mlp", keep.resid_mlp, n_mlp)):
                lowest = torch.argsort(scores[kind][layer], stable=True)[:n]
                assert not set(lowest.tolist()) & set(kept.tolist()) and len(kept) == 576 - n
    else:  # a global ranking of standardised scores: nothing kept ranks below anything removed
        z = {k: (v - v.mean()) / v.std() for k, v in scores.items()}
        removed_z, kept_z = [], []
        for layer, keep in enumerate(selection.layers):
            for kind, kept in (("resid_attn", keep.resid_attn), ("resid_mlp", keep.resid_mlp)):
                mask = torch.ones(576, dtype=torch.bool)
                mask[kept] = False
                removed_z.append(z[kind][layer][mask])
                kept_z.append(z[kind][layer][~mask])
        assert torch.cat(removed_z).max() <= torch.cat(kept_z).min()
        assert len(set(widths_["resid_attn"] + widths_["resid_mlp"])) > 1  # widths differ between sublayers


def test_uniform_refuses_a_ratio_its_steps_cannot_meet():
    shape = _embedded_shape()
    with pytest.raises(EvopruneError, match="cannot be met with uniform resid_attn steps"):
        allocate(shape, ("residual",), {}, make_budget(shape, 0.2, tolerance=0.0), "uniform")
    with pytest.raises(EvopruneError, match="out of reach"):
        allocate(shape, ("residual",), {}, make_budget(shape, 0.999), "per-layer")


def test_all_channels_give_the_dense_logits_exactly(dense):
    """S = every channel still runs the subset path (index-select, smaller Linears, index-add) and must give the
    dense model's logits bit for bit: the channels outside S get + 0, the others the same sums."""
    shape = decoder_shape(dense.model.config)
    selection = full_selection(shape)
    for keep in selection.layers:
        keep.resid_attn, keep.resid_mlp = torch.arange(shape.hidden), torch.arange(shape.hidden)
    model = copy.deepcopy(dense.model)
    shrink_model(model, shape, selection)
    assert all(isinstance(b.self_attn, SubsetLlamaAttention) and isinstance(b.mlp, SubsetLlamaMLP)
               for b in model.model.layers)
    ids = _ids(model)
    assert torch.equal(_logits(model, ids), _logits(dense.model, ids))


def _zero_outside(model, selection) -> None:
    """The masking view of residual subsets: each sublayer's input columns and output rows outside S zeroed."""
    with torch.no_grad():
        for block, keep in zip(model.model.layers, selection.layers, strict=True):
            for kept, reads, writes in ((keep.resid_attn, ("q_proj", "k_proj", "v_proj"), "o_proj"),
                                        (keep.resid_mlp, ("gate_proj", "up_proj"), "down_proj")):
                sub = block.self_attn if writes == "o_proj" else block.mlp
                outside = torch.ones(model.config.hidden_size, dtype=torch.bool)
                outside[kept] = False
                for name in reads:
                    getattr(sub, name).weight[:, outside] = 0
                getattr(sub, writes).weight[outside] = 0


@pytest.mark.slow
@pytest.mark.parametrize(("widths", "metric"), [("uniform", "magnitude"), ("per-layer", "wanda")])
def test_shrunk_model_is_the_masked_dense_model_meets_the_budget_and_reloads(dense, tmp_path, widths, metric):
    """Index-select before and index-add after each sublayer are exactly the dense model with the removed
    residual columns (q/k/v, gate/up) and rows (o_proj, down_proj) zeroed; the parameter count is the arithmetic;
    transformers alone reloads the saved directory to the same logits."""
    from evoprune.data.protocol import calib_windows

    shape = decoder_shape(dense.model.config)
    windows = calib_windows(dense, CALIB) if metric != "magnitude" else None
    scores, calibration = unit_scores(dense, shape, metric, CALIB, windows)
    spec = StructuredSpec("residual", 0.2, metric, widths)
    _, budget = spec.check(dense.model.config)
    shrunk, masked = copy.deepcopy(dense.model), copy.deepcopy(dense.model)
    selection = shrink_with_scores(shrunk, spec, scores, calibration)

    removed = count_params(dense.model)["decoder"] - count_params(shrunk)["decoder"]
    assert removed == shape.decoder_params - selection.decoder_params(shape)
    assert budget.target <= removed <= budget.limit
    for block, keep in zip(shrunk.model.layers, selection.layers, strict=True):
        assert block.self_attn.q_proj.in_features == block.self_attn.o_proj.out_features == len(keep.resid_attn)
        assert block.mlp.up_proj.in_features == block.mlp.down_proj.out_features == len(keep.resid_mlp)
        assert torch.equal(block.self_attn.resid_index, keep.resid_attn)

    _zero_outside(masked, selection)
    ids = _ids(dense.model)
    # float64: the two differ only in summation order, which float32 rounding amplifies to ~1e-4 in the logits
    got, want = _logits(copy.deepcopy(shrunk).double(), ids), _logits(masked.double(), ids)
    diff = (got - want).abs().max().item()
    moved = (got - _logits(dense.model, ids)).abs().max().item()
    assert diff < 1e-9 and moved > 1e-2  # equal to the masked model, and something was removed

    save_shrunk(shrunk, None, tmp_path, {})
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"] == {"AutoModelForCausalLM": "modeling_evoprune.EvopruneLlamaForCausalLM"}
    assert config["evoprune_residual"] == {"attn": selection.widths()["resid_attn"],
                                           "mlp": selection.widths()["resid_mlp"]}
    assert "evoprune_widths" not in config and (tmp_path / "modeling_evoprune.py").is_file()
    reload = reload_max_abs_diff(shrunk, tmp_path, ids)
    print(f"residual {widths} {metric}: removed {removed:,} of {shape.decoder_params:,}, shrunk vs masked "
          f"{diff:.2e}, reload {reload:.2e}")
    assert reload < 1e-4


@pytest.mark.slow
def test_cli_prunes_saves_and_reports(truncated_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["prune", "--model", str(truncated_model_dir), "--structure", "residual", "--ratio", "0.2", "--metric",
            "wanda", "--widths", "per-layer", "--nsamples", "4", "--seqlen", "64", "--out", str(out)]
    assert main(argv) == 0
    assert "reload max" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert 0.2 <= report["params"]["removed_fraction_of_decoder"] <= 0.205
    assert report["reload_max_abs_diff"] < 1e-4
    assert len(report["widths"]["resid_attn"]) == len(report["widths"]["resid_mlp"]) == 4


@pytest.mark.parametrize(("args", "message"), [
    (["--depth", "1"], "--depth with --structure residual"),
    (["--depth", "auto"], "--depth with --structure residual"),
    (["--ratio", "0.999"], "out of reach"),
    (["--tolerance", "0"], "cannot be met"),
    (["--metric", "flap"], "flap"),
    (["--structure", "residual,mlp"], "cannot be combined"),
])
def test_bad_input_is_one_error_line_and_writes_nothing(truncated_model_dir, tmp_path, capsys, args, message):
    out = tmp_path / "out"
    argv = ["prune", "--model", str(truncated_model_dir), "--structure", "residual", *args, "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err
    assert not out.exists()


@pytest.mark.parametrize(("config", "message"), [
    (MistralConfig(vocab_size=64, hidden_size=32, intermediate_size=16, num_hidden_layers=1, num_attention_heads=4,
                   num_key_value_heads=2), "LLaMA modeling file"),
    (GPT2Config(n_layer=2, n_embd=32, n_head=2), "LLaMA-family"),
])
def test_a_model_without_the_llama_modeling_is_refused(tmp_path, capsys, config, message):
    config.save_pretrained(tmp_path / "model")
    out = tmp_path / "out"
    assert main(["prune", "--model", str(tmp_path / "model"), "--structure", "residual", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and not out.exists()


def test_tune_refuses_residual():
    from evoprune.jobs.tune_config import TuneConfig

    with pytest.raises(EvopruneError, match="residual"):
        TuneConfig(structure="residual")


def test_a_tiny_llama_reloads_with_residual_subsets(tmp_path):
    """Architecture coverage only (random weights, 4 query heads over 2 KV heads, the KV cache in generate)."""
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=24, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, head_dim=8)).eval()
    shape = decoder_shape(model.config)
    scores = {"resid_attn": torch.rand(2, 32), "resid_mlp": torch.rand(2, 32)}
    selection = allocate(shape, ("residual",), scores, make_budget(shape, 0.3, 0.02), "per-layer")
    shrink_model(model, shape, selection)
    save_shrunk(model, None, tmp_path, {})
    ids = torch.arange(10).unsqueeze(0)
    assert reload_max_abs_diff(model, tmp_path, ids) < 1e-5
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path, trust_remote_code=True).eval()
    kwargs = {"max_new_tokens": 5, "do_sample": False, "pad_token_id": 0}
    assert torch.equal(model.generate(ids, **kwargs), reloaded.generate(ids, **kwargs))
