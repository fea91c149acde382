"""Where the staged files go, and whether a complete set is already there.

- `--hf-cache`, hub layout: `blobs/<etag>`, `snapshots/<rev>/<name>` as relative links to them (or
  copies where links are not allowed), `refs/main` written last so an interrupted run is never visible;
- `--hf-cache`, the flat legacy cache of transformers < 4.22: files named by the sha256 of their URL
  and etag, with `.json` sidecars;
- `--clip-dir DIR` (older name `--out`): a plain directory.

A complete existing entry is never touched and existing files are never overwritten. The snapshot
carries a README (the marker) saying where its files came from; its revision is derived from the
content, not a Hub commit, so a later online `hf download` supersedes it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional

from ...clip_files import LICENSE_FILE
from .tower import REPO_ID, TextTower
from .writers import StagedFile, atomic_write, tmp_path, unlink_quietly

if TYPE_CHECKING:
    from ...probes.needed_models import NeededModel
    from .provisioning import ProvisionResult

MARKER = "README.md"
MARKER_LINE = "provisioned-by: ldm-diagnostics provision-clip"


def repo_dir(cache_dir: str, repo_id: str = REPO_ID) -> str:
    from ...probes.cache import repo_folder

    return os.path.join(cache_dir, repo_folder(repo_id))


def is_ours(snapshot_dir: str) -> bool:
    """Whether a snapshot (or --out directory) was written by this remedy: its README says so."""
    try:
        with open(os.path.join(snapshot_dir, MARKER), encoding="utf-8", errors="replace") as fh:
            return MARKER_LINE in fh.read(4096)
    except OSError:
        return False


def _legacy_is_ours(path: str) -> bool:
    try:
        with open(path + ".json", encoding="utf-8") as fh:
            return json.load(fh).get("provisioned_by") == MARKER_LINE
    except (OSError, ValueError, AttributeError):
        return False


def existing_is_ours(existing: Dict[str, Any], layout: Optional[str]) -> Optional[bool]:
    """Whether a complete entry found in place was written by this remedy (None: no cached file to tell)."""
    cached = [f for f in (existing.get("files") or {}).values() if f.get("state") == "cached" and f.get("path")]
    if not cached:
        return None
    if layout == "legacy":
        return _legacy_is_ours(cached[0]["path"])
    return is_ours(os.path.dirname(cached[0]["path"]))


def clip_model_entry(versions: Mapping[str, Optional[str]], kind: str = "hub",
                     path: Optional[str] = None) -> "NeededModel":
    """The needed-model description (a `NeededModel`, as probes/needed_models builds it) of
    FrozenCLIPEmbedder's default."""
    from ...probes.needed_models import FROZEN_CLIP, NeededModel, clip_text_groups

    return NeededModel(ref=path or REPO_ID, loader=FROZEN_CLIP, via="provision-clip", groups=clip_text_groups(versions),
                       cache_user="transformers", tokenizer_check="clip", config_key=None,
                       repo_id=REPO_ID if kind == "hub" else None, path=path, kind=kind, shadowed=False)


def existing_resolution(locations: Dict[str, Any], versions: Mapping[str, Optional[str]],
                        out_dir: Optional[str] = None) -> Dict[str, Any]:
    """Does the loader already find every file it needs (cache entry, or the --out directory)?"""
    from ...probes.cache import _hub_lib, resolve_model

    if out_dir is not None:
        return resolve_model(clip_model_entry(versions, "local", out_dir), locations, None)
    return resolve_model(clip_model_entry(versions), locations, _hub_lib())


def content_revision(staged: List[StagedFile]) -> str:
    """The snapshot's revision: it names the content (README aside), so a re-run resumes the same snapshot."""
    content = "\n".join(f"{item.name} {item.etag}" for item in sorted(staged, key=lambda item: item.name))
    return hashlib.sha1(("ldm-diagnostics provision-clip\n" + content).encode("utf-8")).hexdigest()


