"""Torch checkpoints read without `torch.load`: the zip format, the legacy format and plain pickles.

- zip (torch >= 1.6): `<root>/data.pkl` + one `<root>/data/<key>` member per storage, stored
  uncompressed. The root folder is usually `archive` but older writers used the file stem, so it is
  read from the member names, never assumed. Storage bytes are located through each member's local
  header (that is where torch's 64-byte alignment padding lives), not the central directory alone.
- legacy (torch < 1.6, `_use_new_zipfile_serialization=False`): five consecutive pickles (magic
  number, protocol version, sys_info, the object, the storage keys), then each storage as an 8-byte
  element count followed by its raw bytes.
- plain pickle: any other pickle stream; reported with its globals (tensors pickled this way go through
  `torch.storage._load_from_bytes`, a nested `torch.load`).

`data.pkl` is replayed by `pickle_vm` (nothing is imported or called); this module turns the replay
into tensor records: `_rebuild_tensor_v2(storage, offset, size, stride, ...)` with a persistent id
`('storage', torch.HalfStorage, key, location, numel)` gives the name, dtype, shape and where the bytes are.
"""

from __future__ import annotations

import io
import mmap
import struct
import zipfile
import zlib
from typing import Any, Dict, List, Optional, Tuple

from .pickle_vm import Global, Node, PersId, PickleResult, read_pickle, read_pickles
from .records import DTYPES, STORAGE_DTYPES, ReadResult, TensorRecord, itemsize, numel_of, problem
from .safety import assess_globals, built_classes, weights_only_verdict

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
MAX_PICKLE_BYTES = 256 * 1024 * 1024  # SD 1.x data.pkl is ~200 KB; anything this big is not a weights file
MAX_ZIP_MEMBERS = 1_000_000
WALK_BUDGET = 2_000_000  # nodes visited when counting tensors outside the state dict
_REBUILD = {"torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor_v3"}
_PARAM = {"torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state"}
_KNOWN_ZIP_RECORDS = ("version", "byteorder", ".format_version", ".storage_alignment", ".data/serialization_id",
                      ".data/version")


# ---------------------------------------------------------------- interpreting the replayed objects

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


class _Walker:
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


def interpret(root: Any, result: ReadResult, storages: Dict[str, Dict[str, Any]], locate) -> None:
    """Fill `result` from a replayed checkpoint object.

    `storages` collects every storage seen (key -> dtype/numel); `locate(key)` returns the absolute
    file offset of a storage's first byte, or None when its bytes are missing.
    """
    sd = root
    path: List[str] = []
    if is_mapping(root):
        result.top_level_keys = [str(k) for k, _ in root.items][:200]
        while is_mapping(sd) and is_mapping(get_key(sd, "state_dict")):
            sd = get_key(sd, "state_dict")
            path.append("state_dict")
            if len(path) > 4:
                break
        training: Dict[str, Any] = {}
        for key, label in (("global_step", "global_step"), ("epoch", "epoch"),
                           ("pytorch-lightning_version", "lightning_version")):
            value = get_key(root, key)
            if value is not None:
                training[label] = plain_value(value)
        result.training.update(training)
    result.hints["state_dict_path"] = path
    result.hints["root_is_mapping"] = is_mapping(root)
    result.hints["root_kind"] = func_name(root) or (root.kind if isinstance(root, Node) else type(root).__name__)

    found: List[Tuple[str, Dict[str, Any]]] = []
    if is_mapping(sd):
        for key, value in sd.items:
            name = key if isinstance(key, str) else str(plain_value(key))
            info = tensor_info(value)
            if info is not None:
                found.append((name, info))
            elif is_mapping(value):
                nested: List[Tuple[str, Dict[str, Any]]] = []
                _Walker(budget=200_000).tensors(value, name, nested)
                if nested:
                    found.extend(nested)
                else:
                    _non_tensor(result, name, value)
            else:
                _non_tensor(result, name, value)
    else:
        walker = _Walker()
        walker.tensors(root, "", found)
        found = [(name.lstrip("."), info) for name, info in found]
        result.hints["tensors_found_by_walk"] = True

    for name, info in found:
        record = _record(name, info, storages, locate, result)
        if record is not None:
            result.tensors.append(record)

    # Tensors outside the state dict: optimizer states, callback scores... dead weight for inference.
    if is_mapping(root) and root is not sd:
        other: Dict[str, Dict[str, int]] = {}
        walker = _Walker()
        for key, value in root.items:
            if value is sd or (path and key == "state_dict"):
                continue
            out: List[Tuple[str, Dict[str, Any]]] = []
            walker.tensors(value, str(key), out)
            if out:
                nbytes = 0
                for _, info in out:
                    st = storage_of(info["pid"])
                    dtype = info["dtype"] or (st["dtype"] if st else None) or "uint8"
                    nbytes += (numel_of(info["size"]) * DTYPES.get(dtype, (8,))[0] + 7) // 8
                other[str(key)] = {"tensors": len(out), "bytes": nbytes}
        result.other_tensors = other
        if walker.truncated:
            result.hints["other_tensors_truncated"] = True


