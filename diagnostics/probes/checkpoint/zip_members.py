"""A torch zip's members as torch reads them, and what other zip readers would see instead (issue 8).

Zip files carry every member's name, sizes and compression twice: in the central directory at the end
(what Python's `zipfile` and torch's miniz reader use) and in a local header just before the bytes
(what streaming extractors use). torch finds the bytes from the central directory plus the local
header's name and extra-field lengths, compares names case-insensitively, ignores the local name, and
inflates deflated members; Python's `zipfile` refuses a member whose local name differs. A scanner that
reads members through `zipfile` therefore fails exactly where torch succeeds (picklescan's
CVE-2025-1944 and -1945), and a scanner that reads only central entries misses bytes that only the
local headers describe.

So every member is located here by its own local header, the way torch does it (one small read per
member, name and extra field included), read without `zipfile` (stored: the bytes; deflated: `zlib`
with a bound on the output), and the two descriptions are compared: names, sizes and compression
methods that differ, members that overlap, and bytes that no central entry covers (a local member
hidden from the central directory, or appended data) are reported; hidden bytes are handed back so
the caller can look for a pickle in them.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from typing import Any, Dict, List, Optional, Tuple

LOCAL = struct.Struct("<4sHHHHHIIIHH")  # signature, version, flags, method, time, date, crc, csize, usize, n, m
LOCAL_SIG = b"PK\x03\x04"
PEEK = 16  # first data bytes kept per member (pickle signatures)
EXTRA_GUESS = 128  # torch pads the local extra field to 64-byte alignment; read that much at once
DESCRIPTOR_SLACK = 24  # a data descriptor (flag bit 3) after the data: 12 to 24 bytes
MAX_HIDDEN = 4  # hidden regions kept for a pickle scan
MAX_HIDDEN_BYTES = 1 << 20
CHUNK = 1 << 20


class Member:
    """One central-directory entry with what its local header says."""

    __slots__ = ("info", "name", "lower", "data_offset", "local_name", "local_csize", "local_method", "flags",
                 "peek", "error")

    def __init__(self, info: zipfile.ZipInfo) -> None:
        self.info = info
        self.name = info.filename
        self.lower = info.filename.lower()  # torch (miniz) looks names up case-insensitively
        self.data_offset: Optional[int] = None
        self.local_name = b""
        self.local_csize: Optional[int] = None  # None: sizes follow the data (flag bit 3) or zip64
        self.local_method: Optional[int] = None
        self.flags = 0
        self.peek = b""
        self.error: Optional[str] = None

    @property
    def end(self) -> Optional[int]:
        return None if self.data_offset is None else self.data_offset + self.info.compress_size


def _central_name_bytes(info: zipfile.ZipInfo) -> Tuple[bytes, ...]:
    names = []
    for encoding in ("utf-8", "cp437"):
        try:
            names.append(info.orig_filename.encode(encoding))
        except UnicodeEncodeError:
            pass
    return tuple(names)


def locate(fh, members: List[Member], size: int) -> None:
    """Fill each member's data offset, local header facts and first data bytes (one read per member)."""
    for m in members:
        info = m.info
        want = LOCAL.size + len(info.orig_filename.encode("utf-8", "replace")) + EXTRA_GUESS + PEEK
        try:
            fh.seek(info.header_offset)
            head = fh.read(want)
        except (OSError, ValueError, OverflowError) as exc:
            m.error = f"cannot read its local header: {exc}"
            continue
        if len(head) < LOCAL.size or head[:4] != LOCAL_SIG:
            m.error = "no local header at the offset the central directory gives"
            continue
        _, _, flags, method, _, _, _, csize, _, n, extra = LOCAL.unpack_from(head)
        m.flags, m.local_method = flags, method
        m.local_csize = None if flags & 0x8 or csize == 0xFFFFFFFF else csize
        start = LOCAL.size + n + extra
        if len(head) < start + PEEK and info.header_offset + start < size:
            try:
                fh.seek(info.header_offset)
                head = fh.read(start + PEEK)
            except (OSError, ValueError, OverflowError) as exc:
                m.error = f"cannot read its local header: {exc}"
                continue
        m.local_name = bytes(head[LOCAL.size:LOCAL.size + n])
        m.data_offset = info.header_offset + start
        m.peek = bytes(head[start:start + PEEK]) if info.compress_type == zipfile.ZIP_STORED else b""


