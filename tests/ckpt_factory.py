"""Test checkpoints built in code: nothing binary is committed.

- `ldm_state_dict(config)`: the state dict of the real `ldm` class named by a real config (sdkit's
  models_db/configs), built at a tiny width that keeps every key of the full model (channel_mult
  [1, 2, 1, 1] has the same skip connections as SD's [1, 2, 4, 4]; widths stay multiples of 32 for the
  GroupNorms). CLIP is a `CLIPTextModel` built from a small `CLIPTextConfig`, since no hub is reachable
  in tests; its keys are written the way SD 1.x files have them (transformers < 5:
  `cond_stage_model.transformer.text_model.*` plus an int64 `position_ids` [1, 77]).
- `full_size_model(config)`: the same classes at full size on the meta device (no memory), to check
  the SD 1.5 reference numbers.
- faulty derivatives (no CLIP, NAI-style keys, merged position_ids, EMA absent / incomplete / from
  another model / untrained, NaN weights) and writers for torch zip, legacy torch and safetensors;
- malicious pickles assembled from opcode bytes at test time. Their payload only creates a marker file,
  so a test can prove that inspecting them never runs them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import struct
import warnings
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Dict, Iterable, Optional

TINY_UNET = {"model_channels": 32, "channel_mult": [1, 2, 1, 1]}
TINY_VAE = {"ch": 32, "ch_mult": [1, 2, 1, 1]}
TINY_CLIP = dict(vocab_size=1000, hidden_size=32, intermediate_size=37, num_hidden_layers=12, num_attention_heads=4,
                 max_position_embeddings=77, projection_dim=32, bos_token_id=0, eos_token_id=2, pad_token_id=1)
# openai/clip-vit-large-patch14's text tower, for full-size meta-device models.
CLIP_L = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
              max_position_embeddings=77, projection_dim=768, hidden_act="quick_gelu")
CLIP_PREFIX = "cond_stage_model.transformer."
SD1_CLIP_PREFIX = "cond_stage_model.transformer.text_model."


def config_dir() -> Path:
    spec = importlib.util.find_spec("sdkit")
    if spec is None or spec.origin is None:
        raise RuntimeError("sdkit is not installed (pip install --no-deps sdkit)")
    return Path(spec.origin).parent / "models" / "models_db" / "configs"


def require_ldm():
    """Skip the calling test when the real ldm stack is not importable."""
    import pytest

    for name in ("torch", "omegaconf", "ldm", "sdkit", "transformers", "pytorch_lightning"):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"{name} is not installed; the ldm-built checkpoint tests need it")


@contextlib.contextmanager
def offline_clip(clip_config: Dict):
    """Let `FrozenCLIPEmbedder` build its CLIPTextModel from a config instead of downloading it."""
    import ldm.modules.encoders.modules as encoders
    from transformers import CLIPTextConfig, CLIPTextModel

    class _Model:
        @classmethod
        def from_pretrained(cls, *args, **kwargs):
            return CLIPTextModel(CLIPTextConfig(**clip_config))

    class _Tokenizer:
        @classmethod
        def from_pretrained(cls, *args, **kwargs):
            return object()

    saved = encoders.CLIPTextModel, encoders.CLIPTokenizer
    encoders.CLIPTextModel, encoders.CLIPTokenizer = _Model, _Tokenizer
    try:
        yield
    finally:
        encoders.CLIPTextModel, encoders.CLIPTokenizer = saved


def _quiet_imports():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pytorch_lightning  # noqa: F401  (installs its own "default" filter for its deprecations)

        warnings.simplefilter("ignore")  # ahead of that filter, for ldm's deprecated rank_zero_only import
        with contextlib.redirect_stdout(io.StringIO()):
            import ldm.models.diffusion.ddpm  # noqa: F401  (prints "No module 'xformers'")
            import ldm.util  # noqa: F401


def build_model(config_name: str, tiny: bool = True, use_ema: bool = True, meta: bool = False, seed: int = 0):
    """The real ldm model for a real config; `meta` builds the submodules on the meta device."""
    import torch
    from omegaconf import OmegaConf

    _quiet_imports()
    import ldm.models.diffusion.ddpm as ddpm
    import ldm.util

    cfg = OmegaConf.load(str(config_dir() / config_name))
    cfg.model.params.use_ema = use_ema
    cfg.model.params.pop("ckpt_path", None)
    if tiny:
        for key, value in TINY_UNET.items():
            cfg.model.params.unet_config.params[key] = value
        for key, value in TINY_VAE.items():
            cfg.model.params.first_stage_config.params.ddconfig[key] = value
    original = ddpm.instantiate_from_config

    def on_meta(config):
        # Only the submodules go to the meta device: DDPM's noise schedule is computed with numpy.
        with torch.device("meta"):
            return original(config)

    torch.manual_seed(seed)
    with offline_clip(TINY_CLIP if tiny else CLIP_L), contextlib.redirect_stdout(io.StringIO()):
        if meta:
            ddpm.instantiate_from_config = on_meta
        try:
            return ldm.util.instantiate_from_config(cfg.model)
        finally:
            ddpm.instantiate_from_config = original


def sd1_layout(state_dict, position_ids) -> Dict:
    """Rename CLIP keys to the SD 1.x file layout and add `position_ids` as those files carry it."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith(CLIP_PREFIX) and not key.startswith(SD1_CLIP_PREFIX):
            key = SD1_CLIP_PREFIX + key[len(CLIP_PREFIX):]
        out[key] = value
    out[SD1_CLIP_PREFIX + "embeddings.position_ids"] = position_ids.clone()
    return out


