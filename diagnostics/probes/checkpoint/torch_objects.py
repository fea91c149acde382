"""What a replayed torch pickle means: where the state dict is, which values are tensors, and what else the
checkpoint carries (Lightning metadata, non-tensor entries, tensors outside the state dict).

`pickle_vm` replays a pickle into `Node`/`Global`/`PersId` values (nothing is imported or called); this
module reads tensors from that graph: `_rebuild_tensor_v2(storage, offset, size, stride, ...)` with a
persistent id `('storage', torch.HalfStorage, key, location, numel)` gives the name, dtype, shape and
where the bytes are. The containers (`torch_zip.py`, `torch_legacy.py`) say where each storage starts.
"""

from __future__ import annotations

import struct
from typing import Any, Callable, Dict, List, Optional, Tuple

from .pickle_vm import Global, Node, PersId
from .records import DTYPES, STORAGE_DTYPES, ReadResult, TensorRecord, itemsize, numel_of, problem

WALK_BUDGET = 2_000_000  # nodes visited when counting tensors outside the state dict
NESTED_WALK_BUDGET = 200_000  # nodes visited inside one nested mapping of the state dict
_REBUILD = {"torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor_v3"}
_PARAM = {"torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state"}
_TRAINING_KEYS = (("global_step", "global_step"), ("epoch", "epoch"), ("pytorch-lightning_version", "lightning_version"))

Locator = Callable[[str], Optional[int]]  # storage key -> absolute offset of its first byte, None when missing
Found = List[Tuple[str, Dict[str, Any]]]  # (tensor name, tensor_info) pairs


def func_name(node: Any) -> Optional[str]:
    if isinstance(node, Node) and node.kind == "call" and isinstance(node.func, Global):
        return node.func.full
    return None


def is_mapping(x: Any) -> bool:
    if not isinstance(x, Node):
        return False
    return x.kind == "dict" or (x.kind == "call" and func_name(x) in ("collections.OrderedDict", "builtins.dict"))


def get_key(mapping: Node, key: str) -> Any:
    found = None
    for k, v in mapping.items:
        if k == key:
            found = v  # the last assignment wins, as in a real dict
    return found


def tensor_info(x: Any) -> Optional[Dict[str, Any]]:
    """{pid, offset, size, stride, dtype} for a replayed tensor rebuild, else None."""
    for _ in range(4):  # unwrap Parameter / _rebuild_from_type_v2 layers
        name = func_name(x)
        if name is None:
            return None
        args = x.args if isinstance(x.args, tuple) else ()
        if name in _PARAM and args:
            x = args[0]
            continue
        if name == "torch._tensor._rebuild_from_type_v2" and len(args) >= 3 and isinstance(args[2], tuple):
            x = Node("call", args[0], args[2])
            continue
        if name in _REBUILD and len(args) >= 4 and isinstance(args[0], PersId):
            size, stride = args[2], args[3]
            if not _int_tuple(size) or not _int_tuple(stride) or not isinstance(args[1], int):
                return None
            dtype = None
            if name.endswith("_v3") and len(args) >= 7 and isinstance(args[6], Global):
                dtype = args[6].name
            return {"pid": args[0].pid, "offset": args[1], "size": tuple(size), "stride": tuple(stride),
                    "dtype": dtype}
        return None
    return None


def _int_tuple(x: Any) -> bool:
    return type(x) is tuple and all(type(i) is int for i in x)


def storage_of(pid: Any) -> Optional[Dict[str, Any]]:
    """{key, dtype, numel, location} from a torch persistent id, else None."""
    if not isinstance(pid, tuple) or len(pid) < 5:
        return None
    tag = pid[0].decode("ascii", "replace") if isinstance(pid[0], bytes) else pid[0]
    if tag != "storage" or not isinstance(pid[1], Global):
        return None
    key = pid[2].decode("ascii", "replace") if isinstance(pid[2], bytes) else pid[2]
    if not isinstance(key, (str, int)) or not isinstance(pid[4], int):
        return None
    storage_cls = pid[1].name
    dtype = STORAGE_DTYPES.get(storage_cls)
    if storage_cls == "UntypedStorage":
        dtype = "uint8"
    return {"key": str(key), "dtype": dtype, "storage_class": pid[1].full, "numel": pid[4],
            "location": pid[3] if isinstance(pid[3], str) else None}


def contiguous_stride(shape: Tuple[int, ...]) -> Tuple[int, ...]:
    stride, acc = [], 1
    for d in reversed(shape):
        stride.append(acc)
        acc *= max(int(d), 1)
    return tuple(reversed(stride))


def span_elements(shape: Tuple[int, ...], stride: Tuple[int, ...]) -> int:
    if any(d == 0 for d in shape):
        return 0
    return 1 + sum((d - 1) * s for d, s in zip(shape, stride))