def compare(members: List[Member], size: int, start_dir: Optional[int]) -> Tuple[List[Dict[str, Any]],
                                                                                  List[Tuple[int, int]]]:
    """(anomalies, hidden byte ranges) from the local headers against the central directory."""
    anomalies: List[Dict[str, Any]] = []
    names, sizes, methods, overlaps = [], [], [], []
    for m in members:
        if m.data_offset is None:
            continue
        if m.local_name not in _central_name_bytes(m.info):
            names.append({"member": m.name, "local_name": m.local_name[:200].decode("utf-8", "replace")})
        if m.local_csize is not None and m.local_csize != m.info.compress_size:
            sizes.append({"member": m.name, "central": m.info.compress_size, "local": m.local_csize})
        if m.local_method != m.info.compress_type:
            methods.append({"member": m.name, "central": m.info.compress_type, "local": m.local_method})
    if names:
        anomalies.append({"kind": "local-name-mismatch", "member": names[0]["member"],
                          "local_name": names[0]["local_name"], "members": names[:20], "count": len(names)})
    if sizes:
        anomalies.append({"kind": "local-size-mismatch", "members": sizes[:20], "count": len(sizes)})
    if methods:
        anomalies.append({"kind": "local-method-mismatch", "members": methods[:20], "count": len(methods)})
    # Bytes no central entry covers: before the first member, between members, before the central directory.
    located = sorted((m for m in members if m.data_offset is not None), key=lambda m: m.info.header_offset)
    hidden: List[Tuple[int, int]] = []
    cursor = 0
    previous: Optional[Member] = None
    for m in located:
        begin = m.info.header_offset
        if begin < cursor and previous is not None and begin != previous.info.header_offset:
            overlaps.append({"member": m.name, "overlaps": previous.name})
        elif begin > cursor + (DESCRIPTOR_SLACK if previous is not None and previous.flags & 0x8 else 0):
            hidden.append((cursor, begin))
        end = m.end or begin
        if end > cursor:
            cursor, previous = end, m
    tail = start_dir if isinstance(start_dir, int) and 0 <= start_dir <= size else None
    if tail is not None and tail > cursor + (DESCRIPTOR_SLACK if previous is not None and previous.flags & 0x8 else 0):
        hidden.append((cursor, tail))
    if overlaps:
        anomalies.append({"kind": "overlapping-members", "members": overlaps[:20], "count": len(overlaps)})
    if hidden:
        anomalies.append({"kind": "hidden-bytes", "ranges": [list(r) for r in hidden[:20]], "count": len(hidden),
                          "bytes": sum(b - a for a, b in hidden)})
    return anomalies, hidden


def hidden_payloads(fh, ranges: List[Tuple[int, int]]) -> List[Tuple[str, bytes]]:
    """(label, bytes) of hidden regions worth a pickle scan: a local member's data, or the raw bytes."""
    out: List[Tuple[str, bytes]] = []
    for begin, end in ranges[:MAX_HIDDEN]:
        try:
            fh.seek(begin)
            raw = fh.read(min(end - begin, MAX_HIDDEN_BYTES))
        except (OSError, ValueError, OverflowError):
            continue
        if raw[:4] == LOCAL_SIG and len(raw) >= LOCAL.size:
            _, _, flags, method, _, _, _, csize, _, n, extra = LOCAL.unpack_from(raw)
            name = raw[LOCAL.size:LOCAL.size + n].decode("utf-8", "replace")
            data = raw[LOCAL.size + n + extra:]
            if not flags & 0x8 and csize != 0xFFFFFFFF:
                data = data[:csize]
            if method == zipfile.ZIP_DEFLATED:
                data = inflate(data, MAX_HIDDEN_BYTES)[0] or b""
            out.append((f"local member {name!r} at byte {begin} (not in the central directory)", data))
        else:
            out.append((f"bytes {begin}-{end} outside every member", raw))
    return out


def inflate(raw: bytes, limit: int) -> Tuple[Optional[bytes], Optional[str]]:
    """Raw deflate data inflated to at most `limit` bytes (a zip bomb stops there)."""
    try:
        return zlib.decompressobj(-15).decompress(raw, limit), None
    except zlib.error as exc:
        return None, f"deflate data is damaged: {exc}"


def inflate_at(fh, offset: int, csize: int, limit: int) -> Tuple[Optional[bytes], Optional[str]]:
    """Inflate `csize` bytes of raw deflate data at `offset`, read in chunks, to at most `limit` bytes."""
    d = zlib.decompressobj(-15)
    out: List[bytes] = []
    produced = 0
    try:
        fh.seek(offset)
        left = csize
        while left > 0 and produced < limit and not d.eof:
            chunk = fh.read(min(left, CHUNK))
            if not chunk:
                break
            left -= len(chunk)
            data = d.decompress(chunk, limit - produced)
            out.append(data)
            produced += len(data)
    except zlib.error as exc:
        return None, f"deflate data is damaged: {exc}"
    except (OSError, ValueError, OverflowError) as exc:
        return None, str(exc)
    return b"".join(out), None


def read_member(fh, m: Member, size: int, limit: int) -> Tuple[Optional[bytes], Optional[str]]:
    """(bytes, None) or (None, why): a member's bytes as torch reads them, at most `limit` of them.

    Stored members give their central size (or the local header's, when it claims more: what a
    streaming reader would take); deflated members are inflated with `zlib`. Neither the local name
    nor the encryption flag stops the read (torch's reader ignores the one; a scanner must not stop
    at the other, whose bytes are then simply not a readable pickle).
    """
    if m.data_offset is None:
        return None, m.error or "its local header is missing"
    info = m.info
    stored = max(info.compress_size, m.local_csize or 0)
    if info.compress_type == zipfile.ZIP_STORED:
        n = min(stored, limit, max(size - m.data_offset, 0))
        try:
            fh.seek(m.data_offset)
            return fh.read(n), None
        except (OSError, ValueError, OverflowError) as exc:
            return None, str(exc)
    if info.compress_type == zipfile.ZIP_DEFLATED:
        return inflate_at(fh, m.data_offset, min(info.compress_size, max(size - m.data_offset, 0)), limit)
    return None, f"compression method {info.compress_type} (torch reads only stored and deflated members)"
