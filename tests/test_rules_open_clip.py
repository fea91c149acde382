"""compat.open-clip-version on both sides of each measured open_clip boundary (1.1.1, 2.26.1), with and
without an SD 2.x config."""

import pytest

from diagnostics.findings import Status

from .rules_helpers import evaluate

SD2 = {"given": True, "loaded": True,
       "summary": {"cond_stage_config": {"target": "ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder"}}}
SD1 = {"given": True, "loaded": True,
       "summary": {"cond_stage_config": {"target": "ldm.modules.encoders.modules.FrozenCLIPEmbedder"}}}
NO_CONFIG = {"given": False, "loaded": False}


def open_clip(version, config):
    return evaluate("compat.open-clip-version", versions={"open_clip_torch": version}, ldm_config=config)


@pytest.mark.parametrize("version, config, status", [
    ("1.0.1", SD2, Status.FAIL),   # no ViT-H-14 config yet
    ("1.1.1", SD2, Status.OK),
    ("2.7.0", SD2, Status.OK),     # Stability's pin
    ("2.24.0", SD2, Status.OK),    # last sequence-first release
    ("2.26.1", SD2, Status.FAIL),  # batch-first transformer
    ("3.3.0", SD2, Status.FAIL),
    ("2.24.0", NO_CONFIG, Status.OK),
    ("2.26.1", NO_CONFIG, Status.WARN),
    ("1.0.1", NO_CONFIG, Status.WARN),
    ("3.3.0", SD1, Status.OK),     # SD 1.x never builds open_clip
    (None, SD1, Status.OK),
    (None, NO_CONFIG, Status.SKIP),
    (None, SD2, Status.FAIL),
])
def test_open_clip_version_boundaries(version, config, status):
    finding = open_clip(version, config)
    assert (finding.code, finding.status) == ("compat.open-clip-version", status)
    assert finding.blocking is (status is Status.FAIL)


def test_too_new_names_the_attn_mask_error_and_the_pin():
    finding = open_clip("2.26.1", SD2)
    assert "attn_mask" in finding.summary and "batch-first" in finding.summary
    assert "open-clip-torch==2.7.0" in finding.fix and "batch_first = False" in finding.fix


def test_too_old_names_the_missing_model_config():
    finding = open_clip("1.0.1", SD2)
    assert "Model config for ViT-H-14 not found" in finding.summary


def test_the_installed_open_clip_on_this_machine_is_judged_by_the_same_rule():
    from diagnostics.context import Context, Options
    from diagnostics.registry import get_check, run_check

    result = run_check(get_check("compat.open-clip-version"), Context(Options(), environ={}))
    assert result.findings[0].status in (Status.OK, Status.WARN, Status.SKIP)
