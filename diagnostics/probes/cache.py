"""The Hugging Face cache as the installed loaders will see it: where it is, what it holds.

Where the cache is depends on the environment *and* on the installed versions (knowledge base 1.4,
1.5, K01 g/h): transformers 4.19-4.21 read a flat legacy cache (`$HF_HOME/transformers`, files named
`sha256(url)`), 4.22-4.35 honour `TRANSFORMERS_CACHE` and `HUGGINGFACE_HUB_CACHE` but not
`HF_HUB_CACHE`, 4.36-4.x add the hub's own chain behind `TRANSFORMERS_CACHE`, and 5.x read only
huggingface_hub's constants. The locations are computed from the injected environment (so a
report can be made for another environment, and tests are hermetic), then confirmed with
huggingface_hub's own `constants` in a child process that gets the same environment.

File lookups use huggingface_hub's `try_to_load_from_cache` and `scan_cache_dir` when the library is
importable, and the documented layout (refs/ -> snapshots/<commit>/<file> -> ../../blobs/<etag>)
otherwise. Nothing here downloads; the one write is an empty temporary file that proves the cache
directory accepts writes, removed at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ..util import version_at_least

TRUE_VALUES = {"1", "ON", "YES", "TRUE"}  # huggingface_hub/transformers ENV_VARS_TRUE_VALUES
DEFAULT_ENDPOINT = "https://huggingface.co"
STAGING_ENDPOINT = "https://hub-ci.huggingface.co"
CONSTANTS_TIMEOUT = 15.0

# Variables that decide cache locations, offline mode and the endpoint.
CACHE_VARS = (
    "HF_HOME", "XDG_CACHE_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE",
    "PYTORCH_TRANSFORMERS_CACHE", "PYTORCH_PRETRAINED_BERT_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
    "HF_ENDPOINT", "HUGGINGFACE_CO_RESOLVE_ENDPOINT", "HUGGINGFACE_CO_STAGING",
)


# -- reading the injected environment, never os.environ ------------ --------------------

def is_true(value: Optional[str]) -> bool:
    return value is not None and value.upper() in TRUE_VALUES


def expand(path: str, environ: Mapping[str, str]) -> str:
    """os.path.expanduser + expandvars against `environ` (not the harness's own environment)."""
    if path.startswith("~"):
        home = environ.get("HOME") or os.path.expanduser("~")
        rest = path[1:]
        if not rest or rest[0] in "/\\":
            path = home + rest

    def var(match) -> str:
        name = match.group(1) or match.group(2)
        return environ.get(name, match.group(0))

    return re.sub(r"\$(?:(\w+)|\{([^}]*)\})", var, path)


def hf_home(environ: Mapping[str, str]) -> Tuple[str, str]:
    """(HF_HOME, the variable that decided it), as huggingface_hub.constants computes it."""
    if environ.get("HF_HOME"):
        return expand(environ["HF_HOME"], environ), "HF_HOME"
    if environ.get("XDG_CACHE_HOME"):
        return expand(os.path.join(environ["XDG_CACHE_HOME"], "huggingface"), environ), "XDG_CACHE_HOME"
    return expand(os.path.join("~", ".cache", "huggingface"), environ), "default (~/.cache/huggingface)"


def hub_cache(environ: Mapping[str, str]) -> Dict[str, str]:
    """huggingface_hub's HF_HUB_CACHE: HF_HUB_CACHE > HUGGINGFACE_HUB_CACHE > $HF_HOME/hub."""
    home, home_by = hf_home(environ)
    if environ.get("HF_HUB_CACHE"):
        return {"path": expand(environ["HF_HUB_CACHE"], environ), "decided_by": "HF_HUB_CACHE", "hf_home": home}
    if environ.get("HUGGINGFACE_HUB_CACHE"):
        return {"path": expand(environ["HUGGINGFACE_HUB_CACHE"], environ),
                "decided_by": "HUGGINGFACE_HUB_CACHE (legacy name)", "hf_home": home}
    return {"path": os.path.join(home, "hub"), "decided_by": f"{home_by} + /hub", "hf_home": home}


def _first_set(environ: Mapping[str, str], names) -> Optional[str]:
    for name in names:
        if environ.get(name):
            return name
    return None


def transformers_cache(environ: Mapping[str, str], transformers_version: Optional[str]) -> Dict[str, Any]:
    """The directory `from_pretrained` of the installed transformers reads, its layout, and the
    cache variables that are set but ignored by this version."""
    hub = hub_cache(environ)
    home, home_by = hf_home(environ)
    set_vars = [v for v in ("TRANSFORMERS_CACHE", "PYTORCH_TRANSFORMERS_CACHE", "PYTORCH_PRETRAINED_BERT_CACHE",
                            "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE") if environ.get(v)]
    tv = transformers_version
    own = ("TRANSFORMERS_CACHE", "PYTORCH_TRANSFORMERS_CACHE", "PYTORCH_PRETRAINED_BERT_CACHE")
    if tv and version_at_least(tv, "4.22") is False:
        layout, rule = "legacy", "transformers < 4.22: flat cache, TRANSFORMERS_CACHE > PYTORCH_TRANSFORMERS_CACHE > " \
                                 "PYTORCH_PRETRAINED_BERT_CACHE > $HF_HOME/transformers"
        chosen = _first_set(environ, own)
        path = expand(environ[chosen], environ) if chosen else os.path.join(home, "transformers")
        decided = chosen or f"{home_by} + /transformers"
        honoured = set(own)
    elif tv and version_at_least(tv, "4.36") is False:
        layout, rule = "hub", "transformers 4.22-4.35: TRANSFORMERS_CACHE > HUGGINGFACE_HUB_CACHE > " \
                              "PYTORCH_TRANSFORMERS_CACHE > PYTORCH_PRETRAINED_BERT_CACHE > $HF_HOME/hub"
        order = ("TRANSFORMERS_CACHE", "HUGGINGFACE_HUB_CACHE", "PYTORCH_TRANSFORMERS_CACHE",
                 "PYTORCH_PRETRAINED_BERT_CACHE")
        chosen = _first_set(environ, order)
        path = expand(environ[chosen], environ) if chosen else os.path.join(home, "hub")
        decided = chosen or f"{home_by} + /hub"
        honoured = set(order)
    elif tv and version_at_least(tv, "5") is False:
        layout, rule = "hub", "transformers 4.36-4.x: TRANSFORMERS_CACHE > PYTORCH_TRANSFORMERS_CACHE > " \
                              "PYTORCH_PRETRAINED_BERT_CACHE > HF_HUB_CACHE > HUGGINGFACE_HUB_CACHE > $HF_HOME/hub"
        chosen = _first_set(environ, own)
        path = expand(environ[chosen], environ) if chosen else hub["path"]
        decided = chosen or hub["decided_by"]
        honoured = set(own) | {"HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"}
    else:
        layout = "hub"
        rule = ("transformers 5.x: huggingface_hub's HF_HUB_CACHE > HUGGINGFACE_HUB_CACHE > $HF_HOME/hub; "
                "TRANSFORMERS_CACHE is no longer read") if tv else "huggingface_hub's HF_HUB_CACHE chain"
        path, decided = hub["path"], hub["decided_by"]
        honoured = {"HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"}
    ignored = [v for v in set_vars if v not in honoured]
    # A variable lower in the chain than the one that decided is shadowed, not ignored.
    return {"path": path, "decided_by": decided, "layout": layout, "rule": rule, "ignored": sorted(ignored),
            "set": set_vars}


def offline_state(environ: Mapping[str, str], transformers_version: Optional[str]) -> Dict[str, Any]:
    """Whether the loaders will stay off the network, per installed version (knowledge base 1.5)."""
    hub_raw, tr_raw = environ.get("HF_HUB_OFFLINE"), environ.get("TRANSFORMERS_OFFLINE")
    # huggingface_hub: _is_true(HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE): a non-empty HF_HUB_OFFLINE=0
    # short-circuits the `or`, so TRANSFORMERS_OFFLINE=1 is then ignored by the hub.
    hub_offline = is_true(hub_raw or tr_raw)
    tv = transformers_version
    notes: List[str] = []
    if tv and version_at_least(tv, "4.22") is False:
        effective = is_true(tr_raw)
        honoured = ["TRANSFORMERS_OFFLINE"]
        if is_true(hub_raw) and not effective:
            notes.append(f"HF_HUB_OFFLINE is set but transformers {tv} reads only TRANSFORMERS_OFFLINE")
    elif tv and version_at_least(tv, "5") is False:
        effective = is_true(tr_raw) or hub_offline
        honoured = ["TRANSFORMERS_OFFLINE", "HF_HUB_OFFLINE"]
        if hub_raw and not is_true(hub_raw) and is_true(tr_raw):
            notes.append(f"HF_HUB_OFFLINE={hub_raw} makes huggingface_hub ignore TRANSFORMERS_OFFLINE=1; "
                         f"transformers {tv} itself is offline")
    else:
        effective = hub_offline
        honoured = ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE (only when HF_HUB_OFFLINE is unset or empty)"]
        if hub_raw and not is_true(hub_raw) and is_true(tr_raw):
            notes.append(f"HF_HUB_OFFLINE={hub_raw} is set, so TRANSFORMERS_OFFLINE=1 is ignored: "
                         "huggingface_hub reads HF_HUB_OFFLINE first")
    return {"HF_HUB_OFFLINE": hub_raw, "TRANSFORMERS_OFFLINE": tr_raw, "hub_offline": hub_offline,
            "effective": effective, "honoured": honoured, "notes": notes}


def endpoint_for_transformers(environ: Mapping[str, str], transformers_version: Optional[str]) -> str:
    """The endpoint in the URLs the installed transformers builds (the legacy cache keys on it)."""
    staging = is_true(environ.get("HUGGINGFACE_CO_STAGING"))
    tv = transformers_version
    if tv and version_at_least(tv, "4.22") is False:
        default = "https://moon-staging.huggingface.co" if staging else DEFAULT_ENDPOINT
        base = environ.get("HUGGINGFACE_CO_RESOLVE_ENDPOINT") or default
        return environ.get("HF_ENDPOINT", base)  # not stripped of a trailing slash in 4.19
    if staging:
        return STAGING_ENDPOINT
    return (environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


# -- huggingface_hub's own answer ----------------------------------------------------------------

CONSTANTS_SCRIPT = r"""
import json, sys
try:
    from huggingface_hub import constants as c
except Exception as exc:
    sys.stdout.write(json.dumps({"error": "%s: %s" % (type(exc).__name__, exc)}))
else:
    sys.stdout.write(json.dumps({"HF_HOME": c.HF_HOME, "HF_HUB_CACHE": c.HF_HUB_CACHE, "ENDPOINT": c.ENDPOINT,
                                 "HF_HUB_OFFLINE": bool(c.HF_HUB_OFFLINE), "HF_TOKEN_PATH": c.HF_TOKEN_PATH}))
"""


def hub_constants(ctx) -> Dict[str, Any]:
    """huggingface_hub.constants as a fresh process with this context's environment computes them
    (the library reads them at import time, so asking the harness's own import would be wrong)."""
    from .environment import distribution

    if distribution(("huggingface-hub", "huggingface_hub")) is None:
        return {"available": False, "reason": "huggingface_hub is not installed"}
    result = ctx.runner([ctx.python, "-c", CONSTANTS_SCRIPT], CONSTANTS_TIMEOUT, dict(ctx.environ))
    if result.returncode != 0:
        return {"available": False, "reason": result.error or (result.stderr or "")[-500:]}
    try:
        data = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"available": False, "reason": "unreadable output"}
    if "error" in data:
        return {"available": False, "reason": data["error"]}
    data["available"] = True
    return data


# -- resolving files -----------------------------------------------------------------------------

def _hub_lib():
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
        with open(ref, encoding="utf-8", errors="replace") as fh:
            revision = fh.read().strip()
    if os.path.isfile(os.path.join(repo, ".no_exist", revision, filename)):
        return "no-exist"
    snap = os.path.join(repo, "snapshots", revision, filename)
    return snap if os.path.isfile(snap) else None


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
        return {"state": "cached", "path": found, "size": _size(found), "tool": tool}
    # Not resolvable: is there a snapshot entry whose blob is gone (a broken symlink)?
    repo = os.path.join(cache_dir, repo_folder(repo_id))
    snapshots = os.path.join(repo, "snapshots")
    broken = []
    if os.path.isdir(snapshots):
        for commit in _listdir(snapshots):
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
    listing = _listdir(cache_dir) if listing is None else listing
    url = f"{endpoint}/{repo_id}/resolve/main/{filename}"
    stem = legacy_filename(url)
    matches = [f for f in listing if (f == stem or f.startswith(stem + "."))
               and not f.endswith((".json", ".lock", ".incomplete"))]
    if matches:
        path = os.path.join(cache_dir, sorted(matches)[-1])
        return {"state": "cached", "path": path, "size": _size(path), "tool": "legacy url hash", "url": url}
    suffix = f"/{repo_id}/resolve/main/{filename}"
    for name in listing:
        if not name.endswith(".json") or len(name) < 64:
            continue
        try:
            with open(os.path.join(cache_dir, name), encoding="utf-8") as fh:
                meta = json.load(fh)
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
        return {"state": "cached", "path": str(target), "size": _size(str(target)), "tool": "local path"}
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
        with open(path, "rb") as fh:
            data = fh.read()
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


def _size(path: str) -> Optional[int]:
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def _listdir(path: str) -> List[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def resolve_model(model: Dict[str, Any], locations: Dict[str, Any], lib=None) -> Dict[str, Any]:
    """Per file group: satisfied offline or not, with the file states behind it."""
    kind = model["kind"]
    if kind == "local":
        where, layout = model["path"], "local"
    elif kind == "hub":
        loc = locations["transformers"] if model["cache_user"] == "transformers" else locations["hub"]
        where, layout = loc["path"], loc["layout"]
    else:
        return {"layout": None, "where": None, "groups": [], "complete": None, "missing": [], "corrupt": [],
                "files": {}}
    listing = _listdir(where) if layout == "legacy" else None
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
            if state["state"] == "cached":
                problem = validate_file(state["path"], name)
                if problem:
                    state = dict(state, state="corrupt", problem=problem)
            files[name] = state
            if state["state"] == "cached" and resolved is None:
                resolved = name
        groups.append({"purpose": group["purpose"], "names": [n for n in group["names"] if n],
                       "required": group["required"], "satisfied": resolved is not None, "resolved": resolved})
    missing = [g["names"][0] if g["names"] else "" for g in groups if g["required"] and not g["satisfied"]]
    corrupt = [n for n, s in files.items() if s["state"] == "corrupt"]
    return {"layout": layout, "where": where, "groups": groups, "files": files, "missing": missing,
            "corrupt": corrupt, "complete": not missing and not corrupt}


# -- scanning, writability, space, shadowing ------------------------------------------------------

def scan_cache(cache_dir: str, layout: str, lib=None) -> Dict[str, Any]:
    """Structural problems: corrupted repos (broken symlinks, refs to missing commits) and
    interrupted downloads (`*.incomplete`)."""
    facts: Dict[str, Any] = {"path": cache_dir, "exists": os.path.isdir(cache_dir), "tool": None, "repos": [],
                             "warnings": [], "incomplete": [], "error": None}
    if not facts["exists"]:
        return facts
    if layout == "legacy":
        facts["tool"] = "builtin (legacy flat cache)"
        for name in _listdir(cache_dir):
            if name.endswith(".incomplete") or name.startswith("tmp"):
                path = os.path.join(cache_dir, name)
                facts["incomplete"].append({"repo": None, "path": path, "size": _size(path)})
        return facts
    if lib is not None:
        _, scan, _ = lib
        try:
            info = scan(cache_dir)
        except Exception as exc:
            facts["error"] = f"{type(exc).__name__}: {exc}"
        else:
            facts["tool"] = "huggingface_hub.scan_cache_dir"
            facts["repos"] = sorted(r.repo_id for r in info.repos)
            facts["warnings"] = [str(w) for w in info.warnings]
            for inc in getattr(info, "incomplete_files", ()) or ():
                path = str(getattr(inc, "file_path", getattr(inc, "path", inc)))
                facts["incomplete"].append({"repo": _repo_of(path, cache_dir), "path": path,
                                            "size": getattr(inc, "size_on_disk", _size(path))})
            if not hasattr(info, "incomplete_files"):
                facts["incomplete"] = _find_incomplete(cache_dir)
            return facts
    facts["tool"] = "builtin (hub layout)"
    facts["incomplete"] = _find_incomplete(cache_dir)
    for folder in _listdir(cache_dir):
        if not folder.startswith(("models--", "datasets--", "spaces--")):
            continue
        repo = os.path.join(cache_dir, folder)
        snapshots = os.path.join(repo, "snapshots")
        commits = set(_listdir(snapshots))
        for dirpath, _, names in os.walk(snapshots):
            for name in names:
                entry = os.path.join(dirpath, name)
                if os.path.islink(entry) and not os.path.exists(entry):
                    facts["warnings"].append(f"Blob missing (broken symlink): {entry}")
        refs = os.path.join(repo, "refs")
        for ref in _listdir(refs):
            try:
                with open(os.path.join(refs, ref), encoding="utf-8") as fh:
                    commit = fh.read().strip()
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
    for folder in _listdir(cache_dir):
        blobs = os.path.join(cache_dir, folder, "blobs")
        for name in _listdir(blobs):
            if name.endswith(".incomplete"):
                path = os.path.join(blobs, name)
                found.append({"repo": _repo_of(path, cache_dir), "path": path, "size": _size(path)})
    return found


def nearest_existing(path: str) -> str:
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return str(p)


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
    from .needed_models import is_repo_id

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


def cache_locations(environ: Mapping[str, str], versions: Mapping[str, Optional[str]]) -> Dict[str, Any]:
    tv = versions.get("transformers")
    hub = hub_cache(environ)
    tr = transformers_cache(environ, tv)
    return {
        "hub": {"path": hub["path"], "decided_by": hub["decided_by"], "layout": "hub", "hf_home": hub["hf_home"]},
        "transformers": tr,
        "endpoint": endpoint_for_transformers(environ, tv),
        "transformers_version": tv,
        "huggingface_hub_version": versions.get("huggingface_hub"),
        "set_vars": {k: environ[k] for k in CACHE_VARS if environ.get(k) and k not in ("HF_ENDPOINT",)},
    }


def probe_cache(ctx) -> Dict[str, Any]:
    """Every cache fact for one run (memoised as "cache")."""
    from .environment import probe_environment
    from .needed_models import probe_needed_models

    versions = ctx.fact("environment", probe_environment)["packages"]
    needed = ctx.fact("needed_models", probe_needed_models)
    environ = ctx.environ
    locations = cache_locations(environ, versions)
    constants = hub_constants(ctx)
    if constants.get("available"):
        # The library's own answer wins for the hub chain; a mismatch is reported, not hidden.
        locations["hub"]["constants"] = {"HF_HOME": constants["HF_HOME"], "HF_HUB_CACHE": constants["HF_HUB_CACHE"]}
        if os.path.normpath(constants["HF_HUB_CACHE"]) != os.path.normpath(locations["hub"]["path"]):
            locations["hub"]["mismatch"] = locations["hub"]["path"]
            locations["hub"]["path"] = constants["HF_HUB_CACHE"]
        locations["hub"]["source"] = "huggingface_hub.constants"
        if locations["transformers"]["layout"] == "hub" and locations["transformers"]["decided_by"] == \
                locations["hub"]["decided_by"]:
            locations["transformers"]["path"] = locations["hub"]["path"]
    else:
        locations["hub"]["source"] = "computed from the environment (" + constants.get("reason", "") + ")"
    lib = _hub_lib()
    models = []
    for model in needed["models"]:
        models.append({"ref": model["ref"], "resolution": resolve_model(model, locations, lib)})
    tr_path = locations["transformers"]["path"]
    paths = {tr_path, locations["hub"]["path"]} if any(m["cache_user"] != "transformers"
                                                       for m in needed["models"]) else {tr_path}
    return {
        "locations": locations,
        "offline": offline_state(environ, versions.get("transformers")),
        "models": models,
        "scan": scan_cache(tr_path, locations["transformers"]["layout"], lib),
        "writable": {p: writable(p) for p in sorted(paths)},
        "disk_free": {p: disk_free(p) for p in sorted(paths)},
        "shadow": shadow_dirs(needed["models"], ctx.cwd, ctx.options.code_root),
        "huggingface_hub_importable": lib is not None,
    }
