"""The checkpoint's state dict, read the way the user's loader would, but never by unpickling code.

The format comes from the checkpoint package's sniffer (`probes/checkpoint/sniff.py`, the one owner
of "what do these first bytes say"), looking at the bytes only, as `torch.load` does: a safetensors
file goes to the safetensors library, everything else to `torch.load(weights_only=True)` (memory-mapped
for a torch zip). A refusal is a `StageError` naming the globals the file would have run.
`layout_main` answers `layout CKPT` with the tensors' names, shapes and dtypes, read on the meta device.
"""

from __future__ import annotations

import inspect
import os

from .protocol import StageError, emit, error_info

# sniffed kind -> the child's format name (those of `read_tensor_records`, where they overlap)
FORMAT_OF_KIND = {"safetensors": "safetensors", "zip": "torch-zip", "pickle": "torch-legacy"}


def checkpoint_format(path):
    """safetensors, torch-zip, torch-legacy or unknown, from the file's first bytes (never its name)."""
    from ..checkpoint.sniff import HEAD_BYTES, sniff

    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        head = fh.read(HEAD_BYTES)
    sniffed = sniff(head, size)
    kind = sniffed["kind"]
    if kind == "safetensors" and not 0 < (sniffed.get("header_bytes") or 0) < size:
        return "unknown"  # a header that does not fit in the file: not for the safetensors loader
    return FORMAT_OF_KIND.get(kind, "unknown")


def safetensors_dtype(torch, code):
    """The torch dtype of a safetensors dtype code (float32 for one this torch does not have)."""
    from ..checkpoint.records import SAFETENSORS_DTYPES

    name = SAFETENSORS_DTYPES.get(str(code).upper())
    dtype = getattr(torch, name, None) if name else None
    return dtype if dtype is not None else torch.float32


def _read_safetensors(path, torch, map_location):
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise StageError("safetensors-missing", "the checkpoint is a .safetensors file but the safetensors "
                         "package is not installed")
    if map_location != "meta":
        return load_file(path, device="cpu")
    from safetensors import safe_open

    state_dict = {}
    with safe_open(path, framework="pt") as fh:
        for key in fh.keys():
            tensor_slice = fh.get_slice(key)
            state_dict[key] = torch.empty(tensor_slice.get_shape(), device="meta",
                                          dtype=safetensors_dtype(torch, tensor_slice.get_dtype()))
    return state_dict


def _unsafe_globals(torch, path):
    getter = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if getter is None:
        return []
    try:
        return list(getter(path))
    except Exception:
        return []


def _load_weights_only(path, torch, map_location, fmt):
    params = inspect.signature(torch.load).parameters
    if "weights_only" not in params:
        raise StageError("weights-only-unsupported",
                         "torch %s cannot load a pickled checkpoint safely (no weights_only=); the harness never "
                         "unpickles a file it inspects" % torch.__version__)
    kwargs = {"map_location": map_location, "weights_only": True}
    if fmt == "torch-zip" and "mmap" in params:
        kwargs["mmap"] = True
    try:
        return torch.load(path, **kwargs)
    except Exception as exc:
        if type(exc).__name__ == "UnpicklingError" or "Weights only load failed" in str(exc):
            raise StageError("weights-only-refused", str(exc).strip().splitlines()[0][:500],
                             unsafe_globals=_unsafe_globals(torch, path))
        raise


def _unwrap_state_dict(obj, torch, extras):
    """The tensors of a (Lightning-wrapped) state dict; top-level scalars and skipped entries go to `extras`."""
    while isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        for key, value in obj.items():
            if key != "state_dict" and isinstance(value, (int, float, str, bool)):
                extras[key] = value
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise StageError("not-a-state-dict", "the checkpoint holds a %s, not a state dict" % type(obj).__name__)
    tensors = {key: value for key, value in obj.items() if torch.is_tensor(value)}
    skipped = [key for key in obj if not torch.is_tensor(obj[key])]
    if skipped:
        extras["non_tensor_entries"] = skipped[:20]
    return tensors


def read_state_dict(path, torch, map_location="cpu"):
    """(state_dict of tensors, format, top-level extras). Raises StageError when refused."""
    fmt = checkpoint_format(path)
    extras = {}
    if fmt == "safetensors":
        return _read_safetensors(path, torch, map_location), fmt, extras
    loaded = _load_weights_only(path, torch, map_location, fmt)
    return _unwrap_state_dict(loaded, torch, extras), fmt, extras


def layout_main(path):
    """Print {"tensors": {key: [shape, dtype]}} for a checkpoint, never unpickling unsafe globals."""
    try:
        import torch
    except ImportError as exc:
        emit("layout", ok=False, error={"kind": "torch-missing", "message": str(exc)})
        return 0
    try:
        state_dict, fmt, extras = read_state_dict(path, torch, map_location="meta")
    except StageError as exc:
        emit("layout", ok=False, error=exc.as_error())
        return 0
    except Exception as exc:
        emit("layout", ok=False, error=dict(error_info(exc), kind="unreadable"))
        return 0
    tensors = {key: [list(value.shape), str(value.dtype).replace("torch.", "")] for key, value in state_dict.items()}
    emit("layout", ok=True, format=fmt, tensors=tensors, extras=extras)
    return 0