@lru_cache(maxsize=None)
def _cached_state_dict(config_name: str, seed: int):
    import torch

    model = build_model(config_name, tiny=True, use_ema=True, seed=seed)
    sd = model.state_dict()
    # The module's own buffer, int64 [1, 77]: `transformer.embeddings` under transformers 5,
    # `transformer.text_model.embeddings` under 4.x (where it is also in the state dict before 4.31).
    ids = next(buf for name, buf in model.cond_stage_model.transformer.named_buffers()
               if name.endswith("embeddings.position_ids"))
    sd = sd1_layout(sd, ids)
    # A trained EMA differs from the live weights and has counted its updates.
    gen = torch.Generator().manual_seed(seed + 1)
    for key in list(sd):
        if key.startswith("model_ema.") and sd[key].is_floating_point() and sd[key].dim() > 0:
            sd[key] = sd[key] + 1e-3 * torch.randn(sd[key].shape, generator=gen)
    sd["model_ema.num_updates"] = torch.tensor(470000, dtype=torch.int32)
    return {k: v.detach().contiguous().clone() for k, v in sd.items()}


def ldm_state_dict(config_name: str = "v1-inpainting-inference.yaml", seed: int = 0, dtype=None) -> Dict:
    """A fresh copy of the tiny SD 1.x state dict (float weights cast to `dtype` when given)."""
    sd = {k: v.clone() for k, v in _cached_state_dict(config_name, seed).items()}
    if dtype is not None:
        sd = {k: (v.to(dtype) if v.is_floating_point() and k != "model_ema.decay" else v) for k, v in sd.items()}
    return sd


def full_size_model(config_name: str):
    return build_model(config_name, tiny=False, use_ema=True, meta=True)


# ------------------------------------------------------------------ containers

