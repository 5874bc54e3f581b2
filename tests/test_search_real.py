"""A tiny search end to end through the CLI on the embedded model cut to 4 blocks: real weights, real wikitext2
calibration, the real in-process Evaluator (layer fitness) and a real perplexity re-score."""

import json

import pytest
import torch
import yaml

from evoprune.cli.app import main
from evoprune.search import run_dir


@pytest.mark.slow
def test_tiny_search_on_the_truncated_embedded_model_improves_on_generation_0(truncated_model_dir, tmp_path,
                                                                               monkeypatch):
    monkeypatch.setenv("EVOPRUNE_CACHE_DIR", str(tmp_path / "cache"))
    torch.set_num_threads(1)
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({
        "leaves": ["W", "X", "Hinv"], "operators": ["add", "mul", "div", "abs", "sqrt", "log", "sqr", "rownorm"],
        "powers": [0.5, 1.5], "constants": [0.5, 2.0], "population": 12, "generations": 5, "seed": 4,
        "init_min_height": 2, "init_max_height": 3, "rescore_top": 1,
        "evaluation": {"model": str(truncated_model_dir), "device": "cpu", "dtype": "float32", "nsamples": 4,
                       "seqlen": 64, "leaves": ["W", "X", "Hinv"], "eval_max_tokens": 512, "eval_seqlen": 128}}))
    out = tmp_path / "run"
    assert main(["search", "--config", str(space), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / run_dir.CANDIDATES).read_text().splitlines()]
    best_of = {g: min(r["fitness"] for r in rows if r["generation"] == g and r["fitness"] is not None)
               for g in range(5)}  # a failed candidate's fitness (inf) is written as null
    assert best_of[4] < best_of[0], best_of
    best = json.loads((out / run_dir.BEST).read_text())
    top = best["best"][0]
    assert top["fitness"] == pytest.approx(best_of[4]) and top["perplexity"] > 1  # re-scored on the test split
    assert best["protocol"]["model"].endswith(truncated_model_dir.name)
