"""Compat rules on hand-made facts: both sides of every version boundary."""

import pytest

from diagnostics.findings import Status
from diagnostics.rules import compat

from .rules_helpers import evaluate

NO_LDM = {"found": False, "path": None, "rank_zero_only_import": None}
LDM_IMPORTS = {
    "found": True,
    "path": "repo/ldm",
    "rank_zero_only_import": [{"file": "ldm/models/diffusion/ddpm.py", "line": 20,
                               "code": "from pytorch_lightning.utilities.distributed import rank_zero_only"}],
}
LDM_PATCHED = {"found": True, "path": "repo/ldm", "rank_zero_only_import": []}


@pytest.mark.parametrize("pl, ldm, status", [
    ("1.4.2", LDM_IMPORTS, Status.OK),
    ("1.7.7", LDM_IMPORTS, Status.OK),
    ("1.8.0", LDM_IMPORTS, Status.FAIL),
    ("1.8.1", LDM_IMPORTS, Status.OK),
    ("1.9.5", LDM_IMPORTS, Status.OK),
    ("2.0.0", LDM_IMPORTS, Status.FAIL),
    ("2.5.1", LDM_IMPORTS, Status.FAIL),
    ("2.5.1", LDM_PATCHED, Status.OK),
    ("2.5.1", NO_LDM, Status.WARN),
    (None, LDM_IMPORTS, Status.SKIP),
])
def test_pl_rank_zero_only_boundaries(pl, ldm, status):
    f = evaluate("compat.pl-rank-zero-only", versions={"pytorch_lightning": pl}, ldm=ldm)
    assert f.status is status
    assert f.code == "compat.pl-rank-zero-only"
    if status is Status.FAIL:
        assert "ldm/models/diffusion/ddpm.py:20" in f.summary
        assert "rank_zero_only" in f.fix and f.blocking


@pytest.mark.parametrize("tv, status", [("4.19.2", Status.OK), ("4.30.2", Status.OK), ("4.31.0", Status.INFO),
                                        ("5.24.0", Status.INFO), (None, Status.SKIP)])
def test_transformers_position_ids_boundary_is_4_31(tv, status):
    f = evaluate("compat.transformers-position-ids", versions={"transformers": tv})
    assert f.status is status
    if status is Status.INFO:
        assert "position_ids" in f.summary and "strict=False" in f.fix and not f.blocking


@pytest.mark.parametrize("tv, env, status", [
    ("1.13.1", {}, Status.OK),
    ("2.5.1+cu124", {}, Status.OK),
    ("2.6.0", {}, Status.WARN),
    ("2.13.0+cpu", {}, Status.WARN),
    ("2.13.0", {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}, Status.INFO),
    (None, {}, Status.SKIP),
])
def test_torch_weights_only_default_boundary_is_2_6(tv, env, status):
    f = evaluate("compat.torch-weights-only-default", versions={"torch": tv}, environ=env)
    assert f.status is status
    if status is Status.WARN:
        assert "weights_only=True" in f.summary and "add_safe_globals" in f.fix


@pytest.mark.parametrize("numpy, torch, status", [
    ("1.26.4", "2.1.2", Status.OK),
    ("2.0.0", "2.2.2", Status.FAIL),
    ("2.1.0", "1.12.1+cu113", Status.FAIL),
    ("2.0.0", "2.3.0", Status.OK),
    ("2.4.6", "2.14.1", Status.OK),
    (None, "2.1.0", Status.SKIP),
])
def test_numpy2_abi(numpy, torch, status):
    f = evaluate("compat.numpy2-abi", versions={"numpy": numpy, "torch": torch})
    assert f.status is status
    if status is Status.FAIL:
        assert f.fix == "`pip install 'numpy<2'`"


@pytest.mark.parametrize("versions, declared, status, text", [
    ({"huggingface_hub": "0.25.2", "diffusers": "0.27.0"}, [], Status.OK, None),
    ({"huggingface_hub": "0.26.0", "diffusers": "0.27.0"}, [], Status.FAIL, "cached_download"),
    ({"huggingface_hub": "0.26.0", "diffusers": "0.28.2"}, [], Status.FAIL, "cached_download"),
    ({"huggingface_hub": "0.26.0", "diffusers": "0.29.2"}, [], Status.OK, None),
    ({"huggingface_hub": "0.36.0", "transformers": "4.19.2"}, [], Status.OK, None),
    ({"huggingface_hub": "1.0.0", "transformers": "4.19.2"}, [], Status.FAIL, "HfFolder"),
    ({"huggingface_hub": "1.0.0", "transformers": "4.30.2"}, [], Status.OK, None),
    ({"huggingface_hub": "2.4.0"}, [{"dist": "transformers", "version": "4.30.2", "spec": "<1.0,>=0.14.1"}],
     Status.WARN, "transformers 4.30.2 requires huggingface-hub<1.0,>=0.14.1"),
    ({"huggingface_hub": None}, [], Status.SKIP, None),
])
def test_hub_cached_download(versions, declared, status, text):
    f = evaluate("compat.hub-cached-download", versions=versions, hub_requirements=declared)
    assert f.status is status
    if text:
        assert text in f.summary


@pytest.mark.parametrize("tv, status", [("4.19.2", Status.OK), ("4.57.1", Status.OK), ("5.0.0", Status.INFO),
                                        (None, Status.SKIP)])
def test_tokenizer_silent_empty_boundary_is_5(tv, status):
    f = evaluate("compat.tokenizer-silent-empty", versions={"transformers": tv})
    assert f.status is status
    if status is Status.INFO:
        assert "[0, 2, 2" in f.summary


def test_xformers_missing_is_info_not_blocking():
    f = evaluate("compat.xformers-missing", versions={"xformers": None})
    assert (f.status, f.blocking) == (Status.INFO, False)
    assert "Proceeding without it" in f.summary
    assert evaluate("compat.xformers-missing", versions={"xformers": "0.0.28"}).status is Status.OK


def test_hub_requirement_conflicts_reads_real_metadata():
    """Runs against the installed distributions: every entry names a dist whose spec excludes the hub."""
    from importlib.metadata import version

    from packaging.specifiers import SpecifierSet

    try:
        hub = version("huggingface_hub")
    except Exception:
        pytest.skip("huggingface_hub is not installed")
    for c in compat.hub_requirement_conflicts():
        assert not SpecifierSet(c["spec"]).contains(hub, prereleases=True)
