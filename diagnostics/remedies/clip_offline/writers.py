"""Writing the provisioned files: tensor bytes copied unchanged, each file staged under a temporary name.

The weights are the checkpoint's tensors copied byte for byte in their own dtype from the offsets the
checkpoint readers record: neither torch nor numpy is needed for `model.safetensors` (transformers <
4.22, which reads only `pytorch_model.bin`, needs torch to write that file). Dtype names, safetensors
codes and sizes are the checkpoint package's (`probes/checkpoint/records.py`). Every file is written
to `.NAME.PID.incomplete`, flushed and fsynced, and renamed into place only by the placement step.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from ...probes.checkpoint.records import DTYPES, nbytes_of
from .tower import POSITION_IDS

CHUNK = 1024 * 1024
LFS_SUFFIXES = (".bin", ".safetensors")  # files the Hub stores in LFS: their etag is the sha256


class TensorSources:
    """Open handles on the files tensors are read from (a diffusers folder has several)."""

    def __init__(self, default: str) -> None:
        self.default = default
        self.handles: Dict[str, Any] = {}

    def read_into(self, record, sink: Callable[[bytes], None]) -> None:
        path = record.file or self.default
        fh = self.handles.get(path)
        if fh is None:
            fh = self.handles[path] = open(path, "rb")
        fh.seek(record.offset)
        left = record.nbytes
        while left:
            chunk = fh.read(min(CHUNK, left))
            if not chunk:
                raise OSError(f"{path} ends inside tensor {record.name}")
            sink(chunk)
            left -= len(chunk)

    def close(self) -> None:
        for fh in self.handles.values():
            fh.close()
        self.handles.clear()


Entry = Tuple[str, str, Tuple[int, ...], Any]  # name, dtype, shape, TensorRecord or raw bytes


def plan_entries(selection, with_position_ids: bool, max_positions: int) -> List[Entry]:
    """(name, dtype, shape, record or raw bytes) in name order: the selected tensors, and a fresh
    `arange(max_positions)` as `position_ids` where the installed transformers reads it."""
    entries: List[Entry] = [
        (name, record.dtype, tuple(record.shape), record) for name, record in sorted(selection.tensors.items())]
    if with_position_ids:
        raw = struct.pack(f"<{max_positions}q", *range(max_positions))
        entries.append((POSITION_IDS, "int64", (1, max_positions), raw))
        entries.sort(key=lambda entry: entry[0])
    return entries


def safetensors_header(entries, metadata: Dict[str, str]) -> bytes:
    """The 8-byte length + JSON header of a safetensors file holding `entries` in order."""
    header: Dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for name, dtype, shape, _ in entries:
        size = nbytes_of(dtype, shape)
        header[name] = {"dtype": DTYPES[dtype][1], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned, as safetensors writes it
    return struct.pack("<Q", len(raw)) + raw


def write_safetensors(fh, entries, sources: TensorSources, metadata: Dict[str, str]) -> None:
    """Stream the tensors' bytes unchanged into `fh` (pure Python: no torch, numpy or safetensors)."""
    fh.write(safetensors_header(entries, metadata))
    for _, _, _, source in entries:
        if isinstance(source, bytes):
            fh.write(source)
        else:
            sources.read_into(source, fh.write)


def write_pytorch_bin(path: str, entries, sources: TensorSources) -> None:
    """pytorch_model.bin for transformers < 4.22 (which reads nothing else): needs torch. The file is
    torch.save of plain tensors, as `save_pretrained` writes it."""
    import torch  # ImportError is reported by the caller

    state: Dict[str, Any] = {}
    for name, dtype, shape, source in entries:
        if isinstance(source, bytes):
            buf = bytearray(source)
        else:
            parts: List[bytes] = []
            sources.read_into(source, parts.append)
            buf = bytearray(b"".join(parts))
        state[name] = torch.frombuffer(buf, dtype=getattr(torch, dtype)).reshape(shape).clone()
    torch.save(state, path)


class HashingWriter:
    """A file object that hashes what goes through it (sha256) and counts its bytes."""

    def __init__(self, fh) -> None:
        self.fh = fh
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self.fh.write(data)
        self.sha256.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self.fh.flush()


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def etag_of(name: str, data: Optional[bytes] = None, sha256: Optional[str] = None) -> str:
    """The etag the Hub gives a file, which names its blob: sha256 for LFS files, git blob sha1 else."""
    if name.endswith(LFS_SUFFIXES):
        return sha256 if sha256 is not None else hashlib.sha256(data or b"").hexdigest()
    return git_blob_sha1(data or b"")


@dataclass
class StagedFile:
    """A file written to a temporary path, waiting to be renamed into place."""

    name: str
    tmp: str
    size: int
    sha256: str
    etag: str
    role: str


def tmp_path(directory: str, name: str) -> str:
    return os.path.join(directory, f".{name}.{os.getpid()}.incomplete")


def _write_synced(path: str, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def stage_bytes(directory: str, name: str, data: bytes, role: str) -> StagedFile:
    tmp = tmp_path(directory, name)
    _write_synced(tmp, data)
    return StagedFile(name, tmp, len(data), hashlib.sha256(data).hexdigest(), etag_of(name, data), role)


def stage_weights(directory: str, name: str, entries, sources: TensorSources,
                  metadata: Dict[str, str]) -> StagedFile:
    tmp = tmp_path(directory, name)
    try:
        if name.endswith(".safetensors"):
            with open(tmp, "wb") as raw:
                fh = HashingWriter(raw)
                write_safetensors(fh, entries, sources, metadata)
                raw.flush()
                os.fsync(raw.fileno())
            digest, size = fh.sha256.hexdigest(), fh.size
        else:
            write_pytorch_bin(tmp, entries, sources)
            digest, size = sha256_file(tmp), os.path.getsize(tmp)
    except BaseException:
        unlink_quietly(tmp)
        raise
    return StagedFile(name, tmp, size, digest, etag_of(name, sha256=digest), "text-encoder weights")


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def atomic_write(path: str, data: bytes) -> None:
    tmp = tmp_path(os.path.dirname(path) or ".", os.path.basename(path))
    try:
        _write_synced(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        unlink_quietly(tmp)
        raise