def plain_value(x: Any, depth: int = 0) -> Any:
    """A JSON-able rendering of a small replayed value (Lightning metadata, non-tensor entries)."""
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, bytes):
        return x[:64].hex()
    name = func_name(x)
    if name in ("numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar"):
        decoded = numpy_scalar(x)
        if decoded is not None:
            return decoded
    if depth < 2 and isinstance(x, tuple):
        return [plain_value(i, depth + 1) for i in x[:8]]
    if tensor_info(x) is not None:
        return "<tensor>"
    if name:
        return f"<{name}(...)>"
    if isinstance(x, Node):
        return f"<{x.kind}>"
    if isinstance(x, Global):
        return f"<{x.full}>"
    return f"<{type(x).__name__}>"


_NUMPY_FORMATS = {"f8": "d", "f4": "f", "i8": "q", "i4": "i", "i2": "h", "i1": "b", "u8": "Q", "u4": "I",
                  "u2": "H", "u1": "B", "b1": "?"}


def numpy_scalar(x: Node) -> Any:
    """Decode `numpy.core.multiarray.scalar(dtype('i8'), b'...')` without numpy."""
    args = x.args if isinstance(x.args, tuple) else ()
    if len(args) < 2 or func_name(args[0]) != "numpy.dtype":
        return None
    dargs = args[0].args if isinstance(args[0].args, tuple) else ()
    code = dargs[0] if dargs and isinstance(dargs[0], str) else None
    raw = args[1]
    if func_name(raw) == "_codecs.encode" and isinstance(raw.args, tuple) and raw.args and isinstance(raw.args[0], str):
        raw = raw.args[0].encode("latin-1", "replace")
    if code not in _NUMPY_FORMATS or not isinstance(raw, bytes):
        return None
    fmt = "<" + _NUMPY_FORMATS[code]
    if len(raw) != struct.calcsize(fmt):
        return None
    return struct.unpack(fmt, raw)[0]


class TensorWalker:
    """Counts tensors reachable from a value, visiting each shared node once (bounded)."""

    def __init__(self, budget: int = WALK_BUDGET) -> None:
        self.seen = set()
        self.budget = budget
        self.truncated = False

    def tensors(self, x: Any, path: str, out: List[Tuple[str, Dict[str, Any]]], depth: int = 0) -> None:
        stack = [(x, path, depth)]
        while stack:
            value, where, d = stack.pop()
            if self.budget <= 0:
                self.truncated = True
                return
            self.budget -= 1
            if isinstance(value, tuple):
                for i, item in enumerate(value):
                    stack.append((item, f"{where}.{i}", d + 1))
                continue
            if not isinstance(value, Node) or id(value) in self.seen or d > 64:
                continue
            self.seen.add(id(value))
            info = tensor_info(value)
            if info is not None:
                out.append((where, info))
                continue
            for k, v in value.items:
                stack.append((v, f"{where}.{k}" if isinstance(k, (str, int)) else f"{where}.?", d + 1))
            for i, v in enumerate(value.elems):
                stack.append((v, f"{where}.{i}", d + 1))
            if value.kind == "call":
                stack.append((value.args, where, d + 1))
                if value.state is not None:
                    stack.append((value.state, where, d + 1))


def info_bytes(info: Dict[str, Any]) -> int:
    """Bytes a tensor's shape claims (-1 for a negative size)."""
    st = storage_of(info["pid"])
    dtype = info["dtype"] or (st["dtype"] if st else None) or "uint8"
    if any(d < 0 for d in info["size"]):
        return -1
    return (numel_of(info["size"]) * DTYPES.get(dtype, (8,))[0] + 7) // 8


def interpret(root: Any, result: ReadResult, storages: Dict[str, Dict[str, Any]], locate: Locator,
              limit: Optional[int] = None) -> None:
    """Fill `result` from a replayed checkpoint object.

    `storages` collects every storage seen (key -> dtype/numel); `locate(key)` returns the absolute
    file offset of a storage's first byte, or None when its bytes are missing. A tensor whose shape
    claims more than `limit` bytes (the file's size) or a negative size cannot be in the file: it is
    reported, not recorded, so no later sum meets an absurd number (issue 8).
    """
    state_dict, path = _find_state_dict(root, result)
    found = _state_dict_tensors(root, state_dict, result)
    _record_tensors(found, storages, locate, limit, result)
    # Tensors outside the state dict: optimizer states, callback scores... dead weight for inference.
    if is_mapping(root) and root is not state_dict:
        _count_other_tensors(root, state_dict, path, limit, result)


