"""Which globals a checkpoint pickle may name, and whether torch's `weights_only` loader would refuse it.

Two separate verdicts (issue 4):

- `safe`: every global is on our allowlist of what real LDM checkpoints use: torch's rebuild functions,
  storage classes and dtypes, `collections.OrderedDict`, numpy scalars and dtypes, `_codecs.encode`, and
  `pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint` (the callback class that original
  SD 1.x files carry as a dictionary key). An allowlist, not a denylist: scanners that list bad names
  keep missing new ones (picklescan's advisories; torch's own unpickler and A1111's `safe.py` allowlist).
- `weights_only`: a static model of `torch/_weights_only_unpickler.py` (torch >= 2.6 default): its
  allowed globals, its opcode subset and its persistent-id rule. It predicts refusal without importing
  torch; the tests check the prediction against the real `torch.load(weights_only=True)` on benign files.
"""

from __future__ import annotations

import unicodedata
from typing import Any, Dict, Iterable, List

from .records import DTYPES, STORAGE_DTYPES

_TORCH_DTYPE_NAMES = set(DTYPES) | {
    "half", "float", "double", "long", "int", "short", "cfloat", "cdouble", "complex32", "chalf",
    "uint1", "uint2", "uint3", "uint4", "uint5", "uint6", "uint7", "int1", "int2", "int3", "int4", "int5", "int6",
    "int7", "bits1x8", "bits2x4", "bits4x2", "bits8", "bits16", "float4_e2m1fn_x2",
}

_TENSOR_REBUILDERS = (
    "_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
    "_rebuild_parameter_with_state",
)

# Our allowlist: what LDM / SD checkpoints written by torch and Lightning contain.
LDM_ALLOWED = frozenset(
    ["collections.OrderedDict", "torch._tensor._rebuild_from_type_v2", "torch.nn.parameter.Parameter",
     "torch.Size", "torch.device", "torch.storage.UntypedStorage", "torch.storage.TypedStorage",
     "_codecs.encode", "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar", "numpy.dtype",
     "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint", "builtins.set", "builtins.frozenset"]
    + [f"torch._utils.{f}" for f in _TENSOR_REBUILDERS]
    + [f"torch.{s}" for s in STORAGE_DTYPES]
    + [f"torch.{d}" for d in _TORCH_DTYPE_NAMES]
)

# torch 2.6+ `_get_allowed_globals()` (read from torch/_weights_only_unpickler.py), minus what only matters
# for exotic tensors; numpy and Lightning are *not* on it.
TORCH_WEIGHTS_ONLY_ALLOWED = frozenset(
    ["collections.OrderedDict", "collections.Counter", "torch.nn.parameter.Parameter",
     "torch.serialization._get_layout", "torch.Size", "torch.Tensor", "torch.device", "_codecs.encode",
     "builtins.bytearray", "builtins.set", "builtins.complex", "torch._tensor._rebuild_from_type_v2",
     "torch.storage.UntypedStorage", "torch.storage.TypedStorage", "torch.per_tensor_affine",
     "torch.per_tensor_symmetric", "torch.per_channel_affine", "torch.per_channel_symmetric",
     "torch.per_channel_affine_float_qparams"]
    + [f"torch._utils.{f}" for f in _TENSOR_REBUILDERS + (
        "_rebuild_qtensor", "_rebuild_sparse_tensor", "_rebuild_meta_tensor_no_storage", "_rebuild_nested_tensor",
        "_rebuild_wrapper_subclass", "_rebuild_device_tensor_from_numpy", "_rebuild_device_tensor_from_cpu_tensor")]
    + [f"torch.{s}" for s in STORAGE_DTYPES]
    + [f"torch.{d}" for d in _TORCH_DTYPE_NAMES]
    + [f"torch.{t}Tensor" for t in ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char",
                                    "Byte", "Bool")]
    + [f"torch.cuda.{t}Tensor" for t in ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char",
                                         "Byte", "Bool")]
)
TORCH_BLOCKED_MODULES = ("sys", "os", "posix", "nt")

