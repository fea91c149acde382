"""safetensors header parsing and validation, from the 8 + N header bytes only.

The rules are those of the reference implementation (huggingface/safetensors `tensor.rs`), so a file
we pass is one `safetensors.safe_open` accepts: 8-byte little-endian header length N under 100 MB and
inside the file; a UTF-8 JSON object starting with `{` without duplicate keys; known dtypes; each
entry's byte length equal to numel x bits / 8; entries contiguous from offset 0 and covering the
data buffer exactly. The last condition is what tells a truncated download from a complete one.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any, Dict, List, Optional, Tuple

from .records import SAFETENSORS_DTYPES, Problem, ReadResult, TensorRecord, bits_of, numel_of, problem

MAX_HEADER_BYTES = 100_000_000  # safetensors' MAX_HEADER_SIZE
MAX_ENTRIES = 2_000_000


class _Duplicate(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Duplicate(key)
        out[key] = value
    return out


def read_header_length(fh) -> Optional[int]:
    fh.seek(0)
    head = fh.read(8)
    if len(head) < 8:
        return None
    return struct.unpack("<Q", head)[0]


HeaderRead = Tuple[Optional[Dict[str, Any]], Optional[int], Optional[Problem]]


def parse_header(fh, size: int, base: int = 0) -> HeaderRead:
    """(header, header length, None) or (None, header length or None, the problem) for the file at `base`.

    The header is the JSON object as written, `__metadata__` included; duplicate keys, a header over
    safetensors' limit, one past the end of the file or one that is no JSON object are problems.
    """
    fh.seek(base)
    head = fh.read(8)
    if len(head) < 8:
        return None, None, problem("safetensors-too-short",
                                   f"the file is {size} bytes, shorter than the 8-byte header length", size=size)
    n = struct.unpack("<Q", head)[0]
    if n > MAX_HEADER_BYTES:
        return None, n, problem(
            "header-too-large",
            f"the first 8 bytes claim a {n}-byte header; safetensors refuses headers over {MAX_HEADER_BYTES} bytes "
            "(HeaderTooLarge)", header_bytes=n, size=size, limit=MAX_HEADER_BYTES)
    if 8 + n > size:
        return None, n, problem(
            "header-beyond-file",
            f"the header is said to be {n} bytes but the file has only {max(size - 8, 0)} after the length field: "
            "the file is cut short", header_bytes=n, size=size)
    raw = fh.read(n)
    if len(raw) < n:
        return None, n, problem("header-beyond-file", "the header could not be read in full", header_bytes=n, size=size)
    header, why = _decode_header(raw)
    return header, n, why


def _decode_header(raw: bytes) -> Tuple[Optional[Dict[str, Any]], Optional[Problem]]:
    if not raw.startswith(b"{"):
        return None, problem("header-not-json", "the header does not start with '{': not a safetensors header",
                             head=raw[:40].decode("latin-1"))
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except _Duplicate as dup:
        return None, problem("duplicate-keys", f"the header names {dup.key!r} twice", key=dup.key)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return None, problem("header-not-json", f"the header is not valid JSON: {str(exc)[:200]}",
                             detail=str(exc)[:200])
    if not isinstance(header, dict):
        return None, problem("header-not-object", f"the header is JSON {type(header).__name__}, not an object")
    return header, None


def read_safetensors_header(path: str) -> Optional[Dict[str, Any]]:
    """The JSON header of the safetensors file at `path` (`__metadata__` included), or None when the
    file cannot be read or has no valid header. Reads the 8 + N header bytes only; never raises."""
    try:
        with open(path, "rb") as fh:
            header, _, why = parse_header(fh, os.fstat(fh.fileno()).st_size)
    except (OSError, ValueError, OverflowError):
        return None
    return header if why is None else None


def read_safetensors(fh, size: int, base: int = 0) -> ReadResult:
    """Tensors and problems of a safetensors file (or of one starting at `base` inside a folder read)."""
    result = ReadResult()
    result.container = {"kind": "safetensors"}
    header, n, why = parse_header(fh, size, base)
    if n is not None:
        result.container["header_bytes"] = n
    if why is not None:
        result.problems.append(why)
        return result
    metadata = header.pop("__metadata__", None)
    if metadata is not None:
        if isinstance(metadata, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            result.metadata = {k: (v if len(v) <= 2000 else v[:2000] + "...") for k, v in list(metadata.items())[:200]}
        else:
            result.problems.append(problem("bad-metadata", "__metadata__ must map strings to strings"))
    if len(header) > MAX_ENTRIES:
        result.problems.append(problem("too-many-entries", f"{len(header)} tensors in the header"))
        return result
    entries = _valid_entries(header, result)
    cursor = _records(entries, base + 8 + n, size, result)
    buffer_len = size - (8 + n)
    result.container["data_bytes"] = buffer_len
    result.container["tensor_bytes"] = cursor
    if cursor > buffer_len:
        result.problems.append(problem(
            "data-truncated",
            f"the header describes {cursor} bytes of tensor data but the file holds {buffer_len}: the file is cut "
            f"short by {cursor - buffer_len} bytes", expected_size=8 + n + cursor, size=size,
            missing_bytes=cursor - buffer_len))
    elif cursor < buffer_len:
        result.problems.append(problem(
            "trailing-bytes", f"{buffer_len - cursor} bytes after the last tensor (safetensors refuses such files)",
            extra_bytes=buffer_len - cursor))
    return result


Entry = Tuple[int, int, str, str, Tuple[int, ...]]


def _valid_entries(header: Dict[str, Any], result: ReadResult) -> List[Entry]:
    """(begin, end, name, dtype, shape) of the well-formed entries, in data order; the others are a problem."""
    entries: List[Entry] = []
    bad: List[str] = []
    for name, entry in header.items():
        reason = _entry_problem(entry)
        if reason:
            if len(bad) < 20:
                bad.append(f"{name}: {reason}")
            continue
        begin, end = entry["data_offsets"]
        entries.append((begin, end, name, SAFETENSORS_DTYPES[entry["dtype"]], tuple(entry["shape"])))
    if bad:
        result.problems.append(problem("bad-entry", f"{len(bad)} header entries are invalid", entries=bad))
    entries.sort()
    return entries


def _records(entries: List[Entry], data_start: int, size: int, result: ReadResult) -> int:
    """Append a record per entry a file of `size` bytes can hold; returns where the last entry ends."""
    cursor = 0
    gaps, mismatched, impossible = [], [], []
    for begin, end, name, dtype, shape in entries:
        if begin != cursor and len(gaps) < 20:
            gaps.append({"tensor": name, "begin": begin, "expected": cursor})
        cursor = max(cursor, end)
        bits = numel_of(shape) * bits_of(dtype)
        if bits != (end - begin) * 8 and len(mismatched) < 20:
            mismatched.append({"tensor": name, "bytes": end - begin, "expected": (bits + 7) // 8})
        if bits > 8 * size:
            impossible.append(name)  # a shape no file of this size holds: no record, so no absurd sums later
            continue
        result.tensors.append(TensorRecord(name=name, dtype=dtype, shape=shape, offset=data_start + begin,
                                           source="safetensors"))
    if impossible:
        result.problems.append(problem(
            "impossible-shape", f"{len(impossible)} tensors have shapes that need more bytes than the whole file",
            tensors=impossible[:20], count=len(impossible)))
    if mismatched:
        result.problems.append(problem("size-mismatch", f"{len(mismatched)} tensors' byte ranges do not match dtype x "
                                                        "shape", tensors=mismatched))
    if gaps:
        result.problems.append(problem("offsets-not-contiguous", "tensor byte ranges overlap or leave holes", gaps=gaps))
    return cursor


def _entry_problem(entry: Any) -> str:
    if not isinstance(entry, dict):
        return "not an object"
    dtype = entry.get("dtype")
    if dtype not in SAFETENSORS_DTYPES:
        return f"unknown dtype {dtype!r}"
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        return f"invalid shape {shape!r}"
    offsets = entry.get("data_offsets")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
            or offsets[0] > offsets[1]):
        return f"invalid data_offsets {offsets!r}"
    return ""
