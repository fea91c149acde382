"""The seed's scenario end to end: empty cache, no network, then `provision-clip`, then unmodified ldm.

The checkpoint is built by the real `ldm` classes from sdkit's v1-inference.yaml, saved as SD 1.x
`.ckpt` files are (a Lightning dict pickling the ModelCheckpoint callback class, float16 weights). Its
CLIP text tower is full size (ViT-L/14, 123 M parameters), because the provisioned config.json is
openai/clip-vit-large-patch14's and FrozenCLIPEmbedder() with default arguments must build from it;
the UNet and VAE are built at tests/ckpt_factory.py's tiny width (every key of the full model, a few
MB), which keeps the file at about 250 MB and the whole LDM small enough to build and load in a test.
The weights are random: equality, not quality, is what is checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ckpt_factory import require_ldm
from tests.fakehub import closed_port, hermetic_env, pythonpath
from tests.shared_build import build_once, shared_root

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a photo of a dog"
EXPECTED_IDS = [49406, 320, 1125, 539, 320, 1929, 49407]


def _position_ids_saved() -> bool:
    """transformers < 4.31 keeps CLIP's `embeddings.position_ids` (int64 [1, 77]) in the state dict."""
    import importlib.metadata as md

    from packaging.version import Version

    return Version(md.version("transformers")) < Version("4.31")


def text_encoder_size():
    """ViT-L/14's text tower in the checkpoint: 196 tensors, 123,060,480 numbers; one tensor of 77 more
    where the installed transformers still saves position_ids. Returns (tensors, numbers)."""
    saved = _position_ids_saved()
    return 196 + (1 if saved else 0), 123060480 + (77 if saved else 0)

BUILD = r"""
import contextlib, io, json, sys
from pathlib import Path
import torch
from omegaconf import OmegaConf
from transformers import CLIPTextConfig, CLIPTextModel
from tests.ckpt_factory import CLIP_L, TINY_UNET, TINY_VAE, _quiet_imports, config_dir, lightning_checkpoint, save_zip
_quiet_imports()
import ldm.modules.encoders.modules as encoders
import ldm.util

out = Path(sys.argv[1])
cfg = OmegaConf.load(str(config_dir() / "v1-inference.yaml"))
cfg.model.params.pop("ckpt_path", None)
for key, value in TINY_UNET.items():
    cfg.model.params.unet_config.params[key] = value
for key, value in TINY_VAE.items():
    cfg.model.params.first_stage_config.params.ddconfig[key] = value
OmegaConf.save(cfg, str(out / "v1-inference-tiny-unet.yaml"))  # cond_stage_config: FrozenCLIPEmbedder, defaults


class TextModel:
    # What FrozenCLIPEmbedder's CLIPTextModel.from_pretrained(version) returns here: ViT-L/14's text
    # tower built from its config with its parameters on the meta device, so torch's and transformers'
    # initialisers do not fill 123 M numbers twice; the values are drawn once, below.
    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        register = torch.nn.Module.register_parameter

        def on_meta(module, name, param):
            if param is not None:
                param = torch.nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
            register(module, name, param)

        torch.nn.Module.register_parameter = on_meta
        try:
            return CLIPTextModel(CLIPTextConfig(**CLIP_L))
        finally:
            torch.nn.Module.register_parameter = register


class Tokenizer:  # the tokenizer files are what provision-clip writes; the checkpoint has none
    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        return object()


encoders.CLIPTextModel, encoders.CLIPTokenizer = TextModel, Tokenizer
torch.manual_seed(0)
with contextlib.redirect_stdout(io.StringIO()):
    model = ldm.util.instantiate_from_config(cfg.model)
gen = torch.Generator().manual_seed(0)
sd = {}
for key, value in model.state_dict().items():
    if value.is_meta:  # the text tower's parameters: seeded random values on the scale of CLIP's own
        value = torch.empty(value.shape, dtype=torch.float16).normal_(0.0, 0.02, generator=gen)
        if key.endswith(".weight") and "layer_norm" in key.split(".")[-2]:
            value += 1.0
    sd[key] = (value.half() if value.is_floating_point() else value).contiguous()
save_zip(lightning_checkpoint(sd), out / "sd-v1-tiny-unet.ckpt")
te = [k for k in sd if k.startswith("cond_stage_model.")]
json.dump({"text_encoder_keys": len(te), "text_encoder_parameters": sum(sd[k].numel() for k in te),
           "prefix": "cond_stage_model.transformer.text_model." if all(".text_model." in k for k in te)
           else "cond_stage_model.transformer.", "bytes": (out / "sd-v1-tiny-unet.ckpt").stat().st_size},
          open(out / "manifest.json", "w"))
"""

