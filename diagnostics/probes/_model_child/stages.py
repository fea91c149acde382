"""The first four stages, as `ldm.util.instantiate_from_config` and `load_model_from_config` do them.

Each stage is `stage_NAME(request, state) -> data`: it reads the run's request, keeps what later
stages need in `state` (torch, config, class, model, device, dtype) and returns what it measured,
the `data` of its `end` event. A failure it describes itself is a `StageError`; anything else the
user's code raises goes up to the runner as it is.
"""

from __future__ import annotations

import importlib
import os
import sys
import time

from .meta_device import materialise, meta_supported, parameters_on_meta
from .protocol import StageError, error_info, loaded_versions, peak_rss
from .state_dict import read_state_dict

PROMPT = "a photo of a dog"
# Targets that LatentDiffusion does not instantiate when building the model for inference.
NOT_BUILT = ("scheduler_config",)


def strip_ckpt_paths(node, path, removed):
    """Drop `ckpt_path` entries: ldm's own init_from_ckpt would unpickle them with torch.load."""
    from omegaconf import DictConfig, ListConfig

    if isinstance(node, DictConfig):
        for key in list(node.keys()):
            if key == "ckpt_path" and node.get(key):
                removed.append({"path": "%s.%s" % (path, key), "value": str(node.get(key))})
                node[key] = None
            else:
                try:
                    child = node.get(key)
                except Exception:
                    continue
                strip_ckpt_paths(child, "%s.%s" % (path, key), removed)
    elif isinstance(node, ListConfig):
        for index, item in enumerate(node):
            strip_ckpt_paths(item, "%s[%d]" % (path, index), removed)


def _load_config(request, removed):
    from omegaconf import OmegaConf

    config = OmegaConf.load(request["config"])
    strip_ckpt_paths(config.model, "model", removed)
    return config


def _import_other_targets(config):
    """[{path, target, ok, error?}] for every target under `model` that the model builds besides itself."""
    from omegaconf import OmegaConf

    from ..ldm_config import collect_targets

    records = []
    for entry in collect_targets(OmegaConf.to_container(config.model, resolve=True), "model"):
        if entry["path"] == "model" or any(part in entry["path"] for part in NOT_BUILT):
            continue
        module_name, _, name = entry["target"].rpartition(".")
        record = {"path": entry["path"], "target": entry["target"], "ok": True}
        try:
            getattr(importlib.import_module(module_name), name)
        except BaseException as exc:  # noqa: B902 - SystemExit from a user's module is a fact too
            record.update(ok=False, error=error_info(exc))
        records.append(record)
    return records


def stage_import(request, state):
    """Import `model.target` (with --code-root first on sys.path) and every other target of the config."""
    code_root = request.get("code_root")
    if code_root:
        sys.path.insert(0, os.path.abspath(code_root))
    import torch

    state["torch"] = torch
    info = {"torch": torch.__version__, "torch_cuda": getattr(torch.version, "cuda", None),
            "python": sys.version.split()[0], "sys_path0": sys.path[0]}
    try:
        import omegaconf  # noqa: F401 - ldm reads its configs with it
    except ImportError as exc:
        raise StageError("omegaconf-missing", "omegaconf is not installed (%s); ldm reads its configs with it" % exc)
    removed = []
    config = state["config"] = _load_config(request, removed)
    info["ckpt_paths_ignored"] = removed
    target = info["target"] = str(config.model.target)
    module_name, _, class_name = target.rpartition(".")
    if not module_name:
        raise StageError("bad-target", "model.target %r is not a dotted `module.Class` path" % target)
    started = time.perf_counter()
    module = importlib.import_module(module_name)
    state["cls"] = getattr(module, class_name)  # AttributeError names the missing class
    info["target_file"] = getattr(module, "__file__", None)
    ldm = sys.modules.get("ldm")
    info["ldm_file"] = getattr(ldm, "__file__", None) if ldm is not None else None
    info["targets"] = _import_other_targets(config)
    info["seconds"] = time.perf_counter() - started
    info["versions"] = loaded_versions()
    return info


def count_elements(tensors):
    return int(sum(tensor.numel() for tensor in tensors))


def describe_model(model):
    """Components, parameter counts, EMA, UNet channels and the tokenizer's answer to the prompt."""
    info = {"class": type(model).__module__ + "." + type(model).__name__}
    components = {}
    for name, child in model.named_children():
        elements = count_elements(child.parameters())
        if name == "model_ema":
            components[name] = {"tensors": len(list(child.buffers())), "elements": count_elements(child.buffers())}
        elif elements:
            components[name] = {"parameters": elements,
                                "on_meta": sum(1 for p in child.parameters() if p.device.type == "meta"),
                                "tensors": sum(1 for _ in child.parameters())}
    info["components"] = components
    info["parameters"] = count_elements(model.parameters())
    info["meta_parameters"] = sum(1 for p in model.parameters() if p.device.type == "meta")
    info["use_ema"] = bool(getattr(model, "use_ema", False))
    unet = getattr(getattr(model, "model", None), "diffusion_model", None)
    if unet is not None:
        info["unet"] = {"in_channels": getattr(unet, "in_channels", None),
                        "out_channels": getattr(unet, "out_channels", None)}
    tokenizer = getattr(getattr(model, "cond_stage_model", None), "tokenizer", None)
    if tokenizer is not None and callable(tokenizer):
        try:
            ids = tokenizer(PROMPT)["input_ids"]
            info["tokenizer"] = {"class": type(tokenizer).__name__, "size": len(tokenizer), "prompt": PROMPT,
                                 "ids": [int(i) for i in ids][:16]}
        except Exception as exc:
            info["tokenizer"] = {"class": type(tokenizer).__name__, "error": "%s: %s" % (type(exc).__name__, exc)}
    return info


