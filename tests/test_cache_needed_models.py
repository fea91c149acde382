"""Which Hub models a config needs, and the files each loader reads."""

from __future__ import annotations

import pytest

from diagnostics.probes import needed_models as nm

V5 = {"transformers": "5.24.0", "safetensors": "0.8.0", "huggingface_hub": "2.4.0"}
V419 = {"transformers": "4.19.2", "huggingface_hub": "0.10.1"}

SD1 = """\
model:
  base_learning_rate: 1.0e-04
  target: ldm.models.diffusion.ddpm.LatentDiffusion
  params:
    linear_start: 0.00085
    cond_stage_key: "txt"
    unet_config:
      target: ldm.modules.diffusionmodules.openaimodel.UNetModel
      params:
        in_channels: 4
        attention_resolutions: [ 4, 2, 1 ]
        channel_mult:
          - 1
          - 2
    first_stage_config:
      target: ldm.models.autoencoder.AutoencoderKL
      params:
        embed_dim: 4
    cond_stage_config:
      target: ldm.modules.encoders.modules.FrozenCLIPEmbedder
"""

SD1_LOCAL = SD1 + """\
      params:
        version: {path}
"""

SD2 = """\
model:
  params:
    cond_stage_config:
      target: ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder
      params:
        freeze: True
        layer: "penultimate"
"""

OTHER = """\
model:
  params:
    cond_stage_config:
      target: ldm.modules.encoders.modules.FrozenT5Embedder
      params:
        version: google/t5-v1_1-large
    refiner_config:
      pretrained_model_name_or_path: someorg/refiner
      version: v2   # a plain word is not a model reference
"""


def _write(tmp_path, text, name="config.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_no_config_assumes_the_frozen_clip_default_and_says_so(tmp_path):
    facts = nm.needed_models(None, [], V5, tmp_path)
    assert facts.assumed_default is True
    (model,) = facts.models
    assert (model["ref"], model["kind"], model["loader"]) == ("openai/clip-vit-large-patch14", "hub", "FrozenCLIPEmbedder")
    assert "no --config given" in model["via"]
    names = [n for g in model["groups"] if g["required"] for n in g["names"]]
    assert names == ["vocab.json", "merges.txt", "config.json", "model.safetensors", "pytorch_model.bin"]


def test_sd1_config_without_params_uses_the_default_version(tmp_path):
    facts = nm.needed_models(_write(tmp_path, SD1), [], V5, tmp_path)
    (model,) = facts.models
    assert model["ref"] == "openai/clip-vit-large-patch14" and not facts.assumed_default
    assert model["config_key"] == "model.params.cond_stage_config.params.version"
    assert model["tokenizer_check"] == "clip"


def test_local_version_path_is_a_local_model(tmp_path):
    local = tmp_path / "models" / "clip"
    local.mkdir(parents=True)
    facts = nm.needed_models(_write(tmp_path, SD1_LOCAL.format(path=local)), [], V5, tmp_path)
    (model,) = facts.models
    assert (model["kind"], model["path"]) == ("local", str(local))


def test_transformers_419_reads_only_pytorch_model_bin(tmp_path):
    (model,) = nm.needed_models(None, [], V419, tmp_path).models
    weights = [g for g in model["groups"] if g["purpose"] == "text encoder weights"][0]
    assert weights["names"] == ["pytorch_model.bin"]


def test_sd2_openclip_config_maps_to_the_laion_repo(tmp_path):
    (model,) = nm.needed_models(_write(tmp_path, SD2), [], V5, tmp_path).models
    assert model["repo_id"] == "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
    assert model["cache_user"] == "huggingface_hub" and model["tokenizer_check"] is None
    assert model["groups"][0]["names"] == ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]


def test_other_model_keys_are_collected_but_plain_words_are_not(tmp_path):
    models = nm.needed_models(_write(tmp_path, OTHER), [], V5, tmp_path).models
    assert [m["ref"] for m in models] == ["google/t5-v1_1-large", "someorg/refiner"]
    assert models[1]["via"] == "model.params.refiner_config.pretrained_model_name_or_path"


def test_model_id_options_are_added(tmp_path):
    models = nm.needed_models(None, ["openai/clip-vit-base-patch32", "org/other"], V5, tmp_path).models
    assert [m["ref"] for m in models] == ["openai/clip-vit-large-patch14", "openai/clip-vit-base-patch32", "org/other"]
    assert models[1]["tokenizer_check"] == "clip" and models[2]["tokenizer_check"] is None


def test_unreadable_config_falls_back_to_the_default_with_the_error(tmp_path):
    pytest.importorskip("yaml", reason="without PyYAML/omegaconf the lenient subset reader reads what it can")
    facts = nm.needed_models(_write(tmp_path, "model: [unclosed"), [], V5, tmp_path)
    assert facts.config_error and facts.assumed_default
    assert facts.models[0]["ref"] == "openai/clip-vit-large-patch14"


def test_directory_named_like_the_id_makes_it_local(tmp_path):
    (tmp_path / "openai" / "clip-vit-large-patch14").mkdir(parents=True)
    (model,) = nm.needed_models(None, [], V5, tmp_path).models
    assert model["kind"] == "local" and model["shadowed"] is True


@pytest.mark.parametrize("text", [SD1, SD1_LOCAL.format(path="/srv/clip"), SD2, OTHER])
def test_builtin_yaml_reader_agrees_with_pyyaml(text):
    yaml = pytest.importorskip("yaml")
    assert nm.parse_yaml_subset(text)["model"]["params"]["cond_stage_config"] == \
        yaml.safe_load(text)["model"]["params"]["cond_stage_config"]


@pytest.mark.parametrize("ref,path", [
    ("openai/clip-vit-large-patch14", False), ("bert-base-uncased", False), ("/abs/clip", True),
    ("./clip", True), ("models/openai/clip", True), ("C:\\models\\clip", True), ("weights.safetensors", True),
])
def test_path_or_repo_id(ref, path):
    assert nm.looks_like_path(ref) is path