# A fresh process, offline, unmodified ldm: FrozenCLIPEmbedder() with default arguments, then the same
# model after the full checkpoint is loaded into the LDM (ldm's load_state_dict(strict=False)).
COMPARE = r"""
import contextlib, io, json, sys, warnings
import torch
from omegaconf import OmegaConf
ckpt, config, prompt = sys.argv[1:4]
warnings.simplefilter("ignore")
with contextlib.redirect_stdout(io.StringIO()):
    from ldm.modules.encoders.modules import FrozenCLIPEmbedder
    from ldm.util import instantiate_from_config
emb = FrozenCLIPEmbedder()
emb.device = "cpu"  # the default "cuda" only decides where the token ids go
res = {"vocab_size": emb.tokenizer.vocab_size, "ids": emb.tokenizer(prompt)["input_ids"],
       "dtype": str(next(emb.transformer.parameters()).dtype)}
with torch.no_grad():
    z1 = emb.encode([prompt])
with contextlib.redirect_stdout(io.StringIO()):
    model = instantiate_from_config(OmegaConf.load(config).model)  # builds its own FrozenCLIPEmbedder()
# The test's own file, built above; ldm's load_model_from_config reads it the same way.
sd = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
missing, unexpected = model.load_state_dict(sd, strict=False)
te = [k for k in sd if k.startswith("cond_stage_model.")]
state = model.state_dict()
res["te_keys"] = len(te)
res["te_unexpected"] = [k for k in unexpected if k.startswith("cond_stage_model.")]
res["te_missing"] = [k for k in missing if k.startswith("cond_stage_model.")]
res["ldm_holds_checkpoint_weights"] = all(torch.equal(state[k], sd[k].to(state[k].dtype)) for k in te if k in state)
model.cond_stage_model.device = "cpu"
with torch.no_grad():
    z2 = model.cond_stage_model.encode([prompt])
res["shape"] = list(z1.shape)
res["std"] = float(z1.std())
res["max_abs_diff"] = float((z1 - z2).abs().max())
print(json.dumps(res))
"""


def run(argv, env, cwd, timeout=600):
    return subprocess.run(argv, cwd=str(cwd), env=env, capture_output=True, text=True, timeout=timeout)


def build_checkpoint(out: Path) -> dict:
    proc = run([sys.executable, "-c", BUILD, str(out)], dict(os.environ, PYTHONPATH=pythonpath(ROOT)), ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "manifest.json").read_text())


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    require_ldm()
    # The checkpoint and its config: built once per test run, read-only.
    manifest = build_once(tmp_path_factory, "clip-e2e-checkpoint", build_checkpoint)
    built = shared_root(tmp_path_factory) / "clip-e2e-checkpoint"
    ckpt, config = built / "sd-v1-tiny-unet.ckpt", built / "v1-inference-tiny-unet.yaml"
    root = tmp_path_factory.mktemp("clip-e2e")
    threads = {k: os.environ[k] for k in ("OMP_NUM_THREADS",) if k in os.environ}  # as tests/conftest.py set it
    env = hermetic_env(root, HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}", PYTHONPATH=pythonpath(ROOT), **threads)
    app = root / "app"  # the service's working directory
    app.mkdir()

    before = run([sys.executable, "-m", "diagnostics", "report", "--checkpoint", str(ckpt), "--out", "before",
                  "--format", "json"], env, app)
    provisioned = run([sys.executable, "-m", "diagnostics", "provision-clip", "--checkpoint", str(ckpt), "--hf-cache",
                       "--report-dir", "after"], env, app)
    return {"root": root, "env": env, "app": app, "ckpt": ckpt, "config": config, "manifest": manifest,
            "before": before, "provisioned": provisioned}


def findings(report):
    return {f["code"]: f for f in report["findings"]}


def test_the_checkpoint_is_an_sd1_ckpt_with_a_full_size_clip_text_tower(world):
    m = world["manifest"]
    assert (m["text_encoder_keys"], m["text_encoder_parameters"]) == text_encoder_size()
    from diagnostics.probes.checkpoint import inspect_checkpoint

    facts = inspect_checkpoint(str(world["ckpt"]))
    assert facts["format"] == "torch-zip" and facts["family"] == "sd1"
    assert "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint" in facts["pickle"]["globals"]
    assert facts["text_encoder"]["kind"] == "clip-l"


def test_before_empty_cache_no_network_the_report_fails_on_the_tokenizer_and_the_cache(world):
    proc = world["before"]
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((world["app"] / "before" / "resolution-report.json").read_text())
    found = findings(report)
    assert found["cache.model-missing"]["status"] == "fail" and found["cache.model-missing"]["blocking"]
    tok = found["tokenizer.functional"]
    assert tok["status"] == "fail" and tok["blocking"]
    assert tok["evidence"].get("vocab_size") == 2 or tok["evidence"].get("error_type")  # transformers 5 / 4.x
    assert report["status"] == "UNRESOLVED"