def readme_text(result: "ProvisionResult", staged: List[StagedFile], checkpoint: str, tower: TextTower,
                versions: Mapping[str, Optional[str]]) -> str:
    lines = [
        f"# {REPO_ID}: text tower only, provisioned from a checkpoint",
        "",
        MARKER_LINE,
        "",
        "These files were not downloaded from the Hugging Face Hub. `python -m diagnostics provision-clip` wrote",
        "them so that `CLIPTokenizer` / `CLIPTextModel.from_pretrained(" + repr(REPO_ID) + ")` (ldm's",
        "FrozenCLIPEmbedder) load without network:",
        "",
        f"- text encoder weights: copied unchanged from {checkpoint}",
        f"  ({result.source.get('label')}, {result.source.get('tensors')} tensors, "
        f"{', '.join(sorted(result.source.get('dtypes', {})))}), renamed to `text_model.*`;",
        f"- config.json: the {tower.name} (`CLIPTextModel`), not the full CLIPModel: there is no vision tower;",
        "- vocab.json, merges.txt: generated from OpenAI CLIP's BPE merges (MIT licence, below), byte-identical",
        "  to the Hub's files.",
        "",
    ]
    if result.revision:
        lines += [f"Revision `{result.revision}` is derived from these files' content; it is not a commit of the Hub",
                  "repository, so an online `hf download` replaces this snapshot instead of trusting it."]
        if result.previous_ref:
            lines.append(f"refs/main pointed to `{result.previous_ref}` before (an incomplete entry).")
        lines.append("")
    lines += ["| file | bytes | sha256 |", "|---|---|---|"]
    for item in staged:
        lines.append(f"| {item.name} | {item.size} | {item.sha256} |")
    lines += [
        "",
        f"Written {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} with transformers "
        f"{versions.get('transformers') or 'not installed'}.",
        "To use the Hub's files instead: `HF_HUB_OFFLINE=0 hf download " + REPO_ID + "` on a machine with network.",
        "",
        "## CLIP licence (for vocab.json and merges.txt)",
        "",
    ]
    try:
        lines.append(LICENSE_FILE.read_text(encoding="utf-8").strip())
    except OSError:
        lines.append("MIT License, Copyright (c) 2021 OpenAI (https://github.com/openai/CLIP)")
    return "\n".join(lines) + "\n"


def _link(target_rel: str, link_path: str, blob_path: str) -> str:
    """A relative symlink as huggingface_hub makes it, or a copy where symlinks are not allowed."""
    tmp = tmp_path(os.path.dirname(link_path), os.path.basename(link_path))
    unlink_quietly(tmp)
    try:
        os.symlink(target_rel, tmp)
        how = "symlink"
    except (OSError, NotImplementedError, AttributeError):
        import shutil

        shutil.copyfile(blob_path, tmp)
        how = "copy"
    os.replace(tmp, link_path)
    return how


def place_hub(cache_dir: str, staged: List[StagedFile], blobs: str, result: "ProvisionResult") -> None:
    """blobs/<etag>, snapshots/<rev>/<name> -> ../../blobs/<etag>, then refs/main (last)."""
    repo = repo_dir(cache_dir)
    snapshot = os.path.join(repo, "snapshots", result.revision or "")
    os.makedirs(snapshot, exist_ok=True)
    os.makedirs(os.path.join(repo, "refs"), exist_ok=True)
    for item in staged:
        blob = os.path.join(blobs, item.etag)
        if os.path.isfile(blob) and os.path.getsize(blob) == item.size:
            unlink_quietly(item.tmp)  # the same content is already there (e.g. the Hub's identical vocab.json)
            written = False
        else:
            os.replace(item.tmp, blob)
            written = True
        link = os.path.join(snapshot, item.name)
        how = _link(os.path.join("..", "..", "blobs", item.etag), link, blob)
        result.files.append({"name": item.name, "path": link, "blob": blob, "size": item.size,
                             "sha256": item.sha256, "role": item.role, "written": written, "link": how})
        result.bytes_written += item.size if written else 0
    atomic_write(os.path.join(repo, "refs", "main"), (result.revision or "").encode("ascii"))


def place_legacy(cache_dir: str, staged: List[StagedFile], endpoint: str, result: "ProvisionResult") -> None:
    """transformers < 4.22: `<sha256(url)>.<sha256(etag)>` plus a `.json` with url and etag; offline it
    takes any `<sha256(url)>.*`, so a file is written only where none exists for its URL."""
    from ...probes.cache import legacy_filename, resolve_legacy_file

    listing = os.listdir(cache_dir)
    for item in staged:
        present = resolve_legacy_file(cache_dir, endpoint, REPO_ID, item.name, listing)
        url = present["url"]
        if present["state"] == "cached":
            unlink_quietly(item.tmp)
            result.files.append({"name": item.name, "path": present["path"], "size": item.size,
                                 "sha256": item.sha256, "role": item.role, "written": False, "url": url})
            continue
        stem = legacy_filename(url)
        etag = f'"{item.etag}"'
        path = os.path.join(cache_dir, stem + "." + hashlib.sha256(etag.encode("utf-8")).hexdigest())
        sidecar = {"url": url, "etag": etag, "provisioned_by": MARKER_LINE}
        atomic_write(path + ".json", json.dumps(sidecar).encode("utf-8"))
        os.replace(item.tmp, path)
        result.files.append({"name": item.name, "path": path, "size": item.size, "sha256": item.sha256,
                             "role": item.role, "written": True, "url": url})
        result.bytes_written += item.size


def place_dir(out_dir: str, staged: List[StagedFile], result: "ProvisionResult") -> None:
    for item in staged:
        path = os.path.join(out_dir, item.name)
        if os.path.lexists(path):  # never overwrite: an existing file is kept and re-checked as it is
            unlink_quietly(item.tmp)
            result.files.append({"name": item.name, "path": path, "size": item.size, "sha256": item.sha256,
                                 "role": item.role, "written": False, "kept_existing": True})
            continue
        os.replace(item.tmp, path)
        result.files.append({"name": item.name, "path": path, "size": item.size, "sha256": item.sha256,
                             "role": item.role, "written": True})
        result.bytes_written += item.size
