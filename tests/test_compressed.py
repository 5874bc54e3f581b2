"""`prune --save-format compressed-tensors`: the compressed directory decompresses to exactly the weights of the
dense save, for 2:4 and unstructured; the model card states recipe, per-layer sparsity and protocol."""

import json

import pytest
import torch
from safetensors.torch import load_file

from evoprune.cli.app import main
from evoprune.errors import EvopruneError
from evoprune.export.compressed import (
    bitmask_compress,
    compressed_format,
    decompress,
    load_decompressed,
    sparse24_compress,
)

pytestmark = pytest.mark.slow


def _prune(model_dir, out, pattern, *extra):
    sparsity = ["--sparsity", "0.5"] if pattern == "unstructured" else []
    argv = ["prune", "--model", str(model_dir), "--metric", "magnitude", "--pattern", pattern, *sparsity,
            "--out", str(out), "--device", "cpu", *extra]
    assert main(argv) == 0


def _dense_weights(directory):
    state = {}
    for path in sorted(directory.glob("model*.safetensors")):
        state.update(load_file(path))
    return state


@pytest.mark.parametrize("pattern,fmt", [("2:4", "sparse-24-bitmask"), ("unstructured", "sparse-bitmask")])
def test_compressed_save_decompresses_to_the_dense_save(truncated_model_dir, tmp_path, pattern, fmt):
    _prune(truncated_model_dir, tmp_path / "dense", pattern)
    _prune(truncated_model_dir, tmp_path / "ct", pattern, "--save-format", "compressed-tensors")

    dense = _dense_weights(tmp_path / "dense")
    restored = load_decompressed(tmp_path / "ct")
    assert sorted(restored) == sorted(dense)
    for key, tensor in dense.items():
        assert torch.equal(restored[key], tensor), key
    block = json.loads((tmp_path / "ct" / "config.json").read_text())["quantization_config"]
    assert block["quant_method"] == "compressed-tensors"
    assert block["sparsity_config"]["format"] == fmt
    assert block["sparsity_config"]["global_sparsity"] == pytest.approx(0.5, abs=1e-4)
    assert len(block["sparsity_config"]["targets"]) == 4 * 7
    stored = load_file(tmp_path / "ct" / "model.safetensors")
    assert "model.layers.0.mlp.up_proj.bitmask" in stored  # the library's names: <module>.<part>
    assert "model.layers.0.mlp.up_proj.weight" not in stored
    assert (tmp_path / "ct" / "model.safetensors").stat().st_size < (tmp_path / "dense" / "model.safetensors"
                                                                      ).stat().st_size

    # evoprune's own loader (eval, prune --model) reads the compressed directory back to the same model
    from evoprune.model.loading import load_model

    reloaded = load_model(str(tmp_path / "ct"), "cpu", "float32").model.state_dict()
    reference = load_model(str(tmp_path / "dense"), "cpu", "float32").model.state_dict()
    assert sorted(reloaded) == sorted(reference)
    assert all(torch.equal(reloaded[k], reference[k]) for k in reference)

    card = (tmp_path / "ct" / "README.md").read_text()
    report = json.loads((tmp_path / "ct" / "report.json").read_text())
    assert report["save_format"] == "compressed-tensors"
    assert f"pattern: `{pattern}`" in card and "metric: `magnitude`" in card
    layer_rows = [line for line in card.splitlines() if line.startswith("| 0.") or line.startswith("| 3.")]
    assert len(layer_rows) == 2 * 7
    assert "calibration" not in report["protocol"] or "calibration:" in card
    assert "Not measured at prune time" in card  # no --perplexity: the card says so instead of a number


def test_layouts_round_trip_and_2_4_is_checked():
    torch.manual_seed(0)
    w = torch.randn(8, 16)
    w[w.abs() < 0.7] = 0  # unstructured zeros
    parts = bitmask_compress(w)
    assert torch.equal(decompress(parts), w)
    assert parts["bitmask"].dtype == torch.uint8 and parts["bitmask"].shape == (8, 2)
    assert torch.equal(parts["row_offsets"], torch.cumsum((w != 0).sum(1), 0) - (w != 0).sum(1))
    w24 = torch.randn(8, 16)
    keep = w24.reshape(-1, 4).abs().topk(2, dim=1).indices
    w24 = (w24.reshape(-1, 4) * torch.zeros(32, 4).scatter_(1, keep, 1.0)).reshape(8, 16)
    w24[0, :4] = torch.tensor([0.0, 0.0, 0.0, 1.5])  # a group with fewer than two non-zeros
    parts = sparse24_compress(w24)
    assert parts["compressed"].shape == (8, 8)
    assert torch.equal(decompress(parts), w24)
    with pytest.raises(EvopruneError):
        sparse24_compress(w)  # unstructured: some group of four holds three non-zeros
    assert compressed_format("2:4") == "sparse-24-bitmask" and compressed_format("4:8") == "sparse-bitmask"


def test_unknown_save_format_is_one_line_exit_2(truncated_model_dir, tmp_path, capsys):
    argv = ["prune", "--model", str(truncated_model_dir), "--out", str(tmp_path / "o"), "--save-format", "gguf"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: unknown --save-format 'gguf' (use safetensors, compressed-tensors)"]
    assert not (tmp_path / "o").exists()


def test_structured_pruning_refuses_the_sparse_format(tmp_path, capsys):
    argv = ["prune", "--structure", "mlp", "--save-format", "compressed-tensors", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("error: --save-format compressed-tensors stores sparse weights")
    assert not (tmp_path / "o").exists()
