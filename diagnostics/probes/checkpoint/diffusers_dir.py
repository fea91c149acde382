"""A diffusers folder (`model_index.json` + one folder per component) read with the same readers.

The ldm code cannot load this layout directly (it expects one LDM state dict), but people point the
tool at it anyway, so it says what is there: each component's weights (`*.safetensors`, else
`*.bin`, sharded or not) are read header-only, tensor names get a `<component>/` prefix, and the family
and variant come from `unet/config.json` (`cross_attention_dim`, `in_channels`) instead of shapes.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional

from .layout import VARIANTS
from .records import ReadResult, problem
from .safetensors_fmt import read_safetensors
from .torchfile import read_torch_pickle_file, read_torch_zip

MAX_CONFIG_BYTES = 1_000_000
COMPONENT_FOLDERS = {"unet": "unet", "vae": "vae", "text_encoder": "text_encoder", "text_encoder_2": "text_encoder"}
WEIGHT_NAMES = ("diffusion_pytorch_model", "model", "pytorch_model")


def is_diffusers_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "model_index.json"))


def _json(path: str) -> Optional[Dict[str, Any]]:
    try:
        if os.path.getsize(path) > MAX_CONFIG_BYTES:
            return None
        with open(path, "r", encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def _weight_files(folder: str) -> List[str]:
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    safet = [n for n in names if n.endswith(".safetensors") and any(n.startswith(w) for w in WEIGHT_NAMES)]
    if safet:
        return [os.path.join(folder, n) for n in safet]
    bins = [n for n in names if n.endswith(".bin") and any(n.startswith(w) for w in WEIGHT_NAMES)]
    return [os.path.join(folder, n) for n in bins]


def read_diffusers_dir(path: str) -> ReadResult:
    result = ReadResult()
    index = _json(os.path.join(path, "model_index.json")) or {}
    result.container = {"kind": "diffusers", "class_name": index.get("_class_name"),
                        "diffusers_version": index.get("_diffusers_version"), "files": []}
    pickles: List[Dict[str, Any]] = []
    configs: Dict[str, Any] = {}
    for folder, component in COMPONENT_FOLDERS.items():
        sub = os.path.join(path, folder)
        if not os.path.isdir(sub):
            continue
        config = _json(os.path.join(sub, "config.json"))
        if config is not None:
            configs[folder] = {k: config.get(k) for k in (
                "_class_name", "architectures", "cross_attention_dim", "in_channels", "out_channels",
                "hidden_size", "projection_dim", "addition_embed_type", "sample_size", "prediction_type")
                if k in config}
        for file in _weight_files(sub):
            size = os.path.getsize(file)
            try:
                with open(file, "rb") as fh:
                    head = fh.read(8)
                    if file.endswith(".safetensors"):
                        part = read_safetensors(fh, size)
                    elif head.startswith(b"PK\x03\x04"):
                        part = read_torch_zip(fh, size)
                        if part.resolve is not None:
                            part.resolve(fh, part.tensors)  # the folder is read file by file: locate now
                    else:
                        part = read_torch_pickle_file(fh, size)
            except OSError as exc:
                result.problems.append(problem("os-error", f"cannot read {file}: {exc.strerror or exc}"))
                continue
            rel = os.path.relpath(file, path)
            result.container["files"].append({"file": rel, "bytes": size, "tensors": len(part.tensors)})
            for t in part.tensors:
                t.name = f"{folder}/{t.name}"
                t.file = file
                result.tensors.append(t)
            for p in part.problems:
                result.problems.append(p.with_evidence(file=rel))
            if part.pickle is not None:
                pickles.append(dict(part.pickle, file=rel))
    if pickles:
        unsafe = [g for p in pickles for g in p["unsafe_globals"]]
        result.pickle = {
            "protocol": max((p["protocol"] for p in pickles if p["protocol"] is not None), default=None),
            "members": [p["file"] for p in pickles],
            "globals": sorted({g for p in pickles for g in p["globals"]}),
            "unsafe_globals": sorted(set(unsafe)),
            "dangerous_globals": sorted({g for p in pickles for g in p["dangerous_globals"]}),
            "unsafe_called": sorted({g for p in pickles for g in p["unsafe_called"]}),
            "where": {g: dict(w, file=p["file"]) for p in pickles for g, w in p["where"].items()},
            "anomalies": [a for p in pickles for a in p["anomalies"]][:50],
            "weights_only": {
                "refused": any(p["weights_only"]["refused"] for p in pickles),
                "reasons": [f"{p['file']}: {r}" for p in pickles for r in p["weights_only"]["reasons"]],
                "globals": sorted({g for p in pickles for g in p["weights_only"]["globals"]}),
                "opcodes": sorted({o for p in pickles for o in p["weights_only"]["opcodes"]}),
                "add_safe_globals_enough": all(p["weights_only"]["add_safe_globals_enough"] or
                                               not p["weights_only"]["refused"] for p in pickles),
            },
        }
    result.hints["diffusers"] = {"configs": configs, "components": [k for k in index if not k.startswith("_")]}
    if not result.container["files"]:
        result.problems.append(problem("diffusers-no-weights",
                                       "model_index.json is there but no component folder holds weights",
                                       components=result.hints["diffusers"]["components"]))
    return result


def diffusers_layout(configs: Dict[str, Any]) -> Dict[str, Any]:
    """family / variant / text encoder kind from the component configs."""
    unet = configs.get("unet", {})
    ctx = unet.get("cross_attention_dim")
    if isinstance(ctx, list):
        ctx = ctx[0] if ctx else None
    family = {768: "sd1", 1024: "sd2", 2048: "sdxl"}.get(ctx, "unknown")
    in_ch = unet.get("in_channels")
    variant = VARIANTS.get(in_ch, "unknown")
    kinds = []
    te = configs.get("text_encoder", {})
    width = te.get("hidden_size")
    if width:
        kinds.append({768: "clip-l", 1024: "openclip-h", 1280: "openclip-bigg"}.get(width, "other"))
    if configs.get("text_encoder_2", {}).get("hidden_size"):
        kinds.append("openclip-bigg")
    return {"family": family, "variant": variant, "unet_in_channels": in_ch, "context_dim": ctx,
            "text_encoder_kind": "+".join(kinds) if kinds else None, "text_encoder_width": width}
