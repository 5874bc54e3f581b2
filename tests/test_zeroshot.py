"""Zero-shot through lm-evaluation-harness with evoprune's local task definitions (no hub).

A synthetic BLiMP file is scored by lm-eval on the truncated model and compared with the same log-likelihood
comparison done here by hand; swapping good and bad must turn the accuracy into its complement.
"""

import gzip
import json

import pytest
import torch

from evoprune.cli.app import main
from evoprune.errors import EvopruneError
from evoprune.evaluation.harness import check_limit, local_task_names, parse_tasks, run_tasks, task_manager
from evoprune.model.loading import load_model

pytestmark = pytest.mark.slow

PAIRS = [("The cat sat on the mat.", "The cat sat the on mat."),
         ("She has eaten the apples.", "She have eaten the apples."),
         ("Who did you see?", "Who did you see him?"),
         ("These dogs bark loudly.", "This dogs bark loudly."),
         ("He wrote a letter to her.", "He wrote a letter to herself."),
         ("The books are on the table.", "The books is on the table."),
         ("I think that it rains.", "I think it that rains."),
         ("Many people came to the party.", "Much people came to the party.")]


def _write_set(root, name, pairs):
    folder = root / "blimp"
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / f"{name}.jsonl.gz", "wt") as fh:
        for good, bad in pairs:
            fh.write(json.dumps({"sentence_good": good, "sentence_bad": bad, "UID": name}) + "\n")


def _by_hand(loaded, good: str, bad: str) -> bool:
    """lm-eval's rule for an empty context: BOS (else EOS) then " " + sentence; sum of token log-probs."""
    tok = loaded.tokenizer
    prefix = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id

    def score(sentence: str) -> float:
        ids = tok(" " + sentence, add_special_tokens=False)["input_ids"]
        full = torch.tensor([[prefix, *ids]])
        with torch.no_grad():
            logp = torch.log_softmax(loaded.model(full).logits[0, :-1].float(), dim=-1)
        return float(logp[torch.arange(len(ids)), full[0, 1:]].sum())

    return score(good) > score(bad)


@pytest.fixture(scope="module")
def small_model(truncated_model_dir):
    return load_model(str(truncated_model_dir), "cpu", "float32")


def test_local_blimp_file_scores_as_the_log_likelihood_comparison(small_model, tmp_path, monkeypatch):
    _write_set(tmp_path, "adjunct_island", PAIRS)
    _write_set(tmp_path, "causative", [(bad, good) for good, bad in PAIRS])  # the same pairs, swapped
    monkeypatch.setenv("EVOPRUNE_DATA_DIR", str(tmp_path))
    expected = sum(_by_hand(small_model, g, b) for g, b in PAIRS) / len(PAIRS)

    result = run_tasks(small_model, "blimp_adjunct_island,blimp_causative", batch_size=4)

    straight, swapped = result["results"]["blimp_adjunct_island"], result["results"]["blimp_causative"]
    assert straight["acc"] == pytest.approx(expected)
    assert swapped["acc"] == pytest.approx(1 - expected)
    assert straight["examples"] == len(PAIRS)
    p = expected
    assert straight["acc_stderr"] == pytest.approx((p * (1 - p) / (len(PAIRS) - 1)) ** 0.5)


def test_limit_scores_the_first_pairs_only(small_model, tmp_path, monkeypatch):
    _write_set(tmp_path, "adjunct_island", PAIRS)
    monkeypatch.setenv("EVOPRUNE_DATA_DIR", str(tmp_path))
    result = run_tasks(small_model, ["blimp_adjunct_island"], limit=3, batch_size=4)
    expected = sum(_by_hand(small_model, g, b) for g, b in PAIRS[:3]) / 3
    assert result["results"]["blimp_adjunct_island"]["examples"] == 3
    assert result["results"]["blimp_adjunct_island"]["acc"] == pytest.approx(expected)
    assert result["limit"] == 3


def test_blimp_group_lists_all_67_local_sets_and_the_shared_data_has_them():
    from evoprune.data.text import data_dir

    names = local_task_names()
    sets = sorted(n for n in names if n.startswith("blimp_"))
    assert "blimp" in names and len(sets) == 67
    files = sorted(f"blimp_{p.name.removesuffix('.jsonl.gz')}" for p in (data_dir() / "blimp").glob("*.jsonl.gz"))
    assert files == sets


