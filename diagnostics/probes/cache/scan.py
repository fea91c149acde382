"""The state of the cache as a whole: structural problems and interrupted downloads (`scan_cache`),
whether a download can write (`writable`, `disk_free`), and directories that shadow a repo id.

The one write is an empty temporary file that proves the cache directory accepts writes, removed
at once.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

from .files import list_dir, file_size


def scan_cache(cache_dir: str, layout: str, lib=None) -> Dict[str, Any]:
    """Structural problems: corrupted repos (broken symlinks, refs to missing commits) and
    interrupted downloads (`*.incomplete`)."""
    facts: Dict[str, Any] = {"path": cache_dir, "exists": os.path.isdir(cache_dir), "tool": None, "repos": [],
                             "warnings": [], "incomplete": [], "error": None}
    if not facts["exists"]:
        return facts
    if layout == "legacy":
        facts["tool"] = "builtin (legacy flat cache)"
        for name in list_dir(cache_dir):
            if name.endswith(".incomplete") or name.startswith("tmp"):
                path = os.path.join(cache_dir, name)
                facts["incomplete"].append({"repo": None, "path": path, "size": file_size(path)})
        return facts
    if lib is not None:
        _, scan_cache_dir, _ = lib
        try:
            info = scan_cache_dir(cache_dir)
        except Exception as exc:
            facts["error"] = f"{type(exc).__name__}: {exc}"
        else:
            facts["tool"] = "huggingface_hub.scan_cache_dir"
            facts["repos"] = sorted(r.repo_id for r in info.repos)
            facts["warnings"] = [str(w) for w in info.warnings]
            for partial in getattr(info, "incomplete_files", ()) or ():
                path = str(getattr(partial, "file_path", getattr(partial, "path", partial)))
                facts["incomplete"].append({"repo": _repo_of(path, cache_dir), "path": path,
                                            "size": getattr(partial, "size_on_disk", file_size(path))})
            if not hasattr(info, "incomplete_files"):
                facts["incomplete"] = _find_incomplete(cache_dir)
            return facts
    facts["tool"] = "builtin (hub layout)"
    facts["incomplete"] = _find_incomplete(cache_dir)
    for folder in list_dir(cache_dir):
        if not folder.startswith(("models--", "datasets--", "spaces--")):
            continue
        repo = os.path.join(cache_dir, folder)
        snapshots = os.path.join(repo, "snapshots")
        commits = set(list_dir(snapshots))
        for dirpath, _, names in os.walk(snapshots):
            for name in names:
                entry = os.path.join(dirpath, name)
                if os.path.islink(entry) and not os.path.exists(entry):
                    facts["warnings"].append(f"Blob missing (broken symlink): {entry}")
        refs = os.path.join(repo, "refs")
        for ref in list_dir(refs):
            try:
                with open(os.path.join(refs, ref), encoding="utf-8") as handle:
                    commit = handle.read().strip()
            except OSError:
                continue
            if commit not in commits:
                facts["warnings"].append(f"Reference(s) refer to missing commit hashes: {ref} -> {commit} ({repo})")
        facts["repos"].append(folder.split("--", 1)[1].replace("--", "/"))
    return facts


def _repo_of(path: str, cache_dir: str) -> Optional[str]:
    rel = os.path.relpath(path, cache_dir).split(os.sep)
    if rel and rel[0].startswith(("models--", "datasets--", "spaces--")):
        return rel[0].split("--", 1)[1].replace("--", "/")
    return None


def _find_incomplete(cache_dir: str) -> List[Dict[str, Any]]:
    found = []
    for folder in list_dir(cache_dir):
        blobs = os.path.join(cache_dir, folder, "blobs")
        for name in list_dir(blobs):
            if name.endswith(".incomplete"):
                path = os.path.join(blobs, name)
                found.append({"repo": _repo_of(path, cache_dir), "path": path, "size": file_size(path)})
    return found


def nearest_existing(path: str) -> str:
    candidate = Path(path).absolute()
    while not candidate.exists() and candidate != candidate.parent:
        candidate = candidate.parent
    return str(candidate)


def writable(path: str) -> Dict[str, Any]:
    """Can a download write under `path`? Checks the nearest existing directory: permission bits,
    a read-only mount, and a real create-and-delete (root ignores mode bits, not read-only mounts)."""
    existing = nearest_existing(path)
    facts: Dict[str, Any] = {"path": path, "exists": os.path.isdir(path), "checked": existing,
                             "writable": False, "read_only_fs": False, "error": None}
    if not os.path.isdir(existing):
        facts["error"] = f"{existing} is not a directory"
        return facts
    try:
        facts["read_only_fs"] = bool(os.statvfs(existing).f_flag & getattr(os, "ST_RDONLY", 1))
    except (OSError, AttributeError):
        pass
    if not os.access(existing, os.W_OK | os.X_OK) or facts["read_only_fs"]:
        facts["error"] = "read-only file system" if facts["read_only_fs"] else "permission denied"
        return facts
    try:
        fd, tmp = tempfile.mkstemp(prefix=".ldm-diagnostics-", dir=existing)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        facts["error"] = f"{type(exc).__name__}: {exc.strerror or exc}"
        return facts
    facts["writable"] = True
    return facts


def disk_free(path: str) -> Optional[int]:
    import shutil

    try:
        return shutil.disk_usage(nearest_existing(path)).free
    except OSError:
        return None


def shadow_dirs(models: List[Dict[str, Any]], cwd: Path, code_root: Optional[str]) -> List[Dict[str, Any]]:
    """Directories named like a needed repo id, relative to the working directory or the code root:
    transformers treats the id as a local path when such a directory exists (the seed's hint)."""
    from ..needed_models import is_repo_id

    bases = [("working directory", Path(cwd))]
    if code_root and Path(code_root).resolve() != Path(cwd).resolve():
        bases.append(("code root", Path(code_root)))
    found = []
    for model in models:
        ref = model["ref"]
        if not is_repo_id(ref):
            continue
        for label, base in bases:
            path = base / ref
            if not path.exists():
                continue
            names = [n for g in model["groups"] for n in g["names"]]
            present = [n for n in names if (path / n).is_file()]
            required_ok = all(any((path / n).is_file() for n in g["names"]) for g in model["groups"] if g["required"])
            found.append({"model": ref, "base": label, "base_path": str(base), "path": str(path),
                          "is_dir": path.is_dir(), "present": present, "complete": path.is_dir() and required_ok,
                          "missing": [g["names"][0] for g in model["groups"] if g["required"]
                                      and not any((path / n).is_file() for n in g["names"])]})
    return found