# Opcodes torch's weights_only unpickler implements (anything else: "Unsupported operand").
TORCH_WEIGHTS_ONLY_OPCODES = frozenset(
    ["GLOBAL", "NEWOBJ", "REDUCE", "BUILD", "APPEND", "APPENDS", "SETITEM", "SETITEMS", "MARK", "TUPLE",
     "TUPLE1", "TUPLE2", "TUPLE3", "NONE", "NEWFALSE", "NEWTRUE", "EMPTY_TUPLE", "EMPTY_LIST", "EMPTY_DICT",
     "EMPTY_SET", "BININT", "BININT1", "BININT2", "BINFLOAT", "BINUNICODE", "SHORT_BINSTRING", "BINPERSID",
     "BINGET", "LONG_BINGET", "BINPUT", "LONG_BINPUT", "LONG1", "PROTO", "STOP"]
)

# Names that turn a suspicious file into an obviously hostile one, for the message (not the verdict).
KNOWN_DANGEROUS_MODULES = ("os", "posix", "nt", "subprocess", "sys", "runpy", "socket", "shutil", "pty",
                           "pickle", "_pickle", "marshal", "importlib", "ctypes", "webbrowser", "asyncio",
                           "code", "codeop", "pdb", "bdb", "pip", "timeit", "types", "operator", "_operator",
                           "functools", "urllib", "requests", "http", "copyreg", "multiprocessing", "setuptools",
                           "distutils", "pkg_resources", "_posixsubprocess", "signal", "tempfile", "glob")
KNOWN_DANGEROUS_BUILTINS = ("eval", "exec", "compile", "open", "getattr", "setattr", "__import__", "apply",
                            "breakpoint", "input", "globals", "locals", "vars", "delattr")
# Gadgets inside otherwise trusted packages: they run a command, fetch code or unpickle again
# (modelscan issue 338, picklescan advisories; `torch.load` inside a pickle is a second, unchecked load).
KNOWN_DANGEROUS_PREFIXES = ("torch.utils.collect_env", "torch.hub", "torch.load", "torch.serialization",
                            "torch.storage._load_from_bytes", "torch.jit", "torch.package", "torch.utils.cpp_extension",
                            "torch._inductor", "torch._dynamo", "torch.distributed", "numpy.load", "numpy.testing",
                            "numpy.f2py", "numpy.distutils", "pandas.read_", "pandas.io", "joblib", "dill",
                            "cloudpickle")
# Path segments that only an attack spells: attribute walks to os.system, eval or the builtins.
KNOWN_DANGEROUS_SEGMENTS = frozenset(["os", "posix", "nt", "subprocess", "system", "popen", "eval", "exec",
                                      "__import__", "__builtins__", "__globals__", "__subclasses__", "__getattribute__",
                                      "import_module", "getattr"])


# numpy.dtype(code) builds an instance of numpy.dtypes.<X>DType (numpy >= 1.25); torch's weights_only
# loader checks that class when the pickle BUILDs the dtype's state, so it must be allowlisted too.
NUMPY_DTYPE_CLASSES = {
    "f8": "Float64DType", "f4": "Float32DType", "f2": "Float16DType", "i8": "Int64DType", "i4": "Int32DType",
    "i2": "Int16DType", "i1": "Int8DType", "u8": "UInt64DType", "u4": "UInt32DType", "u2": "UInt16DType",
    "u1": "UInt8DType", "b1": "BoolDType", "c8": "Complex64DType", "c16": "Complex128DType", "O8": "ObjectDType",
    "O4": "ObjectDType", "M8": "DateTime64DType", "m8": "TimeDelta64DType",
}


def built_classes(build_targets) -> List[str]:
    """Classes torch's weights_only loader must also allow for the objects a pickle BUILDs."""
    out: List[str] = []
    for func, arg in build_targets:
        if func == "numpy.dtype" and arg:
            name = NUMPY_DTYPE_CLASSES.get(arg.lstrip("<>=|"))
            if name and f"numpy.dtypes.{name}" not in out:
                out.append(f"numpy.dtypes.{name}")
    return out


