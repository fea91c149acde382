"""compat.transformers5-clip-layout on both sides of the transformers 5 boundary (hand-made facts),
and on a real checkpoint read by the real probe."""

from __future__ import annotations

import pytest

from diagnostics.findings import Status
from diagnostics.rules.clip_layout import CODE, rule_clip_layout


def facts(style, kind="clip-l"):
    return {"path": "/models/sd.ckpt", "analysed": True,
            "text_encoder": {"present": True, "kind": kind, "key_style": style,
                             "prefixes": ["cond_stage_model.transformer.text_model."]}}


@pytest.mark.parametrize("transformers, style, status", [
    ("4.19.2", "text_model", Status.OK), ("4.57.1", "text_model", Status.OK), ("5.0.0", "text_model", Status.WARN),
    ("5.24.0", "flat", Status.OK), ("4.30.2", "flat", Status.WARN),
])
def test_layout_against_the_installed_transformers(transformers, style, status):
    finding = rule_clip_layout(facts(style), {"transformers": transformers})
    assert finding.code == CODE and finding.status is status
    if status is Status.WARN:
        assert "strict=False" in finding.summary and "Rename the keys" in finding.fix
        assert not finding.blocking
    if transformers.startswith("5") and status is Status.WARN:
        assert "`cond_stage_model.transformer.text_model.X` -> `cond_stage_model.transformer.X`" in finding.fix


def test_without_checkpoint_or_clip_it_skips():
    assert rule_clip_layout({}, {"transformers": "5.0.0"}).status is Status.SKIP
    assert rule_clip_layout(facts("open_clip", kind="openclip-h"), {"transformers": "5.0.0"}).status is Status.SKIP
    assert rule_clip_layout(facts("text_model"), {"transformers": None}).status is Status.SKIP


def test_real_sd1_checkpoint_under_the_installed_transformers(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from diagnostics.context import Context, Options
    from diagnostics.registry import get_check, run_check
    from diagnostics.util import version_at_least

    path = tmp_path / "sd1.ckpt"
    sd = {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3),
          "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": torch.zeros(8, 4),
          "cond_stage_model.transformer.text_model.final_layer_norm.weight": torch.zeros(4)}
    torch.save({"state_dict": sd}, str(path))
    ctx = Context(options=Options(checkpoint=str(path)), environ={"HOME": str(tmp_path)}, cwd=tmp_path)
    finding = run_check(get_check(CODE), ctx).findings[0]
    five = version_at_least(transformers.__version__, "5.0.0.dev0")
    assert finding.status is (Status.WARN if five else Status.OK), finding.summary