def _non_tensor(result: ReadResult, name: str, value: Any) -> None:
    if len(result.non_tensor_entries) < 200:
        result.non_tensor_entries.append({"key": name, "value": plain_value(value)})


def _record(name: str, info: Dict[str, Any], storages, locate, result: ReadResult) -> Optional[TensorRecord]:
    st = storage_of(info["pid"])
    if st is None:
        result.problems.append(problem("ckpt.corrupt", "bad-storage-reference",
                                       f"tensor {name} refers to a storage record that is not a torch storage",
                                       tensor=name))
        return None
    dtype = info["dtype"] or st["dtype"] or "uint8"
    if dtype not in DTYPES:
        dtype = "uint8"
    storages.setdefault(st["key"], {"dtype": st["dtype"] or "uint8", "numel": st["numel"],
                                    "class": st["storage_class"]})
    shape = info["size"]
    stride = info["stride"]
    contiguous = stride == contiguous_stride(shape) or numel_of(shape) <= 1
    storage_item = itemsize(st["dtype"] or "uint8")
    # The offset counts elements of the tensor's dtype; the storage numel counts elements of the
    # storage class's dtype (bytes for UntypedStorage).
    byte_offset = info["offset"] * itemsize(dtype)
    span = span_elements(shape, stride) * itemsize(dtype)
    if info["offset"] < 0 or byte_offset + span > st["numel"] * storage_item:
        result.problems.append(problem(
            "ckpt.corrupt", "tensor-outside-storage",
            f"tensor {name} reaches past the end of its storage {st['key']}",
            tensor=name, storage=st["key"]))
    base = locate(st["key"])
    return TensorRecord(name=name, dtype=dtype, shape=tuple(int(d) for d in shape),
                        offset=None if base is None else base + byte_offset, storage=st["key"],
                        contiguous=contiguous, source=f"data/{st['key']}", within=byte_offset)


def pickle_facts(results: List[PickleResult], members: List[str], torchscript: bool = False) -> Dict[str, Any]:
    """Safety facts over every pickle in the file."""
    names: List[str] = []
    called: List[str] = []
    opcodes = set()
    anomalies: List[Dict[str, Any]] = []
    protocols = []
    built: List[str] = []
    for res, member in zip(results, members):
        built.extend(built_classes(res.build_targets))
        names.extend(res.global_names())
        called.extend(res.called)
        opcodes |= res.opcode_names
        protocols.append(res.protocol)
        for a in res.anomalies:
            anomalies.append(dict(a, member=member))
    verdict = assess_globals(names, called)
    first = [g for res in results for g in res.globals]
    where = {}
    for res, member in zip(results, members):
        for g in res.globals:
            where.setdefault(g["name"], {"member": member, "pos": g["pos"], "opcode": g["opcode"]})
    protocol = max((p for p in protocols if p is not None), default=None)
    persistent_ok = not any(res.odd_persistent_ids for res in results)
    return {
        "protocol": protocol,
        "opcodes": sum(r.opcodes for r in results),
        "members": members,
        "globals": verdict["globals"],
        "unsafe_globals": verdict["unsafe_globals"],
        "dangerous_globals": verdict["dangerous_globals"],
        "unsafe_called": verdict["unsafe_called"],
        "where": {n: where[n] for n in verdict["unsafe_globals"] if n in where},
        "anomalies": anomalies[:50],
        "global_count": len(first),
        "weights_only": weights_only_verdict(verdict["globals"], opcodes, protocol, persistent_ok, torchscript,
                                             built=built),
    }


# ---------------------------------------------------------------- containers