def is_ldm_allowed(name: str) -> bool:
    if name in LDM_ALLOWED:
        return True
    # numpy >= 1.25 spells dtypes as numpy.dtypes.Float32DType etc.
    if name.startswith("numpy.dtypes.") and name.endswith("DType"):
        return True
    return False


def _plain(name: str) -> str:
    """The name as a loader would try it: escapes undone, NFKC-folded, NUL and white space dropped."""
    try:
        text = name.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError:
        text = name
    text = unicodedata.normalize("NFKC", text)
    return "".join(c for c in text if c != "\x00" and not c.isspace())


def is_obviously_dangerous(name: str) -> bool:
    if name.startswith("<"):  # unresolved STACK_GLOBAL, BUILD tricks, extension codes: only attacks do this
        return True
    plain = _plain(name)
    if ":" in plain:  # protocol 4 attribute path (module:a.b.c): a walk from an object to any other
        return True
    segments = plain.split(".")
    module, attr = ".".join(segments[:-1]), segments[-1]
    if module in ("builtins", "__builtin__") and attr in KNOWN_DANGEROUS_BUILTINS:
        return True
    if segments[0] in KNOWN_DANGEROUS_MODULES or any(s in KNOWN_DANGEROUS_SEGMENTS for s in segments[1:]):
        return True
    dotted = ".".join(segments)
    return any(dotted == p or dotted.startswith(p if p.endswith("_") else p + ".") for p in KNOWN_DANGEROUS_PREFIXES)


def assess_globals(global_names: Iterable[str], called: Iterable[str]) -> Dict[str, Any]:
    names = list(dict.fromkeys(global_names))
    unsafe = [n for n in names if not is_ldm_allowed(n)]
    called_set = set(called)
    return {
        "globals": names,
        "unsafe_globals": unsafe,
        "dangerous_globals": [n for n in unsafe if is_obviously_dangerous(n)],
        "unsafe_called": [n for n in unsafe if n in called_set],
    }


def weights_only_verdict(global_names: Iterable[str], opcode_names: Iterable[str], protocol,
                         persistent_ids_ok: bool = True, torchscript: bool = False,
                         legacy_tar: bool = False, built: Iterable[str] = ()) -> Dict[str, Any]:
    """Would `torch.load(f, weights_only=True)` (torch >= 2.6 default) refuse this file, and why.

    `built`: classes of objects the pickle BUILDs (see `built_classes`), which torch checks as well.
    """
    reasons: List[str] = []
    refused_globals: List[str] = []
    constructs = False
    for name in dict.fromkeys(list(global_names) + list(built)):
        module = name.rpartition(".")[0]
        if name.startswith("<"):
            constructs = True
            reasons.append(f"{name}: not something the weights_only unpickler builds")
        elif module.split(".", 1)[0] in TORCH_BLOCKED_MODULES:
            refused_globals.append(name)
            reasons.append(f"GLOBAL {name}: module {module} is blocked even with add_safe_globals")
        elif name not in TORCH_WEIGHTS_ONLY_ALLOWED:
            refused_globals.append(name)
            reasons.append(f"Unsupported global: GLOBAL {name} was not an allowed global by default")
    bad_ops = sorted(set(opcode_names) - TORCH_WEIGHTS_ONLY_OPCODES)
    if bad_ops:
        reasons.append("pickle opcodes the weights_only unpickler does not implement: " + ", ".join(bad_ops)
                       + (f" (pickle protocol {protocol}; torch.save writes protocol 2)" if protocol is not None else ""))
    if not persistent_ids_ok:
        reasons.append("a persistent id that is not a ('storage', ...) record")
    if torchscript:
        reasons.append("TorchScript archives cannot be loaded with weights_only=True")
    if legacy_tar:
        reasons.append("the legacy tar format is refused by torch >= 2.6")
    return {
        "refused": bool(reasons),
        "reasons": reasons,
        "globals": refused_globals,
        "opcodes": bad_ops,
        "add_safe_globals_enough": bool(refused_globals) and not bad_ops and not torchscript and not legacy_tar
        and persistent_ids_ok and not constructs
        and not any(n.rpartition(".")[0].split(".", 1)[0] in TORCH_BLOCKED_MODULES for n in refused_globals),
    }
