"""Torch checkpoints read without `torch.load`: the zip format, the legacy format and plain pickles.

- zip (torch >= 1.6): `<root>/data.pkl` + one `<root>/data/<key>` member per storage, stored
  uncompressed. The root folder is usually `archive` but older writers used the file stem, so it is
  read from the member names, never assumed. Every member is located through its own local header
  (that is where torch's 64-byte alignment padding lives) and read the way torch reads it
  (`zip_members.py`); every data.pkl and .pkl is replayed with the pickles after its STOP, and any
  other member, hidden byte range or tensor record that holds a pickle is replayed too (issue 8).
- legacy tar (torch < 0.4): a tar of pickles, which `torch.load(weights_only=False)` still reads.
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

from .pickle_vm import Global, Node, PersId, PickleResult, pickle_evidence, read_pickle, read_pickles
from .records import DTYPES, STORAGE_DTYPES, ReadResult, TensorRecord, itemsize, numel_of, problem
from .safety import assess_globals, built_classes, weights_only_verdict
from .zip_members import Member, compare, hidden_payloads, locate, read_member

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
MAX_PICKLE_BYTES = 256 * 1024 * 1024  # SD 1.x data.pkl is ~200 KB; anything this big is not a weights file
MAX_ZIP_MEMBERS = 1_000_000
WALK_BUDGET = 2_000_000  # nodes visited when counting tensors outside the state dict
MAX_PICKLE_MEMBERS = 64  # pickle members replayed per zip; more leaves the verdict unverified
MAX_STREAMS = 64  # pickles replayed back to back from one member or file
STORAGE_SCAN_BYTES = 1 << 20  # of a storage record that starts like a binary pickle
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


def _info_bytes(info: Dict[str, Any]) -> int:
    st = storage_of(info["pid"])
    dtype = info["dtype"] or (st["dtype"] if st else None) or "uint8"
    if any(d < 0 for d in info["size"]):
        return -1
    return (numel_of(info["size"]) * DTYPES.get(dtype, (8,))[0] + 7) // 8


def interpret(root: Any, result: ReadResult, storages: Dict[str, Dict[str, Any]], locate,
              limit: Optional[int] = None) -> None:
    """Fill `result` from a replayed checkpoint object.

    `storages` collects every storage seen (key -> dtype/numel); `locate(key)` returns the absolute
    file offset of a storage's first byte, or None when its bytes are missing. A tensor whose shape
    claims more than `limit` bytes (the file's size) or a negative size cannot be in the file: it is
    reported, not recorded, so no later sum meets an absurd number (issue 8).
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

    impossible: List[str] = []
    for name, info in found:
        nbytes = _info_bytes(info)
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

    # Tensors outside the state dict: optimizer states, callback scores... dead weight for inference.
    if is_mapping(root) and root is not sd:
        other: Dict[str, Dict[str, int]] = {}
        walker = _Walker()
        for key, value in root.items:
            if value is sd or (path and key == "state_dict"):
                continue
            out: List[Tuple[str, Dict[str, Any]]] = []
            walker.tensors(value, str(key), out)
            out = [(n, i) for n, i in out if 0 <= _info_bytes(i) <= (limit if limit is not None else _info_bytes(i))]
            if out:
                other[str(key)] = {"tensors": len(out), "bytes": sum(_info_bytes(i) for _, i in out)}
        result.other_tensors = other
        if walker.truncated:
            result.hints["other_tensors_truncated"] = True


def _non_tensor(result: ReadResult, name: str, value: Any) -> None:
    if len(result.non_tensor_entries) < 200:
        result.non_tensor_entries.append({"key": name, "value": plain_value(value)})


def _record(name: str, info: Dict[str, Any], storages, locate, result: ReadResult) -> Optional[TensorRecord]:
    st = storage_of(info["pid"])
    if st is None:
        result.problems.append(problem("bad-storage-reference",
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
        result.problems.append(problem("tensor-outside-storage",
            f"tensor {name} reaches past the end of its storage {st['key']}",
            tensor=name, storage=st["key"]))
    base = locate(st["key"])
    return TensorRecord(name=name, dtype=dtype, shape=tuple(int(d) for d in shape),
                        offset=None if base is None else base + byte_offset, storage=st["key"],
                        contiguous=contiguous, source=f"data/{st['key']}", within=byte_offset)


def pickle_facts(results: List[PickleResult], members: List[str], torchscript: bool = False,
                 torch_reads: Optional[List[PickleResult]] = None,
                 unverified: Optional[List[str]] = None) -> Dict[str, Any]:
    """Safety facts over every pickle in the file.

    The safety verdict covers every pickle found (`results`, labelled by `members`); the weights_only
    prediction only those `torch.load` unpickles (`torch_reads`, default all). `unverified` says why a
    part that should have been read could not be (the verdict then cannot be "safe").
    """
    names: List[str] = []
    called: List[str] = []
    opcodes = set()
    anomalies: List[Dict[str, Any]] = []
    protocols = []
    built: List[str] = []
    torch_reads = results if torch_reads is None else torch_reads
    read_ids = {id(r) for r in torch_reads}
    wo_names: List[str] = []
    for res, member in zip(results, members):
        names.extend(res.global_names())
        called.extend(res.called)
        for a in res.anomalies:
            anomalies.append(dict(a, member=member))
        if id(res) in read_ids:
            built.extend(built_classes(res.build_targets))
            wo_names.extend(res.global_names())
            opcodes |= res.opcode_names
            protocols.append(res.protocol)
    verdict = assess_globals(names, called)
    where = {}
    for res, member in zip(results, members):
        for g in res.globals:
            where.setdefault(g["name"], {"member": member, "pos": g["pos"], "opcode": g["opcode"]})
    protocol = max((p for p in protocols if p is not None), default=None)
    persistent_ok = not any(res.odd_persistent_ids for res in torch_reads)
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
        "global_count": sum(r.global_count for r in results),
        "unverified": list(unverified or [])[:20],
        "weights_only": weights_only_verdict(list(dict.fromkeys(wo_names)), opcodes, protocol, persistent_ok,
                                             torchscript, built=built),
    }


# ---------------------------------------------------------------- containers

def replay_streams(data, label: str, results: List[PickleResult], members: List[str],
                   anomalies: Optional[List[Dict[str, Any]]] = None) -> Tuple[Optional[PickleResult], bool]:
    """Replay the pickle at the start of `data` and every pickle after its STOP.

    A loader reads one pickle and ignores what follows; a scanner that does the same misses a second
    stream (issue 8). Returns (the first stream, whether streams were left unread past the limit).
    """
    streams = read_pickles(data, 0, limit=MAX_STREAMS) or [read_pickle(data, 0)]  # empty: an error, not nothing
    for i, res in enumerate(streams):
        results.append(res)
        members.append(label if i == 0 else f"{label} (pickle {i + 1}, after the first STOP)")
    first = streams[0] if streams else None
    if first is not None and first.complete and first.end < len(data) and anomalies is not None:
        anomalies.append({"kind": "data-after-stop", "member": label, "bytes": len(data) - first.end,
                          "pickles": len(streams) - 1})
    last = streams[-1] if streams else None
    left = last is not None and last.complete and last.end < len(data) and len(streams) >= MAX_STREAMS
    return first, left


def _is_pickle_member(m: Member) -> bool:
    return m.lower.endswith(".pkl")


def read_torch_zip(fh, size: int) -> ReadResult:
    result = ReadResult()
    try:
        zf = zipfile.ZipFile(fh)
        infos = zf.infolist()
    except zipfile.BadZipFile as exc:
        kind = "truncated-zip" if "not a zip file" in str(exc).lower() else "zip-error"
        result.problems.append(problem(kind,
            "the zip central directory at the end of the file is missing: the file is cut short"
            if kind == "truncated-zip" else f"the zip structure is damaged: {exc}", detail=str(exc), size=size))
        return result
    except Exception as exc:  # zipfile's parser raises many kinds on hostile input (NotImplementedError for a
        # "version needed" above 6.3, UnicodeDecodeError, struct.error, ...): all of them mean a damaged directory
        result.problems.append(problem("zip-error", f"the zip structure is damaged: {exc}",
                                       detail=f"{type(exc).__name__}: {exc}", size=size))
        return result
    if len(infos) > MAX_ZIP_MEMBERS:
        result.problems.append(problem("zip-too-many-members",
                                       f"{len(infos)} zip members; a torch checkpoint has one per tensor storage",
                                       members=len(infos)))
        return result
    members = [Member(i) for i in infos]
    names = [m.name for m in members]
    counts: Dict[str, int] = {}
    for m in members:  # torch looks names up case-insensitively: DATA.PKL and data.pkl are the same member
        counts[m.lower] = counts.get(m.lower, 0) + 1
    duplicates = sorted(m.name for m in members if counts[m.lower] > 1)
    pickles = [m for m in members if m.lower == "data.pkl" or m.lower.endswith("/data.pkl")]
    torchscript = any(m.lower.endswith("/constants.pkl") or "/code/" in m.lower for m in members)
    roots = sorted({n.split("/", 1)[0] for n in names if "/" in n})
    container: Dict[str, Any] = {"kind": "zip", "members": len(infos), "roots": roots[:10], "torchscript": torchscript}
    result.container = container
    anomalies = container.setdefault("anomalies", [])

    # Every member is located through its own local header, as torch does (issue 8).
    locate(fh, members, size)
    structural, hidden = compare(members, size, getattr(zf, "start_dir", None))
    anomalies.extend(structural)
    unlocated = [m for m in members if m.error]
    if unlocated:
        result.problems.append(problem("zip-local-header",
                                       f"zip member {unlocated[0].name} has no valid local header"
                                       + (f" (+{len(unlocated) - 1} more)" if len(unlocated) > 1 else ""),
                                       member=unlocated[0].name, members=[m.name for m in unlocated[:20]]))

    # torch reads <root>/data.pkl, root being the folder of the central directory's first entry.
    first_root = names[0].split("/", 1)[0] if names and "/" in names[0] else None
    main = next((m for m in pickles if first_root is not None and m.lower == f"{first_root}/data.pkl".lower()),
                pickles[0] if pickles else None)
    results: List[PickleResult] = []
    labels: List[str] = []
    torch_reads: List[PickleResult] = []
    unverified: List[str] = []
    pickle_notes: List[Dict[str, Any]] = []
    replayed = set()

    # Pickles a loader reads: every data.pkl and every .pkl member, the one torch loads first.
    must = ([main] if main is not None else []) + [m for m in members if m is not main and (
        m in pickles or _is_pickle_member(m))]
    if len(must) > MAX_PICKLE_MEMBERS:
        unverified.append(f"{len(must)} pickle members; only the first {MAX_PICKLE_MEMBERS} were read")
    main_result: Optional[PickleResult] = None
    for m in must[:MAX_PICKLE_MEMBERS]:
        replayed.add(id(m))
        if m.info.file_size > MAX_PICKLE_BYTES:
            result.problems.append(problem("pickle-too-large",
                f"{m.name} is {m.info.file_size} bytes; a weights pickle is a few MB at most",
                member=m.name, bytes=m.info.file_size))
            continue
        data, why = read_member(fh, m, size, MAX_PICKLE_BYTES)
        if data is None:
            result.problems.append(problem("zip-member-unreadable", f"cannot read {m.name}: {why}",
                                           member=m.name))
            unverified.append(f"{m.name} could not be read: {why}")
            continue
        stored = m.info.compress_type == zipfile.ZIP_STORED
        if stored and zlib.crc32(data[:m.info.file_size]) & 0xFFFFFFFF != m.info.CRC:
            anomalies.append({"kind": "crc-mismatch", "member": m.name})
        res, left = replay_streams(data, m.name, results, labels, pickle_notes)
        if left:
            unverified.append(f"{m.name} holds more than {MAX_STREAMS} pickles")
        if res is None:
            continue
        torch_reads.append(res)
        if m is main:
            main_result = res
        if not res.complete:
            result.problems.append(problem("pickle-error",
                                           f"{m.name} is not a readable pickle: {res.error}",
                                           member=m.name, pos=res.error_pos))

    if main is None:
        result.problems.append(problem("zip-not-torch",
            "a zip archive without data.pkl: not a torch checkpoint", members=names[:20]))
        _scan_other_members(fh, members, replayed, set(), size, results, labels, anomalies, pickle_notes)
        _scan_hidden(fh, hidden, results, labels, pickle_notes)
        if results:
            result.pickle = pickle_facts(results, labels, torchscript, torch_reads, unverified)
            result.pickle["anomalies"] = (result.pickle["anomalies"] + pickle_notes)[:50]
        return result

    root = main.name[: -len("data.pkl")].rstrip("/")
    container["root"] = root
    prefix = root.lower() + "/" if root else ""
    extra, compressed, encrypted = [], [], []
    storage_members: Dict[str, Member] = {}
    for m in members:
        rel = m.lower[len(prefix):] if m.lower.startswith(prefix) else None
        if m.info.compress_type != zipfile.ZIP_STORED:
            compressed.append(m.name)
        if m.info.flag_bits & 0x1:
            encrypted.append(m.name)
        if rel is None:
            extra.append(m.name)
        elif rel.startswith("data/") and rel[5:] and "/" not in rel[5:]:
            storage_members.setdefault(rel[5:], m)  # lower case: torch finds data/A under the name data/a
        elif rel not in ("data.pkl",) + _KNOWN_ZIP_RECORDS and not m.name.endswith("/"):
            extra.append(m.name)
    if duplicates:
        anomalies.append({"kind": "duplicate-members", "members": duplicates[:20]})
    if len(pickles) > 1:
        anomalies.append({"kind": "multiple-data-pkl", "members": [p.name for p in pickles][:20]})
    if compressed:
        anomalies.append({"kind": "compressed-members", "members": compressed[:20], "count": len(compressed)})
    if encrypted:
        anomalies.append({"kind": "encrypted-members", "members": encrypted[:20]})
    if extra:
        anomalies.append({"kind": "extra-members", "members": extra[:20], "count": len(extra)})
    container["storages"] = len(storage_members)
    order = next((m for m in members if m.lower == prefix + "byteorder"), None)
    if order is not None and order.info.file_size <= 16:
        data, _ = read_member(fh, order, size, 16)
        if data:
            container["byteorder"] = data.decode("ascii", "replace").strip()  # torch >= 2.1 writes it

    storages: Dict[str, Dict[str, Any]] = {}
    if main_result is not None and (main_result.complete or main_result.root is not None):
        def locate_storage(key: str) -> Optional[int]:
            m = storage_members.get(key.lower())
            return m.data_offset if m is not None and m.info.compress_type == zipfile.ZIP_STORED else None

        interpret(main_result.root, result, storages, locate_storage, limit=size)
    missing, short, cut = [], [], []
    for key, st in storages.items():
        m = storage_members.get(key.lower())
        if m is None:
            missing.append(key)
        elif m.info.file_size < st["numel"] * itemsize(st["dtype"]):
            short.append(key)
        elif m.end is not None and m.end > size:
            cut.append(key)
    if cut:
        result.problems.append(problem("zip-member-truncated",
                                       f"{len(cut)} storage records end past the end of the file",
                                       storages=sorted(cut)[:20], count=len(cut), size=size))
    if missing:
        result.problems.append(problem("missing-storage",
                                       f"{len(missing)} tensor storages referenced by data.pkl are not in the zip",
                                       storages=sorted(missing)[:20], count=len(missing)))
    if short:
        result.problems.append(problem("storage-too-small",
                                       f"{len(short)} storage records are smaller than data.pkl says",
                                       storages=sorted(short)[:20], count=len(short)))
    located = [storage_members[k.lower()] for k in storages if k.lower() in storage_members]
    container["storage_bytes"] = sum(m.info.file_size for m in located)

    # Pickles where torch expects none: tensor bytes, text records, extra members, hidden bytes (issue 8).
    referenced = {id(m) for m in located}
    _scan_other_members(fh, members, replayed, referenced, size, results, labels, anomalies, pickle_notes)
    _scan_hidden(fh, hidden, results, labels, pickle_notes)
    result.pickle = pickle_facts(results, labels, torchscript, torch_reads, unverified)
    result.pickle["anomalies"] = (result.pickle["anomalies"] + pickle_notes)[:50]
    return result


def _scan_other_members(fh, members: List[Member], replayed, referenced, size: int, results: List[PickleResult],
                        labels: List[str], anomalies: List[Dict[str, Any]], notes: List[Dict[str, Any]]) -> None:
    """Replay members that are not pickles by name but hold one; keep those that name globals.

    Storage records a data.pkl refers to hold tensor bytes: only a binary pickle signature (`\x80` and a
    protocol) counts there, so that weights are never mistaken for a pickle. Any other member counts
    when its first bytes replay as pickle opcodes.
    """
    found: List[str] = []
    for m in members:
        if id(m) in replayed or m.data_offset is None or m.name.endswith("/"):
            continue
        stored = m.info.compress_type == zipfile.ZIP_STORED
        if id(m) in referenced:
            if not stored or not (len(m.peek) >= 2 and m.peek[0] == 0x80 and m.peek[1] <= 5):
                continue
            limit = STORAGE_SCAN_BYTES
        else:
            if m.info.file_size > MAX_PICKLE_BYTES or stored and not pickle_evidence(m.peek, need=4):
                continue
            head = read_member(fh, m, size, 4096)[0] or b""
            if not pickle_evidence(head, need=4):
                continue
            limit = MAX_PICKLE_BYTES
        data, _ = read_member(fh, m, size, limit)
        if data and _keep_if_it_names_globals(data, m.name, results, labels, notes):
            found.append(m.name)
            if len(found) >= MAX_PICKLE_MEMBERS:
                break
    if found:
        anomalies.append({"kind": "pickle-in-member", "members": found[:20], "count": len(found),
                          "detail": "members torch reads as raw bytes or text hold pickles that name globals"})


def _keep_if_it_names_globals(data: bytes, label: str, results: List[PickleResult], labels: List[str],
                              notes: List[Dict[str, Any]]) -> bool:
    kept_results: List[PickleResult] = []
    kept_labels: List[str] = []
    kept_notes: List[Dict[str, Any]] = []
    replay_streams(data, label, kept_results, kept_labels, kept_notes)
    if not any(r.globals for r in kept_results):
        return False
    results.extend(kept_results)
    labels.extend(kept_labels)
    notes.extend(kept_notes)
    return True


def _scan_hidden(fh, hidden, results: List[PickleResult], labels: List[str], notes: List[Dict[str, Any]]) -> None:
    for label, data in hidden_payloads(fh, hidden):
        if pickle_evidence(data[:4096], need=4):
            _keep_if_it_names_globals(data, label, results, labels, notes)


TAR_MEMBERS = ("sys_info", "storages", "tensors", "pickle")


def read_torch_tar(fh, size: int) -> Optional[ReadResult]:
    """torch's oldest format (before 0.4): a tar whose members are pickles; None when it is not one.

    `torch.load(weights_only=False)` still reads it: the `storages`, `tensors` and `pickle` members are
    unpickled, so a tar named .ckpt runs code like any pickle (issue 8). Each member is replayed
    stream by stream, stepping over the raw storage and tensor records between the pickles.
    """
    import tarfile

    try:
        fh.seek(0)
        with tarfile.open(fileobj=fh, mode="r:") as tar:
            entries = [m for m in tar.getmembers()[:1000] if m.isfile()]
            names = [m.name for m in entries]
            if not any(n in TAR_MEMBERS for n in names):
                return None
            blobs = []
            for m in entries[:MAX_PICKLE_MEMBERS]:
                if m.size > MAX_PICKLE_BYTES:
                    continue
                handle = tar.extractfile(m)
                blobs.append((m.name, handle.read(MAX_PICKLE_BYTES) if handle is not None else b""))
    except Exception:  # tarfile raises many kinds of errors on hostile input; then torch cannot read it either
        return None
    result = ReadResult()
    result.container = {"kind": "legacy-tar", "members": names[:20]}
    results: List[PickleResult] = []
    labels: List[str] = []
    unverified: List[str] = []
    for name, data in blobs:
        if name in ("storages", "tensors"):
            _replay_records(data, name, results, labels, unverified)
        elif name in TAR_MEMBERS or pickle_evidence(data[:4096], need=4):
            first, left = replay_streams(data, name, results, labels)
            if first is not None and not first.complete and name in TAR_MEMBERS:
                unverified.append(f"{name}: {first.error}")
    result.pickle = pickle_facts(results, labels, unverified=unverified)
    verdict = result.pickle["weights_only"]
    verdict["reasons"].append("the legacy tar format is refused by torch >= 2.6")
    verdict["refused"], verdict["add_safe_globals_enough"] = True, False
    result.problems.append(problem("legacy-tar", "torch's legacy tar format (torch < 0.4): pickles in a tar archive", members=names[:20]))
    return result


def _replay_records(data: bytes, name: str, results: List[PickleResult], labels: List[str],
                    unverified: List[str]) -> None:
    """`storages` / `tensors` of the tar format: a count, then per record a pickle and raw bytes."""
    count = read_pickle(data, 0)
    results.append(count)
    labels.append(name)
    if not count.complete or type(count.root) is not int:
        unverified.append(f"{name}: {count.error or 'no record count'}")
        return
    pos = count.end
    for i in range(min(count.root, 1_000_000)):
        args = read_pickle(data, pos)
        results.append(args)
        labels.append(f"{name} record {i + 1}")
        if not args.complete:
            unverified.append(f"{name} record {i + 1}: {args.error}")
            return
        pos = args.end
        try:
            if name == "storages":
                storage = args.root[2] if isinstance(args.root, tuple) and len(args.root) == 3 else None
                dtype = STORAGE_DTYPES.get(storage.name) if isinstance(storage, Global) else None
                if dtype is None:
                    unverified.append(f"{name} record {i + 1}: not a storage record")
                    return
                pos += 8 + struct.unpack_from("<q", data, pos)[0] * itemsize(dtype)
            else:
                ndim = struct.unpack_from("<i", data, pos)[0]
                pos += 8 + 16 * max(ndim, 0) + 8
        except struct.error:
            unverified.append(f"{name} record {i + 1}: cut short")
            return
        if pos > len(data) or pos < 0:
            unverified.append(f"{name} record {i + 1}: cut short")
            return
    if name == "storages" and pos < len(data):
        replay_streams(data[pos:], f"{name} views", results, labels)


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
    unverified: List[str] = []
    if results and results[0].complete and results[0].end < len(buf):
        # A loader reads one pickle; what follows is trailing data, replayed for its globals all the same
        # (a second stream is how payloads hide from scanners that stop at the first STOP; issue 8).
        trailing = read_pickles(buf, results[0].end, limit=MAX_STREAMS)
        if trailing:
            result.container["trailing_pickles"] = len(trailing)
            last = trailing[-1]
            if len(trailing) >= MAX_STREAMS and last.complete and last.end < len(buf):
                unverified.append(f"more than {MAX_STREAMS} pickles follow the first one")
        results = results + trailing
    members = ["pickle"] + [f"trailing pickle {i + 1}" for i in range(len(results) - 1)]
    result.pickle = pickle_facts(results, members, torch_reads=results[:1], unverified=unverified)
    if not results or not results[0].complete:
        err = results[0].error if results else "empty"
        result.problems.append(problem("pickle-error", f"the pickle stream is unreadable: {err}",
                                       pos=results[0].error_pos if results else 0))
    storages: Dict[str, Dict[str, Any]] = {}
    if results and results[0].root is not None:
        interpret(results[0].root, result, storages, lambda key: None, limit=size)
    if storages:
        result.hints["pickle_storages_unlocated"] = True
    return result


def _scan_legacy_tail(buf, pos: int, parts: List[PickleResult], result: ReadResult) -> None:
    """Bytes after the last storage of a legacy file: torch never reads them; a pickle there is hiding."""
    tail = bytes(buf[pos:pos + MAX_PICKLE_BYTES])
    if not pickle_evidence(tail[:4096], need=4):
        return
    results: List[PickleResult] = list(parts)
    labels = ["magic number", "protocol version", "sys_info", "data", "storage keys"]
    notes: List[Dict[str, Any]] = []
    if _keep_if_it_names_globals(tail, f"bytes after the last storage (byte {pos})", results, labels, notes):
        result.pickle = pickle_facts(results, labels, torch_reads=parts)
        result.container.setdefault("anomalies", []).append(
            {"kind": "pickle-in-member", "members": [labels[5]], "count": 1,
             "detail": "a pickle after the storages, where torch reads nothing"})


def _read_legacy(buf, fh, size: int, result: ReadResult) -> ReadResult:
    result.container = {"kind": "legacy"}
    parts = read_pickles(buf, 0, limit=5)
    labels = ["magic number", "protocol version", "sys_info", "data", "storage keys"]
    result.pickle = pickle_facts(parts, labels[: len(parts)])
    if len(parts) < 5 or not all(p.complete for p in parts):
        bad = parts[-1] if parts else None
        result.problems.append(problem("legacy-truncated" if bad is None or "truncated" in (bad.error or "") else "pickle-error",
            f"the legacy torch file stops inside its {labels[min(len(parts), 5) - 1 if parts else 0]} pickle"
            + (f": {bad.error}" if bad is not None and bad.error else ""), size=size))
        if len(parts) >= 4 and parts[3].root is not None:
            interpret(parts[3].root, result, {}, lambda key: None, limit=size)
        return result
    if parts[1].root != LEGACY_PROTOCOL:
        result.container["protocol_version"] = plain_value(parts[1].root)
    keys_node = parts[4].root
    keys = [k for k in (keys_node.elems if isinstance(keys_node, Node) else []) if isinstance(k, str)]
    storages: Dict[str, Dict[str, Any]] = {}
    # First pass: learn every storage's dtype from the object pickle, the state dict's and those outside
    # it (optimizer states): each storage's size on disk is its element count times its element size.
    interpret(parts[3].root, ReadResult(), storages, lambda key: None, limit=size)
    elsewhere: List[Tuple[str, Dict[str, Any]]] = []
    _Walker().tensors(parts[3].root, "", elsewhere)
    for _, info in elsewhere:
        st = storage_of(info["pid"])
        if st is not None:
            storages.setdefault(st["key"], {"dtype": st["dtype"] or "uint8", "numel": st["numel"],
                                            "class": st["storage_class"]})
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
        result.problems.append(problem("legacy-truncated",
            f"the file ends inside storage {truncated_at} ({len(offsets)} of {len(keys)} storages complete)",
            size=size, complete=len(offsets), storages=len(keys)))
    elif pos < size:
        result.container["trailing_bytes"] = size - pos
        _scan_legacy_tail(buf, pos, parts, result)
    interpret(parts[3].root, result, {}, lambda key: offsets.get(key), limit=size)
    missing = sorted({t.storage for t in result.tensors if t.storage not in keys})
    if missing:
        result.problems.append(problem("missing-storage",
                                       f"{len(missing)} storages are not in the file's storage list",
                                       storages=missing[:20], count=len(missing)))
    return result
