"""torch files from before the zip format, read without `torch.load`, and plain pickles.

- legacy tar (torch < 0.4): a tar of pickles, which `torch.load(weights_only=False)` still reads.
- legacy (torch < 1.6, `_use_new_zipfile_serialization=False`): five consecutive pickles (magic
  number, protocol version, sys_info, the object, the storage keys), then each storage as an 8-byte
  element count followed by its raw bytes.
- plain pickle: any other pickle stream; reported with its globals (tensors pickled this way go through
  `torch.storage._load_from_bytes`, a nested `torch.load`).
"""

from __future__ import annotations

import io
import mmap
import struct
from typing import Any, Dict, List, Optional, Tuple

from .pickle_streams import (MAX_PICKLE_BYTES, MAX_PICKLE_MEMBERS, MAX_STREAMS, keep_if_it_names_globals,
                             pickle_facts, replay_streams)
from .pickle_vm import Global, Node, PickleResult, pickle_evidence, read_pickle, read_pickles
from .records import STORAGE_DTYPES, ReadResult, itemsize, problem
from .torch_objects import TensorWalker, interpret, plain_value, storage_entry, storage_of

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
TAR_MEMBERS = ("sys_info", "storages", "tensors", "pickle")
LEGACY_PARTS = ("magic number", "protocol version", "sys_info", "data", "storage keys")


def _no_storage_offsets(key: str) -> Optional[int]:
    return None


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
        interpret(results[0].root, result, storages, _no_storage_offsets, limit=size)
    if storages:
        result.hints["pickle_storages_unlocated"] = True
    return result


def _scan_legacy_tail(buf, pos: int, parts: List[PickleResult], result: ReadResult) -> None:
    """Bytes after the last storage of a legacy file: torch never reads them; a pickle there is hiding."""
    tail = bytes(buf[pos:pos + MAX_PICKLE_BYTES])
    if not pickle_evidence(tail[:4096], need=4):
        return
    results: List[PickleResult] = list(parts)
    labels = list(LEGACY_PARTS)
    notes: List[Dict[str, Any]] = []
    if keep_if_it_names_globals(tail, f"bytes after the last storage (byte {pos})", results, labels, notes):
        result.pickle = pickle_facts(results, labels, torch_reads=parts)
        result.container.setdefault("anomalies", []).append(
            {"kind": "pickle-in-member", "members": [labels[5]], "count": 1,
             "detail": "a pickle after the storages, where torch reads nothing"})


def _read_legacy(buf, fh, size: int, result: ReadResult) -> ReadResult:
    result.container = {"kind": "legacy"}
    parts = read_pickles(buf, 0, limit=5)
    result.pickle = pickle_facts(parts, list(LEGACY_PARTS[: len(parts)]))
    if len(parts) < 5 or not all(p.complete for p in parts):
        return _legacy_cut_short(parts, size, result)
    if parts[1].root != LEGACY_PROTOCOL:
        result.container["protocol_version"] = plain_value(parts[1].root)
    keys_node = parts[4].root
    keys = [k for k in (keys_node.elems if isinstance(keys_node, Node) else []) if isinstance(k, str)]
    # One pass over the object pickle gives the tensors and the storages' dtypes, which say where each
    # storage's bytes start; the tensors' offsets are filled in once those are known.
    before = len(result.problems)
    storages: Dict[str, Dict[str, Any]] = {}
    interpret(parts[3].root, result, storages, _no_storage_offsets, limit=size)
    _storages_elsewhere(parts[3].root, storages)
    tensor_problems = result.problems[before:]
    del result.problems[before:]
    offsets, end, truncated_at = _legacy_offsets(fh, keys, storages, parts[4].end, size)
    result.container["storages"] = len(keys)
    if truncated_at is not None:
        result.problems.append(problem("legacy-truncated",
            f"the file ends inside storage {truncated_at} ({len(offsets)} of {len(keys)} storages complete)",
            size=size, complete=len(offsets), storages=len(keys)))
    elif end < size:
        result.container["trailing_bytes"] = size - end
        _scan_legacy_tail(buf, end, parts, result)
    result.problems.extend(tensor_problems)
    for record in result.tensors:
        start = offsets.get(record.storage)
        record.offset = None if start is None else start + record.within
    missing = sorted({t.storage for t in result.tensors if t.storage not in keys})
    if missing:
        result.problems.append(problem("missing-storage",
                                       f"{len(missing)} storages are not in the file's storage list",
                                       storages=missing[:20], count=len(missing)))
    return result


def _legacy_cut_short(parts: List[PickleResult], size: int, result: ReadResult) -> ReadResult:
    """A legacy file that stops inside one of its five pickles: what the object pickle holds is still read."""
    bad = parts[-1] if parts else None
    result.problems.append(problem("legacy-truncated" if bad is None or "truncated" in (bad.error or "") else "pickle-error",
        f"the legacy torch file stops inside its {LEGACY_PARTS[min(len(parts), 5) - 1 if parts else 0]} pickle"
        + (f": {bad.error}" if bad is not None and bad.error else ""), size=size))
    if len(parts) >= 4 and parts[3].root is not None:
        interpret(parts[3].root, result, {}, _no_storage_offsets, limit=size)
    return result


def _storages_elsewhere(root: Any, storages: Dict[str, Dict[str, Any]]) -> None:
    """Adds the storages of the tensors outside the state dict (optimizer states) to the state dict's.

    With them `storages` has every storage's dtype; its size on disk is its element count times its
    element size.
    """
    elsewhere: List[Tuple[str, Dict[str, Any]]] = []
    TensorWalker().tensors(root, "", elsewhere)
    for _, info in elsewhere:
        st = storage_of(info["pid"])
        if st is not None:
            storages.setdefault(st["key"], storage_entry(st))


def _legacy_offsets(fh, keys: List[str], storages: Dict[str, Dict[str, Any]], pos: int,
                    size: int) -> Tuple[Dict[str, int], int, Optional[str]]:
    """(offset of each storage's bytes, where the last one ends, the storage the file ends inside or None)."""
    offsets: Dict[str, int] = {}
    for key in keys:
        fh.seek(pos)
        head = fh.read(8)
        if len(head) < 8:
            return offsets, pos, key
        count = struct.unpack("<q", head)[0]
        st = storages.get(key)
        nbytes = count * itemsize(st["dtype"] if st else "uint8")
        if count < 0 or pos + 8 + nbytes > size:
            return offsets, pos, key
        offsets[key] = pos + 8
        pos += 8 + nbytes
    return offsets, pos, None
