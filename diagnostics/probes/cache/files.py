"""Does each needed file resolve from the cache offline, the way the installed loader looks it up?

File lookups use huggingface_hub's `try_to_load_from_cache` when the library is importable, and the
documented layout (refs/ -> snapshots/<commit>/<file> -> ../../blobs/<etag>) otherwise; the flat
cache of transformers < 4.22 is looked up by its URL hash. Nothing here downloads or writes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional


def hub_cache_library():
    """huggingface_hub's cache functions, or None when the library is absent or too old."""
    try:
        from huggingface_hub import scan_cache_dir, try_to_load_from_cache
        from huggingface_hub.file_download import _CACHED_NO_EXIST
    except Exception:
        return None
    return try_to_load_from_cache, scan_cache_dir, _CACHED_NO_EXIST


def repo_folder(repo_id: str) -> str:
    return "models--" + repo_id.replace("/", "--")


def _builtin_try_to_load(cache_dir: str, repo_id: str, filename: str) -> Any:
    """The documented hub layout lookup (huggingface_hub.try_to_load_from_cache), for when the
    library is not installed. Returns a path, "no-exist" or None."""
    repo = os.path.join(cache_dir, repo_folder(repo_id))
    if not os.path.isdir(repo):
        return None
    revision = "main"
    ref = os.path.join(repo, "refs", revision)
    if os.path.isfile(ref):
        with open(ref, encoding="utf-8", errors="replace") as handle:
            revision = handle.read().strip()
    if os.path.isfile(os.path.join(repo, ".no_exist", revision, filename)):
        return "no-exist"
    snapshot_file = os.path.join(repo, "snapshots", revision, filename)
    return snapshot_file if os.path.isfile(snapshot_file) else None


def resolve_hub_file(cache_dir: str, repo_id: str, filename: str, lib=None) -> Dict[str, Any]:
    """Whether `filename` of `repo_id` (revision main) resolves from the hub-layout cache offline."""
    found: Any = None
    tool = "builtin"
    if lib is not None:
        try_to_load, _, no_exist = lib
        try:
            found = try_to_load(repo_id, filename, cache_dir=cache_dir)
            tool = "huggingface_hub.try_to_load_from_cache"
            if found is no_exist:
                found = "no-exist"
        except Exception:
            found = _builtin_try_to_load(cache_dir, repo_id, filename)
    else:
        found = _builtin_try_to_load(cache_dir, repo_id, filename)
    if found == "no-exist":
        return {"state": "known-absent", "path": None, "tool": tool}
    if isinstance(found, str):
        return {"state": "cached", "path": found, "size": file_size(found), "tool": tool}
    # Not resolvable: is there a snapshot entry whose blob is gone (a broken symlink)?
    repo = os.path.join(cache_dir, repo_folder(repo_id))
    snapshots = os.path.join(repo, "snapshots")
    broken = []
    if os.path.isdir(snapshots):
        for commit in list_dir(snapshots):
            entry = os.path.join(snapshots, commit, filename)
            if os.path.islink(entry) and not os.path.exists(entry):
                broken.append(entry)
    if broken:
        return {"state": "broken-link", "path": broken[0], "tool": tool}
    return {"state": "missing", "path": None, "tool": tool}