def _local_data_offset(fh, info: zipfile.ZipInfo, size: int, result: ReadResult) -> Optional[int]:
    try:
        fh.seek(info.header_offset)
        head = fh.read(30)
    except OSError:
        return None
    if len(head) < 30 or head[:4] != b"PK\x03\x04":
        result.problems.append(problem("ckpt.corrupt", "zip-local-header",
                                       f"zip member {info.filename} has no valid local header", member=info.filename))
        return None
    name_len, extra_len = struct.unpack("<HH", head[26:30])
    local_name = fh.read(name_len)
    if local_name != info.orig_filename.encode("utf-8", "replace") and local_name != info.orig_filename.encode(
            "cp437", "replace"):
        result.container.setdefault("anomalies", []).append(
            {"kind": "local-name-mismatch", "member": info.filename,
             "local_name": local_name[:200].decode("utf-8", "replace")})
    offset = info.header_offset + 30 + name_len + extra_len
    if offset + info.compress_size > size:
        result.problems.append(problem("ckpt.corrupt", "zip-member-truncated",
                                       f"zip member {info.filename} ends past the end of the file",
                                       member=info.filename, needed=offset + info.compress_size, size=size))
        return None
    return offset


def _read_member(fh, zf: zipfile.ZipFile, info: zipfile.ZipInfo, size: int, result: ReadResult) -> Optional[bytes]:
    if info.file_size > MAX_PICKLE_BYTES:
        result.problems.append(problem("ckpt.corrupt", "pickle-too-large",
                                       f"{info.filename} is {info.file_size} bytes; a weights pickle is a few MB at most",
                                       member=info.filename, bytes=info.file_size))
        return None
    if info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 0x1:
        offset = _local_data_offset(fh, info, size, result)
        if offset is None:
            return None
        fh.seek(offset)
        data = fh.read(info.file_size)
        if zlib.crc32(data) & 0xFFFFFFFF != info.CRC:
            result.container.setdefault("anomalies", []).append({"kind": "crc-mismatch", "member": info.filename})
        return data
    try:
        with zf.open(info) as member:
            return member.read(MAX_PICKLE_BYTES + 1)
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError, EOFError, zlib.error, ValueError) as exc:
        result.problems.append(problem("ckpt.corrupt", "zip-member-unreadable",
                                       f"cannot read {info.filename}: {exc}", member=info.filename))
        return None


