"""Reading the LDM yaml: values, the line of each key, and every unreadable file as a fact with its line."""

from __future__ import annotations

import pytest

from diagnostics.probes.ldm_config import collect_targets, find_target, key_lines, read_ldm_config

pytest.importorskip("yaml")

CONFIG = """\
model:
  target: ldm.models.diffusion.ddpm.LatentInpaintDiffusion
  params:
    conditioning_key: hybrid
    channels: 4
    scheduler_config:
      target: ldm.lr_scheduler.LambdaLinearScheduler
    unet_config:
      target: ldm.modules.diffusionmodules.openaimodel.UNetModel
      params:
        in_channels: 9
        context_dim: 768
    first_stage_config:
      target: ldm.models.autoencoder.AutoencoderKL
      params:
        embed_dim: 4
        ddconfig: {z_channels: 4, ch: 128}
        lossconfig: {target: torch.nn.Identity}
    cond_stage_config:
      target: ldm.modules.encoders.modules.FrozenCLIPEmbedder
"""


def write(tmp_path, text, name="config.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_reads_values_and_lines_and_defaults_use_ema_to_true_for_ldm_classes(tmp_path):
    facts = read_ldm_config(write(tmp_path, CONFIG))
    assert facts["loaded"] and facts["error"] is None
    summary = facts["summary"]
    assert summary["target"] == "ldm.models.diffusion.ddpm.LatentInpaintDiffusion"
    assert summary["unet_config"]["params"] == {"in_channels": 9, "context_dim": 768}
    assert summary["use_ema"] == {"value": None, "explicit": False, "effective": True}
    assert summary["cond_stage_config"]["target"].endswith("FrozenCLIPEmbedder")
    assert facts["lines"]["model.params.unet_config.params.in_channels"] == 11
    assert [t["path"] for t in facts["targets"]] == [
        "model", "model.params.scheduler_config", "model.params.unet_config", "model.params.first_stage_config",
        "model.params.first_stage_config.params.lossconfig", "model.params.cond_stage_config"]


def test_explicit_use_ema_false_is_kept(tmp_path):
    facts = read_ldm_config(write(tmp_path, CONFIG.replace("    channels: 4\n", "    channels: 4\n    use_ema: False\n")))
    assert facts["summary"]["use_ema"] == {"value": False, "explicit": True, "effective": False}


def test_a_tab_in_the_indentation_is_reported_with_its_line_and_text(tmp_path):
    bad = CONFIG.replace("        context_dim: 768", "\tcontext_dim: 768")
    facts = read_ldm_config(write(tmp_path, bad))
    err = facts["error"]
    assert not facts["loaded"] and err["kind"] == "syntax"
    assert err["line"] == 12 and err["source_line"] == "\tcontext_dim: 768"


def test_an_unclosed_list_points_at_the_line_where_parsing_stopped(tmp_path):
    facts = read_ldm_config(write(tmp_path, "model:\n  target: a.B\n  params:\n    x: [1, 2\n    y: 3\n"))
    assert facts["error"]["kind"] == "syntax" and facts["error"]["line"] == 5


def test_interpolation_to_a_missing_key_names_the_key_and_line(tmp_path):
    pytest.importorskip("omegaconf")
    facts = read_ldm_config(write(tmp_path, "model:\n  target: a.B\n  params:\n    size: ${nowhere}\n"))
    err = facts["error"]
    assert err["kind"] == "interpolation" and err["key"] == "model.params.size" and err["line"] == 4


@pytest.mark.parametrize("text, kind", [("", "not-a-mapping"), ("- 1\n- 2\n", "not-a-mapping"),
                                        ("data:\n  target: x.Y\n", "no-model-target")])
def test_files_that_are_not_model_configs(tmp_path, text, kind):
    facts = read_ldm_config(write(tmp_path, text))
    assert facts["error"]["kind"] == kind and not facts["loaded"]


def test_missing_file_and_no_config(tmp_path):
    assert read_ldm_config(str(tmp_path / "nope.yaml"))["error"]["kind"] == "unreadable"
    assert read_ldm_config(None) == {"given": False, "path": None, "loaded": False, "error": None}


def test_key_lines_of_nested_mappings():
    assert key_lines("a:\n  b:\n    c: 1\nd: 2\n") == {"a": 1, "a.b": 2, "a.b.c": 3, "d": 4}


def test_collect_targets_walks_lists_too():
    data = {"target": "m.A", "params": {"items": [{"target": "m.B"}, {"x": 1}]}}
    assert collect_targets(data, "model") == [{"path": "model", "target": "m.A"},
                                              {"path": "model.params.items[0]", "target": "m.B"}]


def test_find_target_reads_source_text_without_importing(tmp_path):
    pkg = tmp_path / "ldm" / "models"
    pkg.mkdir(parents=True)
    (tmp_path / "ldm" / "__init__.py").write_text("raise SystemExit('imported!')\n")
    (pkg / "__init__.py").write_text("")
    (pkg / "ddpm.py").write_text("class LatentDiffusion:\n    pass\n")
    found = find_target("ldm.models.ddpm.LatentDiffusion", [str(tmp_path)])
    assert found["found"] and found["defined"] is True and found["module_file"].endswith("ddpm.py")
    absent_class = find_target("ldm.models.ddpm.LatentInpaintDiffusion", [str(tmp_path)])
    assert absent_class["found"] and absent_class["defined"] is False
    assert find_target("ldm.models.nothing.X", [str(tmp_path)])["found"] is False


def test_pyyaml_reads_the_config_when_omegaconf_is_missing(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "omegaconf", None)  # `import omegaconf` now raises ImportError
    facts = read_ldm_config(write(tmp_path, CONFIG))
    assert facts["loaded"] and facts["reader"] == "yaml"
    assert facts["summary"]["unet_config"]["params"]["in_channels"] == 9