def test_task_names_and_limit_are_validated():
    assert parse_tasks(["blimp, blimp_causative", "blimp"]) == ["blimp", "blimp_causative"]
    with pytest.raises(EvopruneError):
        parse_tasks(" , ")
    with pytest.raises(EvopruneError):
        check_limit(0)
    with pytest.raises(EvopruneError, match="unknown lm-eval task"):
        task_manager(["blimp_no_such_set"])


def test_eval_cli_rejects_an_unknown_task_before_loading(capsys):
    assert main(["eval", "--tasks", "blimp_no_such_set", "--limit", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "blimp_no_such_set" in err[0]


def test_baselines_tasks_column_scores_each_rows_own_model(truncated_model_dir, tmp_path, monkeypatch):
    """`baselines --tasks`: the dense row scores the dense model and the magnitude 2:4 row the pruned one (the same
    accuracy as `prune` then scoring the saved directory)."""
    from evoprune.data.text import data_dir

    for name in ("wikitext2-test.txt", "wikitext2-valid.txt"):
        (tmp_path / name).symlink_to(data_dir() / name)
    _write_set(tmp_path, "adjunct_island", PAIRS)
    monkeypatch.setenv("EVOPRUNE_DATA_DIR", str(tmp_path))
    common = ["--model", str(truncated_model_dir), "--device", "cpu", "--pattern", "2:4"]
    out = tmp_path / "baselines.json"
    assert main(["baselines", *common, "--method", "magnitude", "--tasks", "blimp_adjunct_island",
                 "--max-eval-tokens", "256", "--eval-seqlen", "128", "--json", str(out)]) == 0
    rows = {r["method"]: r for r in json.loads(out.read_text())["rows"]}
    assert main(["prune", *common, "--metric", "magnitude", "--out", str(tmp_path / "pruned")]) == 0

    def accuracy(model_dir):
        return run_tasks(load_model(str(model_dir), "cpu", "float32"), "blimp_adjunct_island", batch_size=4)[
            "results"]["blimp_adjunct_island"]["acc"]

    assert rows["dense"]["zeroshot"]["scores"]["blimp_adjunct_island"]["acc"] == accuracy(truncated_model_dir)
    assert rows["magnitude"]["zeroshot"]["scores"]["blimp_adjunct_island"]["acc"] == accuracy(tmp_path / "pruned")


def _zeroshot_benchmark():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "zeroshot.py"
    spec = importlib.util.spec_from_file_location("zeroshot_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_zeroshot_report_is_written_beside_its_rows_file_with_paired_columns(tmp_path):
    bench = _zeroshot_benchmark()
    sets = [f"blimp_s{i}" for i in range(4)]

    def row(method, pattern, accs):
        return {"method": method, "pattern": pattern, "sparsity": 0.5, "perplexity": 10.0, "blimp_acc": sum(accs) / 4,
                "blimp_stderr": 0.01, "blimp_examples": 400, "per_set": dict(zip(sets, accs, strict=True)),
                "lm_eval_version": "x"}

    rows = [row("dense", "-", [0.9] * 4), row("wanda", "2:4", [0.6, 0.7, 0.6, 0.7]),
            row("sparsegpt", "2:4", [0.7, 0.7, 0.7, 0.7]), row("x.json", "2:4", [0.8, 0.8, 0.8, 0.8])]
    rows_path = tmp_path / "full.rows.jsonl"
    bench.write(rows, {"blimp_limit": 1000, "device": "cuda:0", "dtype": "float32", "evolved": []}, rows_path)
    report = (tmp_path / "full.md").read_text()
    assert json.loads((tmp_path / "full.json").read_text())["protocol"]["device"] == "cuda:0"
    assert f"--device cuda --limit 1000 --rows {rows_path}" in report
    # x.json: +15 points against Wanda (per-set differences 20, 10, 20, 10), +10 against SparseGPT (no spread)
    assert "| x.json | 2:4 | 0.5000 | 10.00 | 80.0 | 1.0 | -10.0 | +15.0 ± 2.9 | +10.0 ± 0.0 |" in report
    assert "| sparsegpt | 2:4 | 0.5000 | 10.00 | 70.0 | 1.0 | -20.0 | +5.0 ± 2.9 | - |" in report
    assert not (bench.RESULTS / "full.md").exists()