def read_torch_zip(fh, size: int) -> ReadResult:
    result = ReadResult()
    try:
        zf = zipfile.ZipFile(fh)
        infos = zf.infolist()
    except zipfile.BadZipFile as exc:
        kind = "truncated-zip" if "not a zip file" in str(exc).lower() else "zip-error"
        result.problems.append(problem(
            "ckpt.corrupt", kind,
            "the zip central directory at the end of the file is missing: the file is cut short"
            if kind == "truncated-zip" else f"the zip structure is damaged: {exc}", detail=str(exc), size=size))
        return result
    except (OSError, EOFError, ValueError, struct.error, OverflowError) as exc:
        result.problems.append(problem("ckpt.corrupt", "zip-error", f"the zip structure is damaged: {exc}",
                                       detail=str(exc), size=size))
        return result
    if len(infos) > MAX_ZIP_MEMBERS:
        result.problems.append(problem("ckpt.corrupt", "zip-too-many-members",
                                       f"{len(infos)} zip members; a torch checkpoint has one per tensor storage",
                                       members=len(infos)))
        return result
    names = [i.filename for i in infos]
    counts: Dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    duplicates = sorted(n for n, c in counts.items() if c > 1)
    pickles = [i for i in infos if i.filename == "data.pkl" or i.filename.endswith("/data.pkl")]
    torchscript = any(n.endswith("/constants.pkl") or "/code/" in n for n in names)
    roots = sorted({n.split("/", 1)[0] for n in names if "/" in n})
    container: Dict[str, Any] = {"kind": "zip", "members": len(infos), "roots": roots[:10], "torchscript": torchscript}
    result.container = container
    if not pickles:
        result.problems.append(problem(
            "ckpt.format", "zip-not-torch",
            "a zip archive without data.pkl: not a torch checkpoint", members=names[:20]))
        return result
    main = pickles[0]
    root = main.filename[: -len("data.pkl")].rstrip("/")
    container["root"] = root
    prefix = root + "/" if root else ""
    extra, compressed, encrypted = [], [], []
    storage_members: Dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        rel = info.filename[len(prefix):] if info.filename.startswith(prefix) else None
        if info.compress_type != zipfile.ZIP_STORED:
            compressed.append(info.filename)
        if info.flag_bits & 0x1:
            encrypted.append(info.filename)
        if rel is None:
            extra.append(info.filename)
        elif rel.startswith("data/") and rel[5:] and "/" not in rel[5:]:
            storage_members[rel[5:]] = info
        elif rel not in ("data.pkl",) + _KNOWN_ZIP_RECORDS and not info.filename.endswith("/"):
            extra.append(info.filename)
    anomalies = container.setdefault("anomalies", [])
    if duplicates:
        anomalies.append({"kind": "duplicate-members", "members": duplicates[:20]})
    if len(pickles) > 1:
        anomalies.append({"kind": "multiple-data-pkl", "members": [p.filename for p in pickles][:20]})
    if compressed:
        anomalies.append({"kind": "compressed-members", "members": compressed[:20], "count": len(compressed)})
    if encrypted:
        anomalies.append({"kind": "encrypted-members", "members": encrypted[:20]})
    if extra:
        anomalies.append({"kind": "extra-members", "members": extra[:20], "count": len(extra)})
    container["storages"] = len(storage_members)
    order = next((i for i in infos if i.filename == prefix + "byteorder"), None)
    if order is not None and order.file_size <= 16:
        data = _read_member(fh, zf, order, size, result)
        if data:
            container["byteorder"] = data.decode("ascii", "replace").strip()  # torch >= 2.1 writes it

    # Every pickle member is replayed for its globals; the first data.pkl is the checkpoint.
    scan = list(pickles) + [i for i in infos if i.filename.endswith(".pkl") and i not in pickles]
    results: List[PickleResult] = []
    members: List[str] = []
    main_result: Optional[PickleResult] = None
    for info in scan[:32]:
        data = _read_member(fh, zf, info, size, result)
        if data is None:
            continue
        res = read_pickle(io.BytesIO(data))
        results.append(res)
        members.append(info.filename)
        if info is main:
            main_result = res
    result.pickle = pickle_facts(results, members, torchscript)
    if main_result is None:
        return result
    if not main_result.complete:
        result.problems.append(problem("ckpt.corrupt", "pickle-error",
                                       f"{main.filename} is not a readable pickle: {main_result.error}",
                                       member=main.filename, pos=main_result.error_pos))

    offsets: Dict[str, Optional[int]] = {}

    def resolve(handle, records: List[TensorRecord]) -> None:
        # Storage bytes start after each member's local header, whose extra field (torch's alignment
        # padding) the central directory does not give: one small read per storage, on demand.
        for t in records:
            if t.offset is not None or t.storage is None:
                continue
            if t.storage not in offsets:
                info = storage_members.get(t.storage)
                offsets[t.storage] = None if info is None or info.compress_type != zipfile.ZIP_STORED \
                    else _local_data_offset(handle, info, size, result)
            base = offsets[t.storage]
            t.offset = None if base is None else base + t.within

    result.resolve = resolve
    storages: Dict[str, Dict[str, Any]] = {}
    if main_result.complete or main_result.root is not None:
        interpret(main_result.root, result, storages, lambda key: None)
    missing, short, cut = [], [], []
    for key, st in storages.items():
        info = storage_members.get(key)
        if info is None:
            missing.append(key)
        elif info.file_size < st["numel"] * itemsize(st["dtype"]):
            short.append(key)
        elif info.header_offset + 30 + len(info.orig_filename.encode("utf-8", "replace")) + info.compress_size > size:
            cut.append(key)
    if cut:
        result.problems.append(problem("ckpt.corrupt", "zip-member-truncated",
                                       f"{len(cut)} storage records end past the end of the file",
                                       storages=sorted(cut)[:20], count=len(cut), size=size))
    if missing:
        result.problems.append(problem("ckpt.corrupt", "missing-storage",
                                       f"{len(missing)} tensor storages referenced by data.pkl are not in the zip",
                                       storages=sorted(missing)[:20], count=len(missing)))
    if short:
        result.problems.append(problem("ckpt.corrupt", "storage-too-small",
                                       f"{len(short)} storage records are smaller than data.pkl says",
                                       storages=sorted(short)[:20], count=len(short)))
    container["storage_bytes"] = sum(storage_members[k].file_size for k in storages if k in storage_members)
    return result


def _pickle_buffer(fh, size: int):
    """The file as a read-only mmap (nothing is read until touched), else its first MAX_PICKLE_BYTES."""
    try:
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        fh.seek(0)
        return fh.read(MAX_PICKLE_BYTES)


