"""Tiny real-ldm models for the model tests: the real `ldm` code, the real configs, small widths.

`python -m tests.ldm_factory OUT` (run in a child process, like the harness runs the model) writes:

- `clip/`: a CLIP text model + tokenizer directory (a few hundred BPE tokens, width 768 so the UNet
  keeps SD 1.x's `context_dim: 768`), used as `version:` by FrozenCLIPEmbedder, since no hub is
  reachable in tests;
- `v1-inference.yaml`, `v1-inpainting-inference.yaml`: sdkit's models_db/configs with the UNet and VAE
  shrunk the way tests/ckpt_factory.py shrinks them (channel_mult [1, 2, 1, 1] keeps every key of the
  full model, so a pruned file misses exactly the 688 `model_ema.*` keys of SD 1.5);
- checkpoints built by instantiating those configs: `txt2img.safetensors` (what this environment's
  model saves: a clean load), `txt2img-position-ids.ckpt` (plus the `position_ids` buffer older
  transformers saved), `txt2img-sd1-layout.safetensors` (text-encoder keys as SD 1.x files name them),
  `inpainting-pruned.safetensors` (9 input channels, no EMA weights);
- `manifest.json`: the facts the tests compare with (key counts, the installed transformers' key
  names), measured from the models, not written by hand.

`fixtures(tmp_path_factory)` builds them once per pytest run (also across xdist workers) and
`seed_report(tmp_path_factory)` runs the seed scenario's `report` on them once, for the test modules
that look at it.

`pl_shim(dir)` makes `pytorch_lightning.utilities.distributed.rank_zero_only` importable again under
pytorch-lightning 2.x, so tests can go past the import error that `model.import` reports.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Dict, Optional

from tests.ckpt_factory import CLIP_PREFIX, SD1_CLIP_PREFIX, TINY_UNET, TINY_VAE, config_dir, save_safetensors, \
    save_zip
from tests.shared_build import build_once

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ("v1-inference.yaml", "v1-inpainting-inference.yaml")
TINY_CLIP_TEXT = dict(hidden_size=768, intermediate_size=64, num_hidden_layers=1, num_attention_heads=12,
                      max_position_embeddings=77, projection_dim=768)
# openai/clip-vit-large-patch14's text tower (123.06 M parameters), for the full-size benchmarks.
CLIP_L_TEXT = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                   num_attention_heads=12, max_position_embeddings=77, projection_dim=768, hidden_act="quick_gelu")
WORDS = ("photo", "dog", "of", "cat")

SHIM = '''"""Test-only import hook: pytorch-lightning >= 2 has no utilities.distributed; ldm imports rank_zero_only from it.

Appended to sys.meta_path, so it is only asked when the real module does not exist.
"""
import importlib.abc
import importlib.machinery
import sys


class _Loader(importlib.abc.Loader):
    def create_module(self, spec):
        return None

    def exec_module(self, module):
        from pytorch_lightning.utilities import rank_zero_only

        module.rank_zero_only = rank_zero_only


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname == "pytorch_lightning.utilities.distributed":
            return importlib.machinery.ModuleSpec(fullname, _Loader())
        return None


sys.meta_path.append(_Finder())
'''

# pytorch-lightning 2.x's layout where it matters to ldm: `utilities` has rank_zero_only, and there is
# no `utilities.distributed` module (checked in the pytorch_lightning 2.6.6 wheel).
PL2_LAYOUT = {
    "pytorch_lightning/__init__.py": "__version__ = \"2.0.0\"\n",
    "pytorch_lightning/utilities/__init__.py": "def rank_zero_only(fn):\n    return fn\n",
}


def pl_shim(directory: Path) -> Path:
    """Write the sitecustomize shim into `directory` (put it first on PYTHONPATH)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(SHIM, encoding="utf-8")
    return directory


def pl2_layout(directory: Path) -> Path:
    """A pytorch_lightning package with 2.x's module layout, for environments that have 1.x installed."""
    for rel, text in PL2_LAYOUT.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return directory


def child_env(extra_path=(), **env) -> Dict[str, str]:
    """This process's environment with `extra_path` and the project root first on PYTHONPATH."""
    out = dict(os.environ)
    out.update({k: str(v) for k, v in env.items()})
    parts = [str(p) for p in extra_path] + [str(ROOT)]
    parts += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in parts]
    out["PYTHONPATH"] = os.pathsep.join(parts)
    out.setdefault("HF_HUB_OFFLINE", "1")
    out.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    return out


def pl_has_distributed_rank_zero_only() -> Optional[bool]:
    """Whether the installed pytorch_lightning still has utilities.distributed.rank_zero_only (None: not installed)."""
    import importlib.util

    spec = importlib.util.find_spec("pytorch_lightning")
    if spec is None or not spec.submodule_search_locations:
        return None
    dist = Path(list(spec.submodule_search_locations)[0]) / "utilities" / "distributed.py"
    return dist.is_file() and "rank_zero_only" in dist.read_text(encoding="utf-8", errors="replace")


# ------------------------------------------------------------------ CLIP directory