def test_provision_clip_writes_the_cache_entry_and_the_report_says_resolved(world):
    proc = world["provisioned"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((world["app"] / "after" / "resolution-report.json").read_text())
    assert report["status"] == "RESOLVED" and not report["blocking"]
    remedy = report["remedies"][0]
    changes = {c["code"]: (c["before"], c["after"]) for c in remedy["changes"]}
    assert changes["cache.model-missing"] == ("fail", "ok")
    assert changes["tokenizer.functional"] == ("fail", "ok")
    assert "49408" in remedy["transcript"] and str(EXPECTED_IDS) in remedy["transcript"]
    assert "[1, 77, 768]" in remedy["transcript"]
    done = report["facts"]["clip_provision"]
    assert done["state"] == "provisioned" and done["layout"] == "hub"
    assert done["source"]["prefix"] == world["manifest"]["prefix"] and done["source"]["executed"] is False
    weights = next(f for f in done["files"] if f["name"] == "model.safetensors")
    assert weights["size"] < world["manifest"]["bytes"] < done["seed_download_bytes"]
    assert done["bytes_total"] < done["seed_download_bytes"] / 6
    snapshot = world["root"] / "hf" / "hub" / "models--openai--clip-vit-large-patch14" / "snapshots" / done["revision"]
    assert "provisioned-by: ldm-diagnostics provision-clip" in (snapshot / "README.md").read_text()
    md = (world["app"] / "after" / "resolution-report.md").read_text()
    assert "**Status**: ✅ RESOLVED" in md and "#### Test Script Output" in md
    assert "| `tokenizer.functional` | ❌ fail | ✅ ok |" in md
    assert "HF_HUB_OFFLINE=1" in proc.stdout


def test_unmodified_frozen_clip_embedder_loads_offline_and_equals_the_ldm_after_the_checkpoint(world):
    assert world["provisioned"].returncode == 0
    env = dict(world["env"], HF_HUB_OFFLINE="1")
    proc = run([sys.executable, "-c", COMPARE, str(world["ckpt"]), str(world["config"]), PROMPT], env, world["app"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["vocab_size"] == 49408 and res["ids"] == EXPECTED_IDS
    assert res["dtype"] == "torch.float32" and res["shape"] == [1, 77, 768] and res["std"] > 0
    # The checkpoint's text encoder really went into the LDM (not skipped as unexpected keys) ...
    assert res["te_keys"] == text_encoder_size()[0] and res["te_unexpected"] == [] and res["te_missing"] == []
    assert res["ldm_holds_checkpoint_weights"] is True
    # ... and the provisioned model computes exactly what the LDM computes with it.
    assert res["max_abs_diff"] == 0.0


def test_running_it_again_changes_nothing(world):
    import importlib.metadata as md

    from diagnostics.probes.cache import cache_locations
    from diagnostics.remedies.clip_offline import provision

    assert world["provisioned"].returncode == 0
    versions = {name: md.version(name) for name in ("transformers", "safetensors", "huggingface_hub")}
    repo = world["root"] / "hf" / "hub" / "models--openai--clip-vit-large-patch14"
    before = {str(p): p.stat().st_mtime_ns for p in repo.rglob("*")}
    result = provision(str(world["ckpt"]), "hf-cache", versions, locations=cache_locations(world["env"], versions))
    assert result.state == "already-complete" and result.existing_ours is True and result.files == []
    assert {str(p): p.stat().st_mtime_ns for p in repo.rglob("*")} == before


def test_out_dir_and_the_yaml_change(world, tmp_path):
    env = dict(world["env"], HF_HOME=str(tmp_path / "empty-hf"))
    out = tmp_path / "models" / "clip-l"
    proc = run([sys.executable, "-m", "diagnostics", "provision-clip", "--checkpoint", str(world["ckpt"]),
                "--config", str(world["config"]), "--out", str(out), "--report-dir", str(tmp_path / "rep"),
                "--format", "json"], env, world["app"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"model.params.cond_stage_config.params.version: {out}" in proc.stdout
    report = json.loads((tmp_path / "rep" / "resolution-report.json").read_text())
    assert report["status"] == "RESOLVED"
    transcript = report["remedies"][0]["transcript"]
    assert f"FrozenCLIPEmbedder(version={str(out)!r}, device='cpu') constructed" in transcript
    assert str(EXPECTED_IDS) in transcript
    assert not (tmp_path / "empty-hf" / "hub" / "models--openai--clip-vit-large-patch14").exists()
    assert sorted(os.listdir(out)) == ["README.md", "config.json", "merges.txt", "model.safetensors",
                                       "special_tokens_map.json", "tokenizer_config.json", "vocab.json"]
