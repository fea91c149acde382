"""Building the model with its parameters on torch's meta device: shapes and dtypes, no memory.

`parameters_on_meta` patches `nn.Module.register_parameter` for the duration of the build, so that an
SD 1.x model (about a billion parameters) is built in seconds without allocating or initialising its
weights; the checkpoint's tensors are then taken as the parameters (`load_state_dict(assign=True)`).
Loaders that fill weights from their own files keep real parameters: the checkpoint may not carry
those weights. What is still on the meta device when the model moves to a device (keys the checkpoint
lacks) gets zeros from `materialise`, and the load stage reports those keys as missing.
"""

from __future__ import annotations

import contextlib
import inspect
import sys

# Third-party loaders whose weights come from their own files: (module, functions).
PRETRAINED_LOADERS = (
    ("open_clip", ("create_model_and_transforms", "create_model", "create_model_from_pretrained")),
    ("clip", ("load",)),
)


def meta_supported(torch):
    """Whether this torch can take loaded tensors as parameters (`load_state_dict(assign=True)`, torch >= 2.1)."""
    try:
        return "assign" in inspect.signature(torch.nn.Module.load_state_dict).parameters
    except (TypeError, ValueError):
        return False


def _suspending(func, suspension):
    """`func`, with meta registration suspended while it runs (a counter: loaders call each other)."""
    def suspended(*args, **kwargs):
        suspension["depth"] += 1
        try:
            return func(*args, **kwargs)
        finally:
            suspension["depth"] -= 1

    return suspended


def _suspend_in_classmethod(owner, name, suspension):
    """Wrap the classmethod `owner.name`; returns the undo, or None when there is no such classmethod."""
    raw = owner.__dict__.get(name)
    if not isinstance(raw, classmethod):
        return None
    setattr(owner, name, classmethod(_suspending(raw.__func__, suspension)))
    return lambda: setattr(owner, name, raw)


def _suspend_in_function(module, name, suspension):
    """Wrap the function `module.name`; returns the undo, or None when there is no such function."""
    func = getattr(module, name, None)
    if not callable(func):
        return None
    setattr(module, name, _suspending(func, suspension))
    return lambda: setattr(module, name, func)


def _suspend_in_pretrained_loaders(suspension):
    """Wrap the loaders of the modules already imported; returns their undos."""
    undos = []
    modeling_utils = sys.modules.get("transformers.modeling_utils")
    if modeling_utils is not None and hasattr(modeling_utils, "PreTrainedModel"):
        undos.append(_suspend_in_classmethod(modeling_utils.PreTrainedModel, "from_pretrained", suspension))
    for module_name, names in PRETRAINED_LOADERS:
        module = sys.modules.get(module_name)
        if module is not None:
            undos.extend(_suspend_in_function(module, name, suspension) for name in names)
    return [undo for undo in undos if undo is not None]


@contextlib.contextmanager
def parameters_on_meta(torch, enabled):
    """Register every new nn.Parameter on the meta device (shape and dtype, no memory, no init cost).

    Loaders that fill weights from their own files (transformers' `from_pretrained`, open_clip's
    `create_model*`, `clip.load`) keep real parameters: the checkpoint may not carry those weights.
    """
    if not enabled:
        yield
        return
    module_class = torch.nn.Module
    original = module_class.register_parameter
    suspension = {"depth": 0}

    def register_parameter(module, name, param):
        original(module, name, param)
        if param is None or suspension["depth"]:
            return
        current = module._parameters[name]
        if current.device.type != "meta":
            module._parameters[name] = type(current)(current.to("meta"), requires_grad=current.requires_grad)

    undos = _suspend_in_pretrained_loaders(suspension)
    module_class.register_parameter = register_parameter
    try:
        yield
    finally:
        module_class.register_parameter = original
        for undo in undos:
            undo()


def materialise(model, torch, device):
    """Give parameters and buffers still on the meta device (not in the checkpoint) real zeros."""
    filled = []
    for module_name, module in model.named_modules():
        for name, param in list(module._parameters.items()):
            if param is not None and param.device.type == "meta":
                module._parameters[name] = torch.nn.Parameter(
                    torch.zeros(param.shape, dtype=param.dtype, device=device), requires_grad=param.requires_grad)
                filled.append((module_name + "." + name).lstrip("."))
        for name, buf in list(module._buffers.items()):
            if buf is not None and buf.device.type == "meta":
                module._buffers[name] = torch.zeros(buf.shape, dtype=buf.dtype, device=device)
                filled.append((module_name + "." + name).lstrip("."))
    return filled