def read_torch_pickle_file(fh, size: int) -> ReadResult:
    """A non-zip pickle file: the legacy torch format when it starts with torch's magic number."""
    buf = _pickle_buffer(fh, size)
    try:
        return _read_pickle_file(buf, fh, size)
    finally:
        if isinstance(buf, mmap.mmap):
            buf.close()


def _read_pickle_file(buf, fh, size: int) -> ReadResult:
    result = ReadResult()
    first = read_pickles(buf, 0, limit=1)
    if first and first[0].complete and first[0].root == LEGACY_MAGIC:
        return _read_legacy(buf, fh, size, result)
    result.container = {"kind": "pickle"}
    results = first
    if results and results[0].complete:
        # A loader reads one pickle; anything after it is trailing data (scanned for globals, as picklescan does).
        trailing = read_pickles(buf, results[0].end, limit=4)
        if trailing:
            result.container["trailing_pickles"] = len(trailing)
        results = results + trailing
    members = ["pickle"] + [f"trailing pickle {i + 1}" for i in range(len(results) - 1)]
    result.pickle = pickle_facts(results, members)
    if not results or not results[0].complete:
        err = results[0].error if results else "empty"
        result.problems.append(problem("ckpt.corrupt", "pickle-error", f"the pickle stream is unreadable: {err}",
                                       pos=results[0].error_pos if results else 0))
    storages: Dict[str, Dict[str, Any]] = {}
    if results and results[0].root is not None:
        interpret(results[0].root, result, storages, lambda key: None)
    if storages:
        result.hints["pickle_storages_unlocated"] = True
    return result


def _read_legacy(buf, fh, size: int, result: ReadResult) -> ReadResult:
    result.container = {"kind": "legacy"}
    parts = read_pickles(buf, 0, limit=5)
    labels = ["magic number", "protocol version", "sys_info", "data", "storage keys"]
    result.pickle = pickle_facts(parts, labels[: len(parts)])
    if len(parts) < 5 or not all(p.complete for p in parts):
        bad = parts[-1] if parts else None
        result.problems.append(problem(
            "ckpt.corrupt", "legacy-truncated" if bad is None or "truncated" in (bad.error or "") else "pickle-error",
            f"the legacy torch file stops inside its {labels[min(len(parts), 5) - 1 if parts else 0]} pickle"
            + (f": {bad.error}" if bad is not None and bad.error else ""), size=size))
        if len(parts) >= 4 and parts[3].root is not None:
            interpret(parts[3].root, result, {}, lambda key: None)
        return result
    if parts[1].root != LEGACY_PROTOCOL:
        result.container["protocol_version"] = plain_value(parts[1].root)
    keys_node = parts[4].root
    keys = [k for k in (keys_node.elems if isinstance(keys_node, Node) else []) if isinstance(k, str)]
    storages: Dict[str, Dict[str, Any]] = {}
    # First pass: learn every storage's dtype from the object pickle.
    interpret(parts[3].root, ReadResult(), storages, lambda key: None)
    offsets: Dict[str, int] = {}
    pos = parts[4].end
    truncated_at = None
    for key in keys:
        fh.seek(pos)
        head = fh.read(8)
        if len(head) < 8:
            truncated_at = key
            break
        count = struct.unpack("<q", head)[0]
        st = storages.get(key)
        nbytes = count * itemsize(st["dtype"] if st else "uint8")
        if count < 0 or pos + 8 + nbytes > size:
            truncated_at = key
            break
        offsets[key] = pos + 8
        pos += 8 + nbytes
    result.container["storages"] = len(keys)
    if truncated_at is not None:
        result.problems.append(problem(
            "ckpt.corrupt", "legacy-truncated",
            f"the file ends inside storage {truncated_at} ({len(offsets)} of {len(keys)} storages complete)",
            size=size, complete=len(offsets), storages=len(keys)))
    elif pos < size:
        result.container["trailing_bytes"] = size - pos
    interpret(parts[3].root, result, {}, lambda key: offsets.get(key))
    missing = sorted({t.storage for t in result.tensors if t.storage not in keys})
    if missing:
        result.problems.append(problem("ckpt.corrupt", "missing-storage",
                                       f"{len(missing)} storages are not in the file's storage list",
                                       storages=missing[:20], count=len(missing)))
    return result
