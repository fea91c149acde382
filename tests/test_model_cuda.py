"""The model on a GPU: fp16 move, peak memory and the 512 px smoke forward. Skips without an NVIDIA GPU."""

from __future__ import annotations

import pytest

from diagnostics.context import Context, Options
from diagnostics.findings import Status
from diagnostics.registry import get_check, run_check
from tests.ldm_factory import child_env, fixtures


def _cuda_available() -> bool:
    torch = pytest.importorskip("torch")
    return bool(torch.cuda.is_available())


@pytest.fixture(scope="module")
def gpu():
    if not _cuda_available():
        pytest.skip("no CUDA device: torch.cuda.is_available() is False on this machine")


def test_fp16_model_on_the_gpu_reports_memory_and_a_finite_smoke_forward(gpu, tmp_path_factory, tmp_path):
    tiny = fixtures(tmp_path_factory)
    environ = child_env([tiny["shim"]], LDM_DIAG_DTYPE="fp16", HF_HOME=tmp_path / "hf")
    ctx = Context(Options(config=tiny["configs"]["v1-inference.yaml"], checkpoint=tiny["checkpoints"]["txt2img.safetensors"],
                          device="cuda", timeout=300), environ=environ, cwd=tmp_path)
    memory = run_check(get_check("cuda.memory"), ctx).findings[0]
    smoke = run_check(get_check("model.smoke-forward"), ctx).findings[0]
    assert memory.status is Status.OK, memory.summary
    assert memory.evidence["dtype"] == "float16" and memory.evidence["peak"] > 0
    assert smoke.status is Status.OK, smoke.summary
    assert smoke.evidence["image_size"] == 512 and smoke.evidence["device"] == "cuda"