def stage_instantiate(request, state):
    """`cls(**config.model.params)`, parameters on the meta device where torch allows."""
    torch = state["torch"]
    meta = bool(request.get("meta", True)) and meta_supported(torch)
    info = {"meta": meta}
    started = time.perf_counter()
    try:
        with parameters_on_meta(torch, meta):
            model = state["cls"](**state["config"].model.get("params", dict()))  # as instantiate_from_config does
    except Exception as exc:
        if not meta or "meta" not in str(exc).lower():
            raise
        # This code cannot build on the meta device: build it for real, as the user's script would.
        info["meta"] = False
        info["meta_error"] = "%s: %s" % (type(exc).__name__, str(exc)[:300])
        state["config"] = config = _load_config(request, [])
        started = time.perf_counter()
        model = state["cls"](**config.model.get("params", dict()))
    info["seconds"] = time.perf_counter() - started
    state["model"] = model
    state["meta"] = info["meta"]
    info.update(describe_model(model))
    info["rss_peak_bytes"] = peak_rss()
    return info


def compare_keys(state_dict, expected):
    """(missing, unexpected, mismatched, loadable) between the checkpoint's tensors and the model's."""
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    mismatched = []
    loadable = {}
    for key, value in state_dict.items():
        if key not in expected:
            continue
        want = tuple(expected[key].shape)
        if tuple(value.shape) != want:
            mismatched.append({"key": key, "checkpoint": list(value.shape), "model": list(want)})
        else:
            loadable[key] = value
    return missing, unexpected, mismatched, loadable


def stage_load(request, state):
    """The checkpoint's state dict, compared key by key and loaded with `strict=False`."""
    torch = state["torch"]
    model = state["model"]
    started = time.perf_counter()
    state_dict, fmt, extras = read_state_dict(request["checkpoint"], torch)
    read_seconds = time.perf_counter() - started
    expected = model.state_dict(keep_vars=True)
    missing, unexpected, mismatched, loadable = compare_keys(state_dict, expected)
    state["mismatched"] = len(mismatched)
    started = time.perf_counter()
    kwargs = {"strict": False}
    if state.get("meta"):
        kwargs["assign"] = True  # take the checkpoint's tensors as the parameters: no copy, no double memory
    result = model.load_state_dict(loadable, **kwargs)
    apply_seconds = time.perf_counter() - started
    dtypes = {}
    for value in state_dict.values():
        name = str(value.dtype).replace("torch.", "")
        dtypes[name] = dtypes.get(name, 0) + 1
    return {
        "format": fmt, "extras": extras, "checkpoint_tensors": len(state_dict), "model_keys": len(expected),
        "loaded": len(loadable), "missing": missing, "unexpected": unexpected, "mismatched": mismatched,
        "torch_missing": len(result.missing_keys), "torch_unexpected": len(result.unexpected_keys),
        "dtypes": dtypes, "read_seconds": read_seconds, "apply_seconds": apply_seconds,
        "seconds": read_seconds + apply_seconds, "rss_peak_bytes": peak_rss(),
    }


def resolve_device(request, torch):
    """(device, None) to run on, or (None, why the device and smoke stages are skipped)."""
    wanted = request.get("device") or "auto"
    if wanted == "cpu":
        return "cpu", None
    if wanted == "none":
        return None, "the model was only built and loaded (no device move or smoke forward was asked for)"
    try:
        has_cuda = bool(torch.cuda.is_available())
    except Exception as exc:
        return None, "torch.cuda.is_available() raised %s: %s" % (type(exc).__name__, exc)
    if has_cuda:
        return "cuda", None
    if wanted == "cuda":
        return None, "--device cuda was given, but torch.cuda.is_available() is False in this environment"
    return None, "no CUDA device (torch.cuda.is_available() is False); pass --device cpu to run the smoke forward on the CPU"


def stage_device(request, state):
    """Move to the CPU or GPU (optionally fp16), zero-filling what is still on the meta device."""
    torch = state["torch"]
    model = state["model"]
    device = state["device"]
    fp16 = request.get("dtype") == "fp16" and device == "cuda"
    dtype = torch.float16 if fp16 else torch.float32
    info = {"device": device, "dtype": "float16" if fp16 else "float32"}
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = props.name
        info["total_memory"] = int(props.total_memory)
    started = time.perf_counter()
    filled = materialise(model, torch, "cpu" if device == "cpu" else device)
    info["zero_filled"] = len(filled)
    info["zero_filled_keys"] = filled[:10]
    model.to(device=device, dtype=dtype)
    model.eval()
    text_encoder = getattr(model, "cond_stage_model", None)
    if text_encoder is not None and hasattr(text_encoder, "device"):
        try:
            text_encoder.device = device  # FrozenCLIPEmbedder moves its tokens to self.device (default "cuda")
        except Exception:
            pass
    if device == "cuda":
        torch.cuda.synchronize()
        info["memory_allocated"] = int(torch.cuda.memory_allocated())
        info["max_memory_allocated"] = int(torch.cuda.max_memory_allocated())
    info["seconds"] = time.perf_counter() - started
    info["rss_peak_bytes"] = peak_rss()
    state["dtype"] = dtype
    return info