def write_clip_dir(directory: Path, text_config: Optional[Dict] = None, dtype=None) -> Dict:
    """A CLIP tokenizer (byte-level BPE: every byte, a few words merged) and a CLIPTextModel (small by default)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    from diagnostics.clip_files import _bytes_to_unicode

    chars = list(_bytes_to_unicode().values())  # the byte alphabet, in the order CLIP's vocab lists it
    vocab: Dict[str, int] = {}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    merges = ["#version: 0.2"]
    for word in WORDS:
        current = word[0]
        for i, ch in enumerate(word[1:]):
            nxt = ch + ("</w>" if i == len(word) - 2 else "")
            merges.append(f"{current} {nxt}")
            current += nxt
            vocab.setdefault(current, len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (directory / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (directory / "merges.txt").write_text("\n".join(merges) + "\n", encoding="utf-8")
    tokenizer = CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"))
    tokenizer.save_pretrained(str(directory))
    sizes = dict(vocab_size=len(vocab))
    sizes.update(text_config or TINY_CLIP_TEXT)
    config = CLIPTextConfig(bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
                            pad_token_id=vocab["<|endoftext|>"], **sizes)
    import torch

    torch.manual_seed(0)
    model = CLIPTextModel(config)
    if dtype is not None:
        model = model.to(dtype)
    model.save_pretrained(str(directory))
    return {"vocab_size": len(vocab), "prompt_ids": tokenizer("a photo of a dog")["input_ids"]}


# ------------------------------------------------------------------ configs and checkpoints

def write_config(name: str, out: Path, clip_dir: Path, tiny: bool = True) -> Path:
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(str(config_dir() / name))
    if tiny:
        for key, value in TINY_UNET.items():
            cfg.model.params.unet_config.params[key] = value
        for key, value in TINY_VAE.items():
            cfg.model.params.first_stage_config.params.ddconfig[key] = value
    cfg.model.params.cond_stage_config.params = {"version": str(clip_dir)}
    path = out / name
    OmegaConf.save(cfg, str(path))
    return path


def _instantiate(config_path: Path, **overrides):
    import torch
    from omegaconf import OmegaConf

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        from ldm.util import instantiate_from_config

        cfg = OmegaConf.load(str(config_path))
        for key, value in overrides.items():
            cfg.model.params[key] = value
        torch.manual_seed(0)
        return instantiate_from_config(cfg.model)


def build(out: Path) -> Dict:
    """Write every fixture into `out`; returns (and writes) the manifest."""
    import torch
    import transformers

    out.mkdir(parents=True, exist_ok=True)
    clip_dir = out / "clip"
    clip = write_clip_dir(clip_dir)
    paths = {name: write_config(name, out, clip_dir) for name in CONFIGS}

    txt2img = _instantiate(paths["v1-inference.yaml"])
    sd = {k: v.detach().contiguous().clone() for k, v in txt2img.state_dict().items()}
    te_keys = [k for k in sd if k.startswith(CLIP_PREFIX)]
    native_nested = all(k.startswith(SD1_CLIP_PREFIX) for k in te_keys)
    native_prefix = SD1_CLIP_PREFIX if native_nested else CLIP_PREFIX
    position_ids_key = native_prefix + "embeddings.position_ids"
    ids = torch.arange(77, dtype=torch.int64)[None]
    save_safetensors(sd, out / "txt2img.safetensors")

    with_ids = dict(sd)
    with_ids[position_ids_key] = ids
    save_zip({"state_dict": with_ids, "global_step": 470000}, out / "txt2img-position-ids.ckpt")

    sd1 = {}
    for key, value in sd.items():
        if key.startswith(CLIP_PREFIX) and not key.startswith(SD1_CLIP_PREFIX):
            key = SD1_CLIP_PREFIX + key[len(CLIP_PREFIX):]
        sd1[key] = value
    sd1[SD1_CLIP_PREFIX + "embeddings.position_ids"] = ids
    save_safetensors(sd1, out / "txt2img-sd1-layout.safetensors")

    inpaint = _instantiate(paths["v1-inpainting-inference.yaml"])  # use_ema: the LatentDiffusion default
    full = inpaint.state_dict()
    ema_keys = [k for k in full if k.startswith("model_ema.")]
    pruned = {k: v.detach().contiguous().clone() for k, v in full.items() if not k.startswith("model_ema.")}
    save_safetensors(pruned, out / "inpainting-pruned.safetensors")

    manifest = {
        "configs": {name: str(path) for name, path in paths.items()},
        "clip_dir": str(clip_dir), "clip": clip,
        "transformers": transformers.__version__,
        "text_encoder_prefix": native_prefix,
        "position_ids_saved": position_ids_key in sd,
        "text_encoder_tensors": len(te_keys),
        "txt2img_tensors": len(sd),
        "unet_tensors": sum(1 for k in sd if k.startswith("model.diffusion_model.")),
        "inpainting_ema_keys": len(ema_keys),
        "inpainting_in_channels": list(pruned["model.diffusion_model.input_blocks.0.0.weight"].shape),
        "txt2img_in_channels": list(sd["model.diffusion_model.input_blocks.0.0.weight"].shape),
        "checkpoints": {name: str(out / name) for name in (
            "txt2img.safetensors", "txt2img-position-ids.ckpt", "txt2img-sd1-layout.safetensors",
            "inpainting-pruned.safetensors")},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest


def require_ldm_stack() -> None:
    """Skip the calling test when the real ldm stack (ldm, sdkit configs, torch, transformers...) is missing."""
    import importlib.util

    import pytest

    for name in ("torch", "omegaconf", "transformers", "safetensors", "ldm", "sdkit", "pytorch_lightning", "einops",
                 "open_clip", "torchvision"):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"{name} is not installed: the real-ldm model tests need it (see tests/ldm_factory.py)")


def fixtures(tmp_path_factory) -> Dict:
    """The built fixtures (manifest + shim dir), built once per pytest run, also across xdist workers
    (tests/shared_build.py). Read-only: tests that change a file copy it first."""
    require_ldm_stack()
    return build_once(tmp_path_factory, "tiny-ldm", _build_fixtures)


def _build_fixtures(folder: Path) -> Dict:
    shim = pl_shim(folder / "pl-shim")
    manifest = build_in_child(folder / "models", shim)
    manifest["shim"] = str(shim)
    return manifest


def seed_config(config: str, out: Path) -> Path:
    """`config` with cond_stage_config as the seed's: FrozenCLIPEmbedder with its default `version`."""
    head, _, _ = Path(config).read_text(encoding="utf-8").partition("    cond_stage_config:")
    out.write_text(head + "    cond_stage_config:\n      target: ldm.modules.encoders.modules.FrozenCLIPEmbedder\n",
                   encoding="utf-8")
    return out