def lightning_checkpoint(state_dict: Dict, optimizer: bool = False) -> Dict:
    """The original SD 1.x .ckpt wrapping: Lightning metadata and a ModelCheckpoint callback key."""
    import numpy as np
    import torch
    from pytorch_lightning.callbacks.model_checkpoint import ModelCheckpoint

    ckpt = {
        "epoch": 6,
        "global_step": 440000,
        "pytorch-lightning_version": "1.4.2",
        "state_dict": state_dict,
        "callbacks": {ModelCheckpoint: {"monitor": None, "best_model_score": None, "best_model_path": "",
                                        "current_score": np.float64(0.1226), "dirpath": "logs/checkpoints"}},
        "lr_schedulers": [],
    }
    if optimizer:
        gen = torch.Generator().manual_seed(7)
        ckpt["optimizer_states"] = [{"state": {i: {"exp_avg": torch.randn(64, 32, generator=gen),
                                                   "exp_avg_sq": torch.rand(64, 32, generator=gen), "step": 10}
                                               for i in range(3)},
                                     "param_groups": [{"lr": 1e-4, "params": [0, 1, 2]}]}]
    return ckpt


def save_zip(obj, path) -> Path:
    import torch

    torch.save(obj, str(path))
    return Path(path)


def save_legacy(obj, path) -> Path:
    import torch

    torch.save(obj, str(path), _use_new_zipfile_serialization=False)
    return Path(path)


def save_safetensors(state_dict: Dict, path, metadata: Optional[Dict[str, str]] = None) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(path), metadata=metadata)
    return Path(path)


# ------------------------------------------------------------------ faulty derivatives

def without_prefix(sd: Dict, prefix: str) -> Dict:
    return {k: v for k, v in sd.items() if not k.startswith(prefix)}


def nai_style(sd: Dict) -> Dict:
    return {(CLIP_PREFIX + k[len(SD1_CLIP_PREFIX):] if k.startswith(SD1_CLIP_PREFIX) else k): v for k, v in sd.items()}


def merged_position_ids(sd: Dict) -> Dict:
    """What a weighted merge does to the ids: float32, and 76 becomes 75.9975 (cast back: 75)."""
    import torch

    out = dict(sd)
    ids = torch.arange(77, dtype=torch.float32)[None]
    ids[0, 76] = 75.9975
    ids[0, 40] = 39.9999
    out[SD1_CLIP_PREFIX + "embeddings.position_ids"] = ids
    return out


def ema_twin(unet_key: str) -> str:
    return "model_ema." + ("diffusion_model." + unet_key[len("model.diffusion_model."):]).replace(".", "")


def drop_ema_twins(sd: Dict, unet_keys: Iterable[str]) -> Dict:
    drop = {ema_twin(k) for k in unet_keys}
    return {k: v for k, v in sd.items() if k not in drop}


def ema_from(sd: Dict, other: Dict) -> Dict:
    """EMA weights taken from another checkpoint (e.g. a txt2img EMA inside an inpainting file)."""
    out = without_prefix(sd, "model_ema.")
    out.update({k: v for k, v in other.items() if k.startswith("model_ema.")})
    return out


def untrained_ema(sd: Dict) -> Dict:
    import torch

    out = dict(sd)
    for key, value in sd.items():
        if key.startswith("model.diffusion_model."):
            out[ema_twin(key)] = value.clone()
    out["model_ema.num_updates"] = torch.tensor(0, dtype=torch.int32)
    return out


def with_nonfinite(sd: Dict, key: str, nan: int = 2, inf: int = 1) -> Dict:
    out = dict(sd)
    t = sd[key].clone()
    flat = t.view(-1)
    flat[:nan] = float("nan")
    flat[nan:nan + inf] = float("inf")
    out[key] = t
    return out


# ------------------------------------------------------------------ malicious pickles (opcode bytes)

def _unicode(s: str) -> bytes:
    data = s.encode("utf-8")
    return b"X" + struct.pack("<I", len(data)) + data


def call_p2(module: str, name: str, *args: str) -> bytes:
    """Protocol-2 opcodes (no PROTO/STOP) that call module.name(*args) when unpickled."""
    body = b"c" + module.encode() + b"\n" + name.encode() + b"\n" + b"(" + b"".join(_unicode(a) for a in args) + b"tR"
    return body


