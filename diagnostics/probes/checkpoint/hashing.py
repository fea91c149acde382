"""Checkpoint hashes as the model sites and web UIs show them, cached so a rerun is instant.

- sha256 of the whole file; its first 10 hex digits are the "AutoV2" short hash (A1111 `shorthash`,
  Civitai's AutoV2);
- the legacy A1111 model hash: sha256 of the 64 KiB at offset 1 MiB, first 8 hex digits (AutoV1;
  collision-prone, shown only because old prompts and model lists quote it).

The cache key is (real path, size, mtime in ns, inode, device): any rewrite of the file changes at least
one of them. The cache is a small JSON file under `$LDM_DIAG_CACHE_DIR` (default
`$XDG_CACHE_HOME/ldm-diagnostics` or `~/.cache/ldm-diagnostics`); failing to write it is a fact, not an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from typing import Any, Callable, Dict, Mapping, Optional

CHUNK = 8 * 1024 * 1024
LEGACY_OFFSET, LEGACY_LENGTH = 0x100000, 0x10000
CACHE_VERSION = 1


def cache_path(environ: Mapping[str, str]) -> str:
    base = environ.get("LDM_DIAG_CACHE_DIR")
    if not base:
        xdg = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(xdg, "ldm-diagnostics")
    return os.path.join(base, "hashes.json")


def cache_key(path: str, st: os.stat_result) -> Dict[str, Any]:
    return {"path": os.path.realpath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino,
            "device": st.st_dev}


def _load_cache(file: str) -> Dict[str, Any]:
    try:
        with open(file, "r", encoding="utf-8") as fh:
            data = json.load(fh)
        if isinstance(data, dict) and data.get("version") == CACHE_VERSION and isinstance(data.get("entries"), dict):
            return data
    except (OSError, ValueError):
        pass
    return {"version": CACHE_VERSION, "entries": {}}


def _save_cache(file: str, data: Dict[str, Any]) -> Optional[str]:
    try:
        os.makedirs(os.path.dirname(file), exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".hashes.", suffix=".tmp", dir=os.path.dirname(file))
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
        os.replace(tmp, file)
    except OSError as exc:
        return f"{exc.strerror or exc}"
    return None


def legacy_hash(fh) -> str:
    fh.seek(LEGACY_OFFSET)
    return hashlib.sha256(fh.read(LEGACY_LENGTH)).hexdigest()[:8]


def sha256_file(fh, size: int, progress: Optional[Callable[[int, int, str], None]] = None) -> str:
    digest = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    done = 0
    fh.seek(0)
    while True:
        n = fh.readinto(buf)
        if not n:
            break
        digest.update(view[:n])
        done += n
        if progress is not None:
            progress(done, size, "sha256")
    return digest.hexdigest()


def hash_file(path: str, fh, st: os.stat_result, environ: Mapping[str, str],
              progress: Optional[Callable[[int, int, str], None]] = None, use_cache: bool = True) -> Dict[str, Any]:
    start = time.perf_counter()
    key = cache_key(path, st)
    file = cache_path(environ)
    facts: Dict[str, Any] = {"cache_file": file, "cached": False}
    data = _load_cache(file) if use_cache else {"version": CACHE_VERSION, "entries": {}}
    entry = data["entries"].get(key["path"])
    if entry and all(entry.get(k) == v for k, v in key.items()) and entry.get("sha256"):
        facts.update(sha256=entry["sha256"], autov2=entry["sha256"][:10], legacy=entry.get("legacy"), cached=True)
        facts["seconds"] = round(time.perf_counter() - start, 4)
        return facts
    sha = sha256_file(fh, st.st_size, progress)
    legacy = legacy_hash(fh)
    facts.update(sha256=sha, autov2=sha[:10], legacy=legacy)
    if use_cache:
        entry = dict(key, sha256=sha, legacy=legacy, hashed_at=int(time.time()))
        data["entries"][key["path"]] = entry
        error = _save_cache(file, data)
        if error:
            facts["cache_error"] = error
    facts["seconds"] = round(time.perf_counter() - start, 3)
    return facts