def legacy_filename(url: str) -> str:
    """transformers < 4.22 `url_to_filename` without the etag part."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


def resolve_legacy_file(cache_dir: str, endpoint: str, repo_id: str, filename: str,
                        listing: Optional[List[str]] = None) -> Dict[str, Any]:
    """transformers < 4.22 offline lookup: `<sha256(url)>.*` in the flat cache, where the URL includes
    the endpoint, so a file cached through another endpoint or mirror is invisible (K01 d)."""
    listing = list_dir(cache_dir) if listing is None else listing
    url = f"{endpoint}/{repo_id}/resolve/main/{filename}"
    stem = legacy_filename(url)
    matches = [name for name in listing if (name == stem or name.startswith(stem + "."))
               and not name.endswith((".json", ".lock", ".incomplete"))]
    if matches:
        path = os.path.join(cache_dir, sorted(matches)[-1])
        return {"state": "cached", "path": path, "size": file_size(path), "tool": "legacy url hash", "url": url}
    suffix = f"/{repo_id}/resolve/main/{filename}"
    for name in listing:
        if not name.endswith(".json") or len(name) < 64:
            continue
        try:
            with open(os.path.join(cache_dir, name), encoding="utf-8") as handle:
                meta = json.load(handle)
        except (OSError, ValueError):
            continue
        other = meta.get("url") if isinstance(meta, dict) else None
        if isinstance(other, str) and other.endswith(suffix) and other != url:
            return {"state": "other-endpoint", "path": os.path.join(cache_dir, name[:-5]), "tool": "legacy url hash",
                    "url": url, "cached_url": other, "cached_endpoint": other[: -len(suffix)]}
    return {"state": "missing", "path": None, "tool": "legacy url hash", "url": url}


def resolve_local(path: str, filename: Optional[str]) -> Dict[str, Any]:
    target = Path(path) / filename if filename else Path(path)
    if target.is_file():
        return {"state": "cached", "path": str(target), "size": file_size(str(target)), "tool": "local path"}
    if target.is_symlink():
        return {"state": "broken-link", "path": str(target), "tool": "local path"}
    return {"state": "missing", "path": str(target), "tool": "local path"}


def validate_file(path: str, name: str) -> Optional[str]:
    """Why a resolved small file cannot be what the loader expects (truncated/HTML), or None."""
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        return f"unreadable: {exc}"
    if size == 0:
        return "empty file (0 bytes)"
    if size > 64 * 1024 * 1024:
        return None  # weights: structure is the checkpoint checks' business
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        return f"unreadable: {exc}"
    # A truncated file can end inside a multi-byte character: decode leniently, let JSON judge.
    text = data.decode("utf-8", errors="replace")
    if name.endswith(".json"):
        try:
            json.loads(text)
        except ValueError as exc:
            return f"not valid JSON, truncated or not a JSON file ({exc})"
    elif name in ("merges.txt", "vocab.txt") and text.lstrip().startswith("<"):
        return "an HTML page, not a tokenizer file"
    return None


def resolve_model(model: Dict[str, Any], locations: Dict[str, Any], lib=None) -> Dict[str, Any]:
    """Per file group: satisfied offline or not, with the file states behind it."""
    kind = model["kind"]
    if kind == "local":
        where, layout = model["path"], "local"
    elif kind == "hub":
        location = locations["transformers"] if model["cache_user"] == "transformers" else locations["hub"]
        where, layout = location["path"], location["layout"]
    else:
        return {"layout": None, "where": None, "groups": [], "complete": None, "missing": [], "corrupt": [],
                "files": {}}
    listing = list_dir(where) if layout == "legacy" else None
    files: Dict[str, Dict[str, Any]] = {}
    groups = []
    local_file = kind == "local" and os.path.isfile(where or "")
    for group in model["groups"] or ([{"purpose": "weights file", "names": [None], "required": True}]
                                     if kind == "local" else []):
        resolved = None
        for name in group["names"]:
            if local_file or name is None:
                state = resolve_local(where, None)
                name = name or os.path.basename(where)
            elif layout == "local":
                state = resolve_local(where, name)
            elif layout == "legacy":
                state = resolve_legacy_file(where, locations["endpoint"], model["repo_id"], name, listing)
            else:
                state = resolve_hub_file(where, model["repo_id"], name, lib)
            files[name] = _validated(state, name)
            if files[name]["state"] == "cached" and resolved is None:
                resolved = name
        groups.append({"purpose": group["purpose"], "names": [n for n in group["names"] if n],
                       "required": group["required"], "satisfied": resolved is not None, "resolved": resolved})
    missing = [g["names"][0] if g["names"] else "" for g in groups if g["required"] and not g["satisfied"]]
    corrupt = [name for name, state in files.items() if state["state"] == "corrupt"]
    return {"layout": layout, "where": where, "groups": groups, "files": files, "missing": missing,
            "corrupt": corrupt, "complete": not missing and not corrupt}


def _validated(state: Dict[str, Any], name: str) -> Dict[str, Any]:
    """A cached file that cannot be what the loader expects is `corrupt`, with the problem."""
    if state["state"] == "cached":
        problem = validate_file(state["path"], name)
        if problem:
            return dict(state, state="corrupt", problem=problem)
    return state


def file_size(path: str) -> Optional[int]:
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def list_dir(path: str) -> List[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []
