"""GPU paths (`-m gpu`; skipped without CUDA, run by scripts/device_check.sh): the evaluator gives the CPU's masks,
one Ray actor per GPU with num_gpus=1, and bfloat16 is the GPU default."""

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.slow,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")]

FORMULAS = ["abs(W)", "abs(W)*X", "abs(W)/sqrt(Hinv)", "W**2*X"]


def _spec(model_dir, device, **extra):
    from evoprune.fitness.spec import EvalSpec

    return EvalSpec(model=str(model_dir), device=device, dtype="float32", nsamples=4, seqlen=64,
                    leaves=("W", "X", "Hinv"), fitness="layer", **extra)


def test_evaluator_on_gpu_gives_the_cpu_masks(truncated_model_dir, tmp_path, monkeypatch):
    """Same statistics (the CPU fills the cache, the GPU reads it): scoring, ranking and masking on the GPU must
    pick exactly the CPU's weights, and the fitness must agree to float32 rounding."""
    from evoprune.fitness.evaluator import Evaluator

    monkeypatch.setenv("EVOPRUNE_CACHE_DIR", str(tmp_path))
    cpu = Evaluator(_spec(truncated_model_dir, "cpu"))
    gpu = Evaluator(_spec(truncated_model_dir, "cuda"))
    assert next(gpu.loaded.model.parameters()).device.type == "cuda"
    for formula in FORMULAS:
        a, b = cpu.evaluate(formula), gpu.evaluate(formula)
        assert a["reason"] is None and b["reason"] is None, (a, b)
        assert a["mask_hash"] == b["mask_hash"], formula
        assert b["fitness"] == pytest.approx(a["fitness"], rel=1e-4), formula


def test_gpu_statistics_match_the_cpu_fitness(truncated_model_dir, tmp_path, monkeypatch):
    """Statistics computed on the GPU itself (own cache): the fitness of a tie-free metric stays within 1e-3."""
    from evoprune.fitness.evaluator import Evaluator

    monkeypatch.setenv("EVOPRUNE_CACHE_DIR", str(tmp_path / "cpu"))
    cpu = Evaluator(_spec(truncated_model_dir, "cpu")).evaluate("abs(W)*X")
    monkeypatch.setenv("EVOPRUNE_CACHE_DIR", str(tmp_path / "gpu"))
    gpu = Evaluator(_spec(truncated_model_dir, "cuda")).evaluate("abs(W)*X")
    assert gpu["fitness"] == pytest.approx(cpu["fitness"], rel=1e-3)


def test_bfloat16_is_the_gpu_default(truncated_model_dir):
    from evoprune.model.loading import load_model, resolve_dtype

    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    loaded = load_model(str(truncated_model_dir), "auto", "auto")
    param = next(loaded.model.parameters())
    assert param.device.type == "cuda" and param.dtype == torch.bfloat16


@pytest.mark.ray
def test_one_ray_actor_per_gpu_with_num_gpus_1(truncated_model_dir, tmp_path, monkeypatch):
    import ray

    from evoprune.distributed.pool import RayEvaluatorPool

    monkeypatch.setenv("EVOPRUNE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    gpus = torch.cuda.device_count()
    with RayEvaluatorPool(_spec(truncated_model_dir, "auto")) as pool:
        assert pool.size == gpus  # no --workers: one actor per GPU
        assert ray.available_resources().get("GPU", 0) == 0  # each actor holds a whole GPU (num_gpus=1)
        given = [info["gpu_ids"] for info in pool.actor_info()]
        assert all(len(ids) == 1 for ids in given), given  # num_gpus=1: exactly one GPU each
        assert len({ids[0] for ids in given}) == gpus  # and a different one each
        results = pool.map(FORMULAS)
        assert all(r["reason"] is None for r in results)
