"""Child process that really builds and loads the user's LDM model: `python -m diagnostics.probes._model_child`.

Building the model runs the user's own `ldm` code, which can crash the interpreter, hang on the
network (CLIP downloads) or run out of memory, so `probes/model.py` runs this module in a child
interpreter with a timeout and reads what it reports. It does what `ldm.util.instantiate_from_config`
and the CompVis/Stability `load_model_from_config` do, one stage at a time:

  import       import `model.target` (with --code-root first on sys.path) and every other target
  instantiate  `cls(**config.model.params)`, with parameters on the meta device where torch allows
               (no weights are allocated; third-party `from_pretrained` loaders still run for real)
  load         the checkpoint's state dict, read with `weights_only=True` or safetensors (never an
               unsafe unpickling), compared key by key and loaded with `strict=False`
  device       move to the CPU or GPU (optionally fp16), with time and memory
  smoke        text encoder on a prompt, one UNet step, one VAE decode; outputs must be finite

Each stage prints a line `@@ldm-diagnostics@@ {json}` on stdout when it begins and ends, so the
parent knows how far a child got even when it is killed. Everything else on stdout and stderr is
the user's code talking ("No module 'xformers'...", "DiffusionWrapper has 859.54 M params.").

`python -m diagnostics.probes._model_child layout CKPT` prints the checkpoint's tensor names,
shapes and dtypes, read with `torch.load(weights_only=True, mmap=True, map_location="meta")`.

This file runs in the user's interpreter: it must stay Python 3.8-compatible and import torch,
omegaconf and the user's code only inside functions.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import time
import traceback

MARK = "@@ldm-diagnostics@@ "
PROMPT = "a photo of a dog"
# Targets that LatentDiffusion does not instantiate when building the model for inference.
NOT_BUILT = ("scheduler_config",)


def emit(event, **data):
    data["event"] = event
    out = sys.__stdout__
    out.write("\n" + MARK + json.dumps(data, default=str) + "\n")
    out.flush()


VERSIONED = ("torch", "pytorch_lightning", "transformers", "huggingface_hub", "open_clip", "omegaconf", "xformers")


def loaded_versions():
    """Versions of the key packages as imported here (the path may hold other copies than pip's metadata says)."""
    out = {}
    for name in VERSIONED:
        module = sys.modules.get(name)
        if module is not None:
            out[name] = str(getattr(module, "__version__", None) or "unknown")
    return out


def error_info(exc):
    tb = traceback.format_exc()
    if len(tb) > 20000:
        tb = tb[:4000] + "\n...\n" + tb[-15000:]
    frames = traceback.extract_tb(exc.__traceback__)
    last = frames[-1] if frames else None
    return {
        "type": type(exc).__name__,
        "module": type(exc).__module__,
        "message": str(exc)[:4000],
        "traceback": tb,
        "where": {"file": last.filename, "line": last.lineno, "function": last.name, "code": last.line} if last else None,
        "versions": loaded_versions(),
    }


def peak_rss():
    """Peak resident memory of this process in bytes, or None where it cannot be read."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


class StageError(Exception):
    """A stage failed in a way we describe ourselves (no user traceback)."""

    def __init__(self, kind, message, **extra):
        Exception.__init__(self, message)
        self.kind = kind
        self.extra = extra


# ---------------------------------------------------------------------------------------------
# parameters on the meta device


def _wrap_classmethod(owner, name, state):
    raw = owner.__dict__.get(name)
    if not isinstance(raw, classmethod):
        return None
    func = raw.__func__

    def suspended(cls, *args, **kwargs):
        state["suspended"] += 1
        try:
            return func(cls, *args, **kwargs)
        finally:
            state["suspended"] -= 1

    setattr(owner, name, classmethod(suspended))
    return lambda: setattr(owner, name, raw)


def _wrap_function(module, name, state):
    func = getattr(module, name, None)
    if not callable(func):
        return None

    def suspended(*args, **kwargs):
        state["suspended"] += 1
        try:
            return func(*args, **kwargs)
        finally:
            state["suspended"] -= 1

    setattr(module, name, suspended)
    return lambda: setattr(module, name, func)


@contextlib.contextmanager
def parameters_on_meta(torch, enabled):
    """Register every new nn.Parameter on the meta device (shape and dtype, no memory, no init cost).

    Loaders that fill weights from their own files (transformers' `from_pretrained`, open_clip's
    `create_model*`, `clip.load`) keep real parameters: the checkpoint may not carry those weights.
    """
    if not enabled:
        yield
        return
    nn = torch.nn
    original = nn.Module.register_parameter
    state = {"suspended": 0}

    def register_parameter(module, name, param):
        original(module, name, param)
        if param is None or state["suspended"]:
            return
        current = module._parameters[name]
        if current.device.type != "meta":
            module._parameters[name] = type(current)(current.to("meta"), requires_grad=current.requires_grad)

    restore = []
    tf = sys.modules.get("transformers.modeling_utils")
    if tf is not None and hasattr(tf, "PreTrainedModel"):
        restore.append(_wrap_classmethod(tf.PreTrainedModel, "from_pretrained", state))
    for mod_name, names in (("open_clip", ("create_model_and_transforms", "create_model",
                                            "create_model_from_pretrained")),
                            ("clip", ("load",))):
        mod = sys.modules.get(mod_name)
        if mod is not None:
            restore.extend(_wrap_function(mod, n, state) for n in names)
    nn.Module.register_parameter = register_parameter
    try:
        yield
    finally:
        nn.Module.register_parameter = original
        for undo in restore:
            if undo is not None:
                undo()


def meta_supported(torch):
    import inspect

    try:
        return "assign" in inspect.signature(torch.nn.Module.load_state_dict).parameters
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------------------------------------
# reading a checkpoint without executing it


def sniff_format(path):
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) >= 9 and head[8:9] == b"{":
        n = int.from_bytes(head[:8], "little")
        if 0 < n < os.path.getsize(path):
            return "safetensors"
    if head[:4] == b"PK\x03\x04":
        return "torch-zip"
    if head[:1] == b"\x80":
        return "torch-legacy"
    return "unknown"


def read_state_dict(path, torch, map_location="cpu"):
    """(state_dict of tensors, format, top-level extras). Raises StageError when refused."""
    fmt = sniff_format(path)
    extras = {}
    if fmt == "safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise StageError("safetensors-missing", "the checkpoint is a .safetensors file but the safetensors "
                             "package is not installed")
        if map_location == "meta":
            from safetensors import safe_open

            sd = {}
            with safe_open(path, framework="pt") as fh:
                for key in fh.keys():
                    sl = fh.get_slice(key)
                    sd[key] = torch.empty(sl.get_shape(), dtype=_st_dtype(torch, sl.get_dtype()), device="meta")
            return sd, fmt, extras
        return load_file(path, device="cpu"), fmt, extras
    import inspect

    params = inspect.signature(torch.load).parameters
    if "weights_only" not in params:
        raise StageError("weights-only-unsupported",
                         "torch %s cannot load a pickled checkpoint safely (no weights_only=); the harness never "
                         "unpickles a file it inspects" % torch.__version__)
    kwargs = {"map_location": map_location, "weights_only": True}
    if fmt == "torch-zip" and "mmap" in params:
        kwargs["mmap"] = True
    try:
        obj = torch.load(path, **kwargs)
    except Exception as exc:
        if type(exc).__name__ == "UnpicklingError" or "Weights only load failed" in str(exc):
            unsafe = []
            getter = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
            if getter is not None:
                try:
                    unsafe = list(getter(path))
                except Exception:
                    unsafe = []
            raise StageError("weights-only-refused", str(exc).strip().splitlines()[0][:500], unsafe_globals=unsafe)
        raise
    while isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        for key, value in obj.items():
            if key != "state_dict" and isinstance(value, (int, float, str, bool)):
                extras[key] = value
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise StageError("not-a-state-dict", "the checkpoint holds a %s, not a state dict" % type(obj).__name__)
    sd = {k: v for k, v in obj.items() if torch.is_tensor(v)}
    skipped = [k for k in obj if not torch.is_tensor(obj[k])]
    if skipped:
        extras["non_tensor_entries"] = skipped[:20]
    return sd, fmt, extras


def _st_dtype(torch, name):
    table = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
             "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
             "BOOL": torch.bool}
    return table.get(str(name).upper(), torch.float32)


def layout_main(path):
    """Print {"tensors": {key: [shape, dtype]}} for a checkpoint, never unpickling unsafe globals."""
    try:
        import torch
    except ImportError as exc:
        emit("layout", ok=False, error={"kind": "torch-missing", "message": str(exc)})
        return 0
    try:
        sd, fmt, extras = read_state_dict(path, torch, map_location="meta")
    except StageError as exc:
        emit("layout", ok=False, error=dict({"kind": exc.kind, "message": str(exc)}, **exc.extra))
        return 0
    except Exception as exc:
        emit("layout", ok=False, error=dict(error_info(exc), kind="unreadable"))
        return 0
    tensors = {k: [list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in sd.items()}
    emit("layout", ok=True, format=fmt, tensors=tensors, extras=extras)
    return 0


# ---------------------------------------------------------------------------------------------
# the model stages


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
        for i, item in enumerate(node):
            strip_ckpt_paths(item, "%s[%d]" % (path, i), removed)


def stage_import(req, state):
    code_root = req.get("code_root")
    if code_root:
        sys.path.insert(0, os.path.abspath(code_root))
    import torch

    state["torch"] = torch
    info = {"torch": torch.__version__, "torch_cuda": getattr(torch.version, "cuda", None),
            "python": sys.version.split()[0], "sys_path0": sys.path[0]}
    try:
        from omegaconf import OmegaConf
    except ImportError as exc:
        raise StageError("omegaconf-missing", "omegaconf is not installed (%s); ldm reads its configs with it" % exc)
    config = OmegaConf.load(req["config"])
    removed = []
    strip_ckpt_paths(config.model, "model", removed)
    info["ckpt_paths_ignored"] = removed
    state["config"] = config
    target = str(config.model.target)
    info["target"] = target
    module_name, _, cls_name = target.rpartition(".")
    if not module_name:
        raise StageError("bad-target", "model.target %r is not a dotted `module.Class` path" % target)
    t0 = time.perf_counter()
    module = importlib.import_module(module_name)
    cls = getattr(module, cls_name)  # AttributeError names the missing class
    state["cls"] = cls
    info["target_file"] = getattr(module, "__file__", None)
    ldm = sys.modules.get("ldm")
    info["ldm_file"] = getattr(ldm, "__file__", None) if ldm is not None else None
    others = []
    from diagnostics.probes.ldm_config import collect_targets

    container = OmegaConf.to_container(config.model, resolve=True)
    for entry in collect_targets(container, "model"):
        if entry["path"] == "model" or any(part in entry["path"] for part in NOT_BUILT):
            continue
        mod_name, _, name = entry["target"].rpartition(".")
        record = {"path": entry["path"], "target": entry["target"], "ok": True}
        try:
            getattr(importlib.import_module(mod_name), name)
        except BaseException as exc:  # noqa: B902 - SystemExit from a user's module is a fact too
            record.update(ok=False, error=error_info(exc))
        others.append(record)
    info["targets"] = others
    info["seconds"] = time.perf_counter() - t0
    info["versions"] = loaded_versions()
    return info


def count(tensors):
    return int(sum(t.numel() for t in tensors))


def stage_instantiate(req, state):
    torch = state["torch"]
    config = state["config"]
    meta = bool(req.get("meta", True)) and meta_supported(torch)
    params = config.model.get("params", dict())
    info = {"meta": meta}
    t0 = time.perf_counter()
    try:
        with parameters_on_meta(torch, meta):
            model = state["cls"](**params)  # what ldm.util.instantiate_from_config does
    except Exception as exc:
        if not meta or "meta" not in str(exc).lower():
            raise
        # This code cannot build on the meta device: build it for real, as the user's script would.
        info["meta"] = False
        info["meta_error"] = "%s: %s" % (type(exc).__name__, str(exc)[:300])
        state["config"] = config = _reload_config(req)
        t0 = time.perf_counter()
        model = state["cls"](**config.model.get("params", dict()))
    info["seconds"] = time.perf_counter() - t0
    state["model"] = model
    state["meta"] = info["meta"]
    info["class"] = type(model).__module__ + "." + type(model).__name__
    components = {}
    for name, child in model.named_children():
        n = count(child.parameters())
        if name == "model_ema":
            components[name] = {"tensors": len(list(child.buffers())), "elements": count(child.buffers())}
        elif n:
            components[name] = {"parameters": n,
                                "on_meta": sum(1 for p in child.parameters() if p.device.type == "meta"),
                                "tensors": sum(1 for _ in child.parameters())}
    info["components"] = components
    info["parameters"] = count(model.parameters())
    info["meta_parameters"] = sum(1 for p in model.parameters() if p.device.type == "meta")
    info["use_ema"] = bool(getattr(model, "use_ema", False))
    unet = getattr(getattr(model, "model", None), "diffusion_model", None)
    if unet is not None:
        info["unet"] = {"in_channels": getattr(unet, "in_channels", None),
                        "out_channels": getattr(unet, "out_channels", None)}
    cond = getattr(model, "cond_stage_model", None)
    tok = getattr(cond, "tokenizer", None)
    if tok is not None and callable(tok):
        try:
            ids = tok(PROMPT)["input_ids"]
            info["tokenizer"] = {"class": type(tok).__name__, "size": len(tok), "prompt": PROMPT,
                                 "ids": [int(i) for i in ids][:16]}
        except Exception as exc:
            info["tokenizer"] = {"class": type(tok).__name__, "error": "%s: %s" % (type(exc).__name__, exc)}
    info["rss_peak_bytes"] = peak_rss()
    return info


def _reload_config(req):
    from omegaconf import OmegaConf

    config = OmegaConf.load(req["config"])
    strip_ckpt_paths(config.model, "model", [])
    return config


def stage_load(req, state):
    torch = state["torch"]
    model = state["model"]
    t0 = time.perf_counter()
    sd, fmt, extras = read_state_dict(req["checkpoint"], torch)
    read_seconds = time.perf_counter() - t0
    expected = model.state_dict(keep_vars=True)
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    mismatched = []
    loadable = {}
    for key, value in sd.items():
        if key not in expected:
            continue
        want = tuple(expected[key].shape)
        if tuple(value.shape) != want:
            mismatched.append({"key": key, "checkpoint": list(value.shape), "model": list(want)})
        else:
            loadable[key] = value
    state["mismatched"] = len(mismatched)
    t1 = time.perf_counter()
    kwargs = {"strict": False}
    if state.get("meta"):
        kwargs["assign"] = True  # take the checkpoint's tensors as the parameters: no copy, no double memory
    result = model.load_state_dict(loadable, **kwargs)
    apply_seconds = time.perf_counter() - t1
    dtypes = {}
    for value in sd.values():
        name = str(value.dtype).replace("torch.", "")
        dtypes[name] = dtypes.get(name, 0) + 1
    return {
        "format": fmt, "extras": extras, "checkpoint_tensors": len(sd), "model_keys": len(expected),
        "loaded": len(loadable), "missing": missing, "unexpected": unexpected, "mismatched": mismatched,
        "torch_missing": len(result.missing_keys), "torch_unexpected": len(result.unexpected_keys),
        "dtypes": dtypes, "read_seconds": read_seconds, "apply_seconds": apply_seconds,
        "seconds": read_seconds + apply_seconds, "rss_peak_bytes": peak_rss(),
    }


def resolve_device(req, torch):
    wanted = req.get("device") or "auto"
    if wanted == "cpu":
        return "cpu", None
    if wanted == "none":
        return None, "the model was only built and loaded (no device move or smoke forward was asked for)"
    try:
        has_cuda = bool(torch.cuda.is_available())
    except Exception as exc:
        has_cuda = False
        wanted_reason = "torch.cuda.is_available() raised %s: %s" % (type(exc).__name__, exc)
        return None, wanted_reason
    if has_cuda:
        return "cuda", None
    if wanted == "cuda":
        return None, "--device cuda was given, but torch.cuda.is_available() is False in this environment"
    return None, "no CUDA device (torch.cuda.is_available() is False); pass --device cpu to run the smoke forward on the CPU"


def materialise(model, torch, device):
    """Give parameters and buffers still on the meta device (not in the checkpoint) real zeros."""
    filled = []
    for mod_name, module in model.named_modules():
        for name, param in list(module._parameters.items()):
            if param is not None and param.device.type == "meta":
                module._parameters[name] = torch.nn.Parameter(
                    torch.zeros(param.shape, dtype=param.dtype, device=device), requires_grad=param.requires_grad)
                filled.append((mod_name + "." + name).lstrip("."))
        for name, buf in list(module._buffers.items()):
            if buf is not None and buf.device.type == "meta":
                module._buffers[name] = torch.zeros(buf.shape, dtype=buf.dtype, device=device)
                filled.append((mod_name + "." + name).lstrip("."))
    return filled


def is_oom(exc):
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower() \
        or "can't allocate memory" in str(exc).lower() or isinstance(exc, MemoryError)


def stage_device(req, state):
    torch = state["torch"]
    model = state["model"]
    device = state["device"]
    fp16 = req.get("dtype") == "fp16" and device == "cuda"
    dtype = torch.float16 if fp16 else torch.float32
    info = {"device": device, "dtype": "float16" if fp16 else "float32"}
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = props.name
        info["total_memory"] = int(props.total_memory)
    t0 = time.perf_counter()
    filled = materialise(model, torch, "cpu" if device == "cpu" else device)
    info["zero_filled"] = len(filled)
    info["zero_filled_keys"] = filled[:10]
    model.to(device=device, dtype=dtype)
    model.eval()
    cond = getattr(model, "cond_stage_model", None)
    if cond is not None and hasattr(cond, "device"):
        try:
            cond.device = device  # FrozenCLIPEmbedder moves its tokens to self.device (default "cuda")
        except Exception:
            pass
    if device == "cuda":
        torch.cuda.synchronize()
        info["memory_allocated"] = int(torch.cuda.memory_allocated())
        info["max_memory_allocated"] = int(torch.cuda.max_memory_allocated())
    info["seconds"] = time.perf_counter() - t0
    info["rss_peak_bytes"] = peak_rss()
    state["dtype"] = dtype
    return info


def _finite(torch, tensor):
    return bool(torch.isfinite(tensor.float()).all().item())


def _context_dim(model):
    for name, module in model.named_modules():
        if name.endswith("attn2.to_k") and hasattr(module, "in_features"):
            return int(module.in_features)
    return None


def stage_smoke(req, state):
    torch = state["torch"]
    model = state["model"]
    device = state["device"]
    dtype = state["dtype"]
    size = req.get("latent_size")
    if not size:
        # the smallest latent whose deepest UNet level is still 2x2 (1x1 breaks GroupNorm on narrow models):
        # 16 (128 px) for SD's four levels on the CPU; 64 (512 px, the real size) on a GPU
        levels = len(getattr(getattr(getattr(model, "model", None), "diffusion_model", None), "channel_mult", None)
                     or (1, 2, 4, 4))
        size = 64 if device == "cuda" else max(8, 2 ** levels)
    size = int(size)
    info = {"latent_size": size, "image_size": size * 8, "parts": {}}
    torch.manual_seed(0)
    autocast = contextlib.nullcontext()
    if device == "cuda" and dtype == torch.float16:
        autocast = torch.autocast("cuda", dtype=torch.float16)
    parts = info["parts"]
    failures = []
    with torch.no_grad(), autocast:
        # text encoder
        context = None
        part = {"prompt": PROMPT}
        t0 = time.perf_counter()
        if getattr(model, "cond_stage_model", None) is None:
            part["skipped"] = "the model has no text encoder (cond_stage_model is None)"
        else:
            try:
                context = model.get_learned_conditioning([PROMPT])
                if isinstance(context, (list, tuple)):
                    context = context[0]
                part.update(shape=list(context.shape), dtype=str(context.dtype).replace("torch.", ""),
                            finite=_finite(torch, context))
            except Exception as exc:
                part["error"] = error_info(exc)
                failures.append(("text", exc))
        part["seconds"] = time.perf_counter() - t0
        parts["text"] = part
        # one UNet step
        part = {}
        t0 = time.perf_counter()
        wrapper = getattr(model, "model", None)
        unet = getattr(wrapper, "diffusion_model", None)
        if unet is None:
            part["skipped"] = "the model has no model.diffusion_model (UNet)"
        else:
            key = getattr(wrapper, "conditioning_key", None)
            latent_ch = int(getattr(model, "channels", 4) or 4)
            in_ch = int(getattr(unet, "in_channels", latent_ch))
            concat_ch = in_ch - latent_ch
            part.update(conditioning_key=key, latent_channels=latent_ch, unet_in_channels=in_ch,
                        concat_channels=concat_ch if key in ("concat", "hybrid") else 0)
            if key not in (None, "crossattn", "concat", "hybrid"):
                part["skipped"] = "conditioning_key %r needs class/adm inputs; not covered by the smoke forward" % key
            else:
                try:
                    x = torch.randn(1, latent_ch, size, size, device=device)
                    cond = {}
                    if key in ("crossattn", "hybrid"):
                        if context is None:
                            dim = _context_dim(model) or 768
                            context = torch.randn(1, 77, dim, device=device)
                            part["context"] = "random (the text encoder did not run)"
                        cond["c_crossattn"] = [context]
                    if key in ("concat", "hybrid"):
                        # inpainting: mask (1 channel) + masked-image latents (4 channels)
                        cond["c_concat"] = [torch.randn(1, max(concat_ch, 0), size, size, device=device)]
                    t = torch.full((1,), 500, device=device, dtype=torch.long)
                    out = model.apply_model(x, t, cond)
                    part.update(shape=list(out.shape), finite=_finite(torch, out),
                                input_shape=[1, in_ch, size, size])
                except Exception as exc:
                    part["error"] = error_info(exc)
                    failures.append(("unet", exc))
        part["seconds"] = time.perf_counter() - t0
        parts["unet"] = part
        # VAE decode of a small latent
        part = {}
        t0 = time.perf_counter()
        vae = getattr(model, "first_stage_model", None)
        if vae is None or not hasattr(model, "decode_first_stage"):
            part["skipped"] = "the model has no first_stage_model (VAE)"
        else:
            try:
                ch = int(getattr(vae, "embed_dim", getattr(model, "channels", 4)))
                z = torch.randn(1, ch, size, size, device=device)
                img = model.decode_first_stage(z)
                part.update(shape=list(img.shape), finite=_finite(torch, img), input_shape=[1, ch, size, size])
                info["image_size"] = int(img.shape[-1])
            except Exception as exc:
                part["error"] = error_info(exc)
                failures.append(("vae", exc))
        part["seconds"] = time.perf_counter() - t0
        parts["vae"] = part
    if device == "cuda":
        torch.cuda.synchronize()
        info["max_memory_allocated"] = int(torch.cuda.max_memory_allocated())
    info["rss_peak_bytes"] = peak_rss()
    info["oom"] = any(is_oom(exc) for _, exc in failures)
    return info


STAGES = (("import", stage_import), ("instantiate", stage_instantiate), ("load", stage_load),
          ("device", stage_device), ("smoke", stage_smoke))


def model_main(req):
    state = {}
    emit("start", pid=os.getpid(), python=sys.executable)
    for name, func in STAGES:
        if name == "load" and not req.get("checkpoint"):
            emit("skip", stage=name, reason="no checkpoint was given")
            continue
        if name == "device" and state.get("mismatched"):
            reason = ("the checkpoint does not fit the model (%d size mismatches; ldm's load_state_dict raises on "
                      "them), so it was not run" % state["mismatched"])
            emit("skip", stage="device", reason=reason)
            emit("skip", stage="smoke", reason=reason)
            break
        if name == "device":
            device, reason = resolve_device(req, state["torch"])
            state["device"] = device
            if device is None:
                emit("skip", stage="device", reason=reason)
                emit("skip", stage="smoke", reason=reason)
                break
        if name == "smoke" and not req.get("smoke", True):
            emit("skip", stage=name, reason="the smoke forward was not asked for")
            continue
        emit("begin", stage=name)
        t0 = time.perf_counter()
        try:
            data = func(req, state)
        except StageError as exc:
            emit("error", stage=name, seconds=time.perf_counter() - t0,
                 error=dict({"kind": exc.kind, "type": "StageError", "message": str(exc)}, **exc.extra))
            break
        except BaseException as exc:  # noqa: B902 - the user's code may raise anything, even SystemExit
            info = error_info(exc)
            info["kind"] = "oom" if is_oom(exc) else "exception"
            emit("error", stage=name, seconds=time.perf_counter() - t0, error=info)
            if isinstance(exc, KeyboardInterrupt):
                raise
            break
        emit("end", stage=name, data=data)
    emit("done")
    return 0


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 2 and argv[0] == "layout":
        return layout_main(argv[1])
    if len(argv) != 1:
        sys.stderr.write("usage: python -m diagnostics.probes._model_child REQUEST_JSON | layout CKPT\n")
        return 2
    return model_main(json.loads(argv[0]))


if __name__ == "__main__":
    sys.exit(main())