def seed_report(tmp_path_factory) -> Dict:
    """The seed scenario through the command line, run once per pytest run: `report --format json` on the
    tiny txt2img model with the default CLIP id, offline (HF_HUB_OFFLINE=1, the Hub endpoint at a closed
    local port) with an empty Hugging Face cache. Returns the exit code, stdout, stderr and paths (`report`:
    the JSON report). tests/test_model_ldm.py checks its findings, tests/test_progress.py its progress lines."""
    tiny = fixtures(tmp_path_factory)
    return build_once(tmp_path_factory, "seed-report", lambda folder: _run_seed_report(folder, tiny))


def _run_seed_report(folder: Path, tiny: Dict) -> Dict:
    from tests.fakehub import closed_port

    config = seed_config(tiny["configs"]["v1-inference.yaml"], folder / "v1-inference-default-clip.yaml")
    hf_home = folder / "empty-hf-home"
    hf_home.mkdir()
    app = folder / "app"
    app.mkdir()
    env = child_env([tiny["shim"]], HOME=folder, HF_HOME=hf_home, HF_HUB_OFFLINE="1",
                    HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}")
    proc = subprocess.run([sys.executable, "-m", "diagnostics", "report", "--out", "out", "--config", str(config),
                           "--checkpoint", tiny["checkpoints"]["txt2img.safetensors"], "--format", "json"],
                          cwd=str(app), env=env, capture_output=True, text=True, timeout=600)
    return {"config": str(config), "hf_home": str(hf_home), "returncode": proc.returncode, "stdout": proc.stdout,
            "stderr": proc.stderr, "report": str(app / "out" / "resolution-report.json")}


def build_in_child(out: Path, shim_dir: Path, timeout: float = 600) -> Dict:
    """Run `build` in a child interpreter (with the Lightning shim), as the harness runs models."""
    proc = subprocess.run([sys.executable, "-m", "tests.ldm_factory", str(out)], cwd=str(ROOT),
                          env=child_env([shim_dir]), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"building the tiny ldm fixtures failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def build_benchmark(out: Path, config_name: str = "v1-inpainting-inference.yaml", size: str = "full",
                    dtype: str = "fp16") -> Dict:
    """One config + a pruned random-weight checkpoint of it (`size` full: the real SD widths; tiny: the tests')."""
    import time

    import torch

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tiny = size == "tiny"
    torch_dtype = torch.float16 if dtype == "fp16" else torch.float32
    clip = write_clip_dir(out / "clip", None if tiny else CLIP_L_TEXT, dtype=None if tiny else torch_dtype)
    config = write_config(config_name, out, out / "clip", tiny=tiny)
    model = _instantiate(config)
    sd = {k: v.detach().to(torch_dtype if v.is_floating_point() else v.dtype).contiguous()
          for k, v in model.state_dict().items() if not k.startswith("model_ema.")}
    del model
    ckpt = out / ("model-" + size + ".safetensors")
    save_safetensors(sd, ckpt)
    manifest = {"config": str(config), "checkpoint": str(ckpt), "clip_dir": str(out / "clip"), "clip": clip,
                "tensors": len(sd), "parameters": int(sum(v.numel() for v in sd.values())),
                "bytes": ckpt.stat().st_size, "seconds": time.perf_counter() - t0, "size": size, "dtype": dtype}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest


if __name__ == "__main__":
    if sys.argv[1] == "bench":
        build_benchmark(Path(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
    else:
        build(Path(sys.argv[1]))
