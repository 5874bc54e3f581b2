"""Depth and width together (`prune --structure mlp,heads --depth N|auto`): whole blocks by ShortGPT's influence,
equal widths in the rest, exact budgets, a plain Hugging Face checkpoint, and a depth chosen on validation text."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from evoprune.cli.app import main
from evoprune.data.tokens import CalibSpec
from evoprune.errors import EvopruneError
from evoprune.jobs.structured import StructuredSpec, structured_job
from evoprune.model.loading import load_model
from evoprune.structured.allocate import allocate
from evoprune.structured.budget import make_budget, max_depth
from evoprune.structured.shape import decoder_shape

CALIB = CalibSpec("wikitext2", nsamples=4, seqlen=64, seed=0)


def _embedded_shape():
    config = AutoConfig.for_model("llama", hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                  num_attention_heads=9, num_key_value_heads=3, head_dim=64)
    return decoder_shape(config)


@pytest.mark.parametrize("ratio", [0.1, 0.2, 0.3])
def test_every_depth_meets_the_budget_exactly_with_equal_widths(ratio):
    shape = _embedded_shape()
    budget = make_budget(shape, ratio)
    gen = torch.Generator().manual_seed(1)
    scores = {"mlp": torch.rand(30, 1536, generator=gen), "heads": torch.rand(30, 9, generator=gen),
              "blocks": torch.rand(30, generator=gen)}
    deepest = max_depth(shape, budget)
    assert deepest == int(ratio * 30 - 1e-9)  # a block is 1/30 of the decoder here
    for depth in range(1, deepest + 1):
        selection = allocate(shape, ("mlp", "heads"), scores, budget, "uniform", depth)
        removed = shape.decoder_params - selection.decoder_params(shape)
        assert budget.target <= removed <= budget.limit, depth
        assert selection.uniform()
        dropped = sorted(set(range(30)) - set(selection.kept_blocks()))
        assert dropped == sorted(torch.argsort(scores["blocks"], stable=True)[:depth].tolist())


def test_depth_refuses_what_it_cannot_do():
    shape = _embedded_shape()
    scores = {"mlp": torch.rand(30, 1536), "heads": torch.rand(30, 9), "blocks": torch.rand(30)}
    budget = make_budget(shape, 0.1)
    with pytest.raises(EvopruneError, match="not less than --ratio"):
        allocate(shape, ("mlp", "heads"), scores, budget, "uniform", 3)  # 3 blocks = 10 %: nothing left to widths
    with pytest.raises(EvopruneError, match="uniform"):
        allocate(shape, ("mlp", "heads"), scores, budget, "per-layer", 1)
    with pytest.raises(EvopruneError, match="leave blocks out"):
        allocate(shape, ("blocks",), scores, budget, "uniform", 1)


@pytest.mark.parametrize(("args", "message"), [
    (["--depth", "two"], "--depth must be"),
    (["--depth", "1", "--ratio", "0.2"], "not less than --ratio"),
    (["--depth", "1", "--widths", "per-layer"], "uniform"),
    (["--depth", "1", "--structure", "blocks", "--metric", "shortgpt"], "leave blocks out"),
])
def test_bad_depth_is_one_error_line_and_writes_nothing(truncated_model_dir, tmp_path, capsys, args, message):
    out = tmp_path / "out"
    argv = ["prune", "--model", str(truncated_model_dir), "--structure", "mlp,heads", "--ratio", "0.4", *args,
            "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err
    assert not out.exists()


@pytest.mark.slow
def test_depth_auto_picks_the_best_validation_depth_and_reloads_as_plain_llama(truncated_model_dir, tmp_path,
                                                                                  capsys):
    """Real weights (SmolLM2 cut to 4 blocks), through the CLI: at 40 % the search tries depth 0 and 1, keeps the
    one with the lower validation perplexity, and the saved model reloads with transformers alone to the same
    logits."""
    argv = ["prune", "--model", str(truncated_model_dir), "--structure", "mlp,heads", "--metric", "wanda",
            "--ratio", "0.4", "--depth", "auto", "--nsamples", "4", "--seqlen", "64", "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "depth (validation perplexity)" in printed and "ms/token" in printed
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    tried = {int(k): v for k, v in report["depth_search"]["validation_perplexity"].items()}
    assert sorted(tried) == [0, 1] and all(v > 1 for v in tried.values())
    chosen = report["depth_search"]["chosen"]
    assert tried[chosen] == min(tried.values())
    assert len(report["blocks_kept"]) == 4 - chosen
    assert 0.4 <= report["params"]["removed_fraction_of_decoder"] <= 0.405
    assert report["reload_max_abs_diff"] < 1e-4
    assert report["generation"]["new_tokens"] == 16 and 0 < report["generation"]["ratio"] < 10
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["num_hidden_layers"] == 4 - chosen and "auto_map" not in config
    AutoModelForCausalLM.from_pretrained(tmp_path / "out")  # no remote code: equal widths are plain LLaMA


@pytest.mark.slow
def test_a_fixed_depth_drops_the_least_influential_block(truncated_model_dir, tmp_path):
    from evoprune.data.protocol import calib_windows
    from evoprune.structured.calibration import calibrate

    loaded = load_model(str(truncated_model_dir), "cpu", "float32")
    influence = calibrate(loaded.model, calib_windows(loaded, CALIB)).block_influence
    report = structured_job(loaded, StructuredSpec("mlp,heads", 0.4, "wanda", depth=1), CALIB, tmp_path / "out")
    assert report["blocks_kept"] == sorted(set(range(4)) - {int(torch.argmin(influence))})
    assert "depth_search" not in report and report["reload_max_abs_diff"] < 1e-4