def _find_state_dict(root: Any, result: ReadResult) -> Tuple[Any, List[str]]:
    """(the state dict, the keys leading to it); notes the top-level keys and Lightning's training metadata."""
    state_dict = root
    path: List[str] = []
    if is_mapping(root):
        result.top_level_keys = [str(k) for k, _ in root.items][:200]
        while is_mapping(state_dict) and is_mapping(get_key(state_dict, "state_dict")):
            state_dict = get_key(state_dict, "state_dict")
            path.append("state_dict")
            if len(path) > 4:
                break
        training: Dict[str, Any] = {}
        for key, label in _TRAINING_KEYS:
            value = get_key(root, key)
            if value is not None:
                training[label] = plain_value(value)
        result.training.update(training)
    result.hints["state_dict_path"] = path
    result.hints["root_is_mapping"] = is_mapping(root)
    result.hints["root_kind"] = func_name(root) or (root.kind if isinstance(root, Node) else type(root).__name__)
    return state_dict, path


def _state_dict_tensors(root: Any, state_dict: Any, result: ReadResult) -> Found:
    """The state dict's tensors by name (nested mappings flattened); without a mapping, every tensor reachable."""
    found: Found = []
    if not is_mapping(state_dict):
        TensorWalker().tensors(root, "", found)
        result.hints["tensors_found_by_walk"] = True
        return [(name.lstrip("."), info) for name, info in found]
    for key, value in state_dict.items:
        name = key if isinstance(key, str) else str(plain_value(key))
        info = tensor_info(value)
        if info is not None:
            found.append((name, info))
            continue
        nested: Found = []
        if is_mapping(value):
            TensorWalker(budget=NESTED_WALK_BUDGET).tensors(value, name, nested)
        if nested:
            found.extend(nested)
        else:
            _non_tensor(result, name, value)
    return found


def _record_tensors(found: Found, storages: Dict[str, Dict[str, Any]], locate: Locator, limit: Optional[int],
                    result: ReadResult) -> None:
    impossible: List[str] = []
    for name, info in found:
        nbytes = info_bytes(info)
        if nbytes < 0 or limit is not None and nbytes > limit:
            impossible.append(name)
            continue
        record = _record(name, info, storages, locate, result)
        if record is not None:
            result.tensors.append(record)
    if impossible:
        result.problems.append(problem("impossible-shape",
            f"{len(impossible)} tensors have shapes that need more bytes than the whole file (or negative sizes)",
            tensors=impossible[:20], count=len(impossible)))


def _count_other_tensors(root: Node, state_dict: Any, path: List[str], limit: Optional[int],
                         result: ReadResult) -> None:
    other: Dict[str, Dict[str, int]] = {}
    walker = TensorWalker()
    for key, value in root.items:
        if value is state_dict or (path and key == "state_dict"):
            continue
        out: Found = []
        walker.tensors(value, str(key), out)
        out = [(n, i) for n, i in out if 0 <= info_bytes(i) <= (limit if limit is not None else info_bytes(i))]
        if out:
            other[str(key)] = {"tensors": len(out), "bytes": sum(info_bytes(i) for _, i in out)}
    result.other_tensors = other
    if walker.truncated:
        result.hints["other_tensors_truncated"] = True


def _non_tensor(result: ReadResult, name: str, value: Any) -> None:
    if len(result.non_tensor_entries) < 200:
        result.non_tensor_entries.append({"key": name, "value": plain_value(value)})


def storage_entry(st: Dict[str, Any]) -> Dict[str, Any]:
    """What `storages` keeps of a storage: its dtype, element count and class."""
    return {"dtype": st["dtype"] or "uint8", "numel": st["numel"], "class": st["storage_class"]}


def _record(name: str, info: Dict[str, Any], storages: Dict[str, Dict[str, Any]], locate: Locator,
            result: ReadResult) -> Optional[TensorRecord]:
    st = storage_of(info["pid"])
    if st is None:
        result.problems.append(problem("bad-storage-reference",
                                       f"tensor {name} refers to a storage record that is not a torch storage",
                                       tensor=name))
        return None
    dtype = info["dtype"] or st["dtype"] or "uint8"
    if dtype not in DTYPES:
        dtype = "uint8"
    storages.setdefault(st["key"], storage_entry(st))
    shape = info["size"]
    stride = info["stride"]
    contiguous = stride == contiguous_stride(shape) or numel_of(shape) <= 1
    storage_item = itemsize(st["dtype"] or "uint8")
    # The offset counts elements of the tensor's dtype; the storage numel counts elements of the
    # storage class's dtype (bytes for UntypedStorage).
    byte_offset = info["offset"] * itemsize(dtype)
    span = span_elements(shape, stride) * itemsize(dtype)
    if info["offset"] < 0 or byte_offset + span > st["numel"] * storage_item:
        result.problems.append(problem("tensor-outside-storage",
            f"tensor {name} reaches past the end of its storage {st['key']}",
            tensor=name, storage=st["key"]))
    base = locate(st["key"])
    return TensorRecord(name=name, dtype=dtype, shape=tuple(int(d) for d in shape),
                        offset=None if base is None else base + byte_offset, storage=st["key"],
                        contiguous=contiguous, source=f"data/{st['key']}", within=byte_offset)