def pickle_p0(module: str, name: str, arg: str) -> bytes:
    """Protocol 0: c<module>\\n<name>\\n(S'<arg>'\\ntR."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n(S'" + arg.encode("unicode_escape") + b"'\ntR."


def pickle_p2(module: str, name: str, *args: str) -> bytes:
    return b"\x80\x02" + call_p2(module, name, *args) + b"."


def pickle_stack_global(module: str, name: str, arg: str, via_memo: bool = True) -> bytes:
    """Protocol 4 with STACK_GLOBAL; with `via_memo` the names are stored first and fetched through the memo."""
    def short(s: str) -> bytes:
        data = s.encode()
        return b"\x8c" + bytes([len(data)]) + data

    if via_memo:
        body = (short("decoy") + b"\x94" + short(module) + b"\x94" + short(name) + b"\x94" + b"0" + b"0" + b"0"
                + b"h\x01" + b"h\x02" + b"\x93" + short(arg) + b"\x85R")
    else:
        body = short(module) + short(name) + b"\x93" + short(arg) + b"\x85R"
    return b"\x80\x04" + body + b"."


def marker_python(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').write('pwned')"


def marker_shell(marker: Path) -> str:
    return f"touch {marker}"


def payloads(marker: Path) -> Dict[str, bytes]:
    """Named malicious pickles; each would create `marker` if it were unpickled."""
    code = marker_python(marker)
    return {
        "os.system-p0": pickle_p0("os", "system", marker_shell(marker)),
        "posix.system-p2": pickle_p2("posix", "system", marker_shell(marker)),
        "builtins.eval-p2": pickle_p2("builtins", "eval", code),
        "builtins.exec-p4-stack-global": pickle_stack_global("builtins", "exec", code, via_memo=False),
        "builtins.exec-p4-memo": pickle_stack_global("builtins", "exec", code, via_memo=True),
        "subprocess.getoutput-p2": pickle_p2("subprocess", "getoutput", marker_shell(marker)),
        "runpy._run_code-p2": b"\x80\x02crunpy\n_run_code\n(" + _unicode(code) + b"}tR.",
        "__builtin__.eval-p0": b"c__builtin__\neval\n(V" + code.encode("raw_unicode_escape") + b"\ntR.",
    }


def inject_into_data_pkl(data_pkl: bytes, payload_ops: bytes, key: str = "evil") -> bytes:
    """Add `key: <payload>` to the outermost dict of a torch data.pkl (before its final SETITEMS)."""
    assert data_pkl.endswith(b"u."), "expected a dict pickle ending in SETITEMS, STOP"
    return data_pkl[:-2] + _unicode(key) + payload_ops + b"u."


def rewrite_zip(src: Path, dst: Path, replace: Dict[str, bytes]) -> Path:
    """Copy a torch zip with some members' bytes replaced (stored, like torch writes them)."""
    with zipfile.ZipFile(str(src)) as zin, zipfile.ZipFile(str(dst), "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = replace.get(info.filename)
            if data is None:
                for suffix, value in replace.items():
                    if info.filename.endswith(suffix):
                        data = value
                        break
            zout.writestr(info.filename, data if data is not None else zin.read(info.filename))
    return dst


def data_pkl_of(path: Path) -> bytes:
    with zipfile.ZipFile(str(path)) as z:
        name = next(n for n in z.namelist() if n.endswith("/data.pkl"))
        return z.read(name)


def safetensors_bytes(entries: Dict[str, Dict], data: bytes, metadata: Optional[Dict[str, str]] = None,
                      raw_header: Optional[bytes] = None, length: Optional[int] = None) -> bytes:
    """A safetensors file from a hand-written header (for invalid headers the library would refuse to write)."""
    import json

    header = dict(entries)
    if metadata is not None:
        header["__metadata__"] = metadata
    text = raw_header if raw_header is not None else json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    n = len(text) if length is None else length
    return struct.pack("<Q", n) + text + data


def write_bytes(path, data: bytes) -> Path:
    Path(path).write_bytes(data)
    return Path(path)


def file_names(path) -> Iterable[str]:
    return sorted(os.listdir(str(path)))
