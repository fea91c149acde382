"""What a path holds, decided by its first bytes, never by its extension.

A `.ckpt` that is really a git-lfs pointer (a clone without `git lfs pull`), an HTML login page (a
download link that needed a token) or a zero-byte file (a failed download) is the most common
"corrupt checkpoint" of all; each gets its own name here so the rule can say what happened and how to
fetch the real file. Opening the path is also where permission errors, symlink loops and dangling
links surface; they are facts, never exceptions.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import struct
from typing import Any, Dict, Optional, Tuple

from .pickle_vm import pickle_evidence
from .records import problem

HEAD_BYTES = 4096
CHECKPOINT_EXTENSIONS = (".ckpt", ".pt", ".pth", ".bin", ".safetensors", ".pkl", ".pickle", ".sft")


def stat_path(path: str) -> Tuple[Optional[os.stat_result], Optional[Dict[str, Any]]]:
    """(stat, None) or (None, problem) for a path that cannot be a readable file or folder."""
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None, problem("symlink-loop",
                                 f"{path} is a symbolic link that points (through other links) back to itself",
                                 chain=_link_chain(path))
        if exc.errno == errno.ENOENT and os.path.islink(path):
            return None, problem("dangling-symlink",
                                 f"{path} is a symbolic link to {_readlink(path)}, which does not exist",
                                 target=_readlink(path))
        if exc.errno == errno.ENOENT:
            return None, problem("not-found", f"{path} does not exist")
        if exc.errno in (errno.EACCES, errno.EPERM):
            return None, problem("permission-denied",
                                 f"cannot look at {path}: permission denied on a parent folder", detail=str(exc))
        return None, problem("os-error", f"cannot stat {path}: {exc.strerror or exc}",
                             errno=exc.errno)
    return st, None


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def _link_chain(path: str, limit: int = 8):
    chain = [path]
    current = path
    for _ in range(limit):
        if not os.path.islink(current):
            break
        target = _readlink(current)
        current = os.path.join(os.path.dirname(current), target)
        chain.append(target)
        if chain.count(target) > 1:
            break
    return chain


def classify_stat(path: str, st: os.stat_result) -> Optional[Dict[str, Any]]:
    if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
        return None
    return problem("not-regular-file",
                   f"{path} is not a regular file (a device, pipe or socket)", mode=oct(st.st_mode))


def open_file(path: str):
    """(file object, None) or (None, problem)."""
    try:
        return open(path, "rb"), None
    except PermissionError as exc:
        return None, problem("permission-denied",
                             f"{path} exists but this user cannot read it (permission denied)", detail=str(exc))
    except IsADirectoryError:
        return None, problem("directory", f"{path} is a directory")
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None, problem("symlink-loop", f"{path} is a symbolic link loop")
        return None, problem("os-error", f"cannot open {path}: {exc.strerror or exc}",
                             errno=exc.errno)


_LFS = re.compile(rb"^version https://git-lfs\.github\.com/spec/v\d+\s*\n(?:.*\n)*?oid sha256:([0-9a-f]{64})\s*\nsize (\d+)",
                  re.M)
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.I | re.S)


def sniff(head: bytes, size: int, path: str = "") -> Dict[str, Any]:
    """{"kind": ..., plus details} from the first bytes of a regular file.

    kinds: empty, zip, safetensors, pickle, lfs-pointer, html, text, archive, unknown.
    """
    ext = os.path.splitext(path)[1].lower()
    if size == 0:
        return {"kind": "empty"}
    if head.startswith(b"PK\x03\x04"):
        return {"kind": "zip"}
    if head.startswith(b"PK\x05\x06"):
        return {"kind": "archive", "archive": "empty zip"}
    if head.startswith(b"version https://git-lfs"):
        m = _LFS.match(head)
        details: Dict[str, Any] = {"kind": "lfs-pointer"}
        if m:
            details["oid"] = m.group(1).decode()
            details["expected_size"] = int(m.group(2))
        return details
    if len(head) >= 9 and head[8:9] == b"{":
        return {"kind": "safetensors", "header_bytes": struct.unpack("<Q", head[:8])[0]}
    if head[:1] == b"\x80" and len(head) > 1 and 0 <= head[1] <= 5:
        return {"kind": "pickle", "protocol": head[1]}
    if ext in (".safetensors", ".sft") and not _looks_like_text(head):
        # Named safetensors, binary, but no '{' after the length: a damaged header, judged by the header reader.
        return {"kind": "safetensors", "header_bytes": struct.unpack("<Q", head[:8])[0] if len(head) >= 8 else None}
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if stripped.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml", b"<!--")):
        title = _TITLE.search(head)
        return {"kind": "html",
                "title": title.group(1).decode("utf-8", "replace").strip()[:200] if title else None}
    if head.startswith(b"\x1f\x8b"):
        return {"kind": "archive", "archive": "gzip"}
    if head.startswith(b"7z\xbc\xaf\x27\x1c"):
        return {"kind": "archive", "archive": "7z"}
    if len(head) > 262 and head[257:262] == b"ustar":
        return {"kind": "archive", "archive": "tar"}
    if head.startswith(b"\x89HDF"):
        return {"kind": "archive", "archive": "HDF5 (Keras/TensorFlow weights)"}
    if head.startswith(b"GGUF"):
        return {"kind": "archive", "archive": "GGUF (quantised weights for llama.cpp-style runtimes)"}
    # torch.load unpickles every file that is not a zip, whatever its first byte: a pickle needs no PROTO
    # opcode, so the first bytes are replayed (issue 8). Protocol 0 pickles are text too: text needs a
    # whole pickle, a call or 16 opcodes to count as one.
    text = _looks_like_text(head)
    evidence = pickle_evidence(head, need=16 if text else 4)
    if evidence == "pickle":
        return {"kind": "pickle", "protocol": 0}
    extra = {"pickle_prefix": True} if evidence == "prefix" and size > len(head) else {}
    if text:
        first_line = head.split(b"\n", 1)[0][:200].decode("utf-8", "replace")
        return dict({"kind": "text", "first_line": first_line}, **extra)
    return dict({"kind": "unknown", "head_hex": head[:16].hex()}, **extra)


def _looks_like_text(head: bytes) -> bool:
    sample = head[:1024]
    if not sample:
        return False
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(sample) - 4:  # not just a character cut at the end of the sample
            return False
        text = sample[: exc.start].decode("utf-8")
    printable = sum(1 for c in text if c.isprintable() or c in "\r\n\t")
    return printable >= 0.95 * max(len(text), 1)


# The container each sniffed kind is read as; every other kind is no checkpoint format.
_CONTAINERS = {"zip": "torch-zip", "safetensors": "safetensors", "pickle": "pickle"}


def file_format(path: str) -> str:
    """The container format of the file at `path`, from its first bytes: "safetensors", "torch-zip",
    "pickle" (torch's legacy format or a plain pickle: `torch.load` unpickles both), or "unknown"
    (anything else, or a path that cannot be read). Never raises."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEAD_BYTES)
            size = os.fstat(fh.fileno()).st_size
    except (OSError, ValueError):
        return "unknown"
    return _CONTAINERS.get(sniff(head, size, path)["kind"], "unknown")
