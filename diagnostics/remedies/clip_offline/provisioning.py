"""The remedy operation: `provision()` reads the checkpoint, selects the text tower, stages and places the files.

`provision()` returns a `ProvisionResult` (plain data, never raises for bad input, never prints): its
`state` says what happened, its `message` says it in a sentence, and `source`, `files` and `notes`
are the evidence the command's report shows.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ...clip_files import tokenizer_files
from ...util import fmt_bytes
from .placement import (MARKER, content_revision, existing_is_ours, existing_resolution, place_dir, place_hub,
                        place_legacy, readme_text, repo_dir)
from .selection import CheckpointRead, Selection, read_checkpoint, refusal, select_text_encoder
from .tower import REPO_ID, VIT_L14, TextTower, config_bytes, position_ids_wanted, weights_name
from .writers import StagedFile, TensorSources, plan_entries, stage_bytes, stage_weights, unlink_quietly

DISK_MARGIN = 64 * 1024 * 1024
SEED_DOWNLOAD_BYTES = 1710671599  # pytorch_model.bin of the Hub repo, which the seed downloaded


@dataclass
class ProvisionResult:
    """What `provision` did. `state`: provisioned | already-complete | no-text-encoder | unusable-text-encoder |
    unreadable | needs-torch | not-writable | no-space | write-error."""

    state: str
    mode: str  # hf-cache | out
    message: str
    target: Optional[str] = None  # the repo folder (hub layout), the legacy cache folder, or DIR
    layout: Optional[str] = None  # hub | legacy | dir
    files: List[Dict[str, Any]] = field(default_factory=list)  # name, path, size, sha256, role, written
    bytes_written: int = 0
    bytes_total: int = 0
    seconds: float = 0.0
    revision: Optional[str] = None
    previous_ref: Optional[str] = None
    weights_name: Optional[str] = None
    source: Dict[str, Any] = field(default_factory=dict)
    existing_ours: Optional[bool] = None
    notes: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.state in ("provisioned", "already-complete")

    def to_dict(self) -> Dict[str, Any]:
        return {"state": self.state, "mode": self.mode, "message": self.message, "target": self.target,
                "layout": self.layout, "files": self.files, "bytes_written": self.bytes_written,
                "bytes_total": self.bytes_total, "seconds": round(self.seconds, 3), "revision": self.revision,
                "previous_ref": self.previous_ref, "weights_name": self.weights_name, "source": self.source,
                "existing_ours": self.existing_ours, "notes": self.notes,
                "seed_download_bytes": SEED_DOWNLOAD_BYTES}


def minimal_download(versions: Mapping[str, Optional[str]]) -> str:
    """The smallest `hf download` that makes FrozenCLIPEmbedder() load: the files it needs, one weights format."""
    from ...rules.cache import download_command

    names = ["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json", "config.json",
             weights_name(versions)]
    return download_command(REPO_ID, names, versions)


class _Stop(Exception):
    """Ends `provision` early with a state and a message (never leaves this module)."""

    def __init__(self, state: str, message: str) -> None:
        Exception.__init__(self, message)
        self.state = state


def provision(checkpoint: str, mode: str, versions: Mapping[str, Optional[str]],
              locations: Optional[Dict[str, Any]] = None, out_dir: Optional[str] = None,
              tower: TextTower = VIT_L14, ckpt: Optional[CheckpointRead] = None) -> ProvisionResult:
    """Provision the text tower of `checkpoint` into the HF cache (`mode="hf-cache"`, `locations` from
    `probes.cache.cache_locations`) or into `out_dir` (`mode="out"`). Never raises for bad input;
    OSErrors while writing become `write-error` (temporary files are removed)."""
    start = time.perf_counter()
    result = ProvisionResult("write-error", mode, "")
    try:
        selection, cache_dir, with_ids, source_format = _prepare(result, checkpoint, mode, versions, locations,
                                                                 out_dir, tower, ckpt)
    except _Stop as stop:
        return _done(result, start, stop.state, str(stop))
    entries = plan_entries(selection, with_ids, tower.max_position_embeddings)
    metadata = {"format": "pt", "provisioned_by": "ldm-diagnostics provision-clip",
                "source_keys": selection.prefix or "", "source_format": source_format}
    try:
        _write(result, checkpoint, cache_dir, entries, metadata, tower, versions, locations)
    except (OSError, ImportError, ValueError, RuntimeError) as exc:
        return _done(result, start, "write-error", f"Writing the files failed: {type(exc).__name__}: {exc}")
    result.bytes_total = sum(f["size"] for f in result.files)
    what = f"{len(result.files)} files, {fmt_bytes(result.bytes_total)}"
    return _done(result, start, "provisioned",
                 f"Provisioned {REPO_ID} ({tower.name}, {len(selection.tensors)} tensors from {selection.prefix}*) "
                 f"into {result.target} ({what}; written {fmt_bytes(result.bytes_written)}).")


def _prepare(result: ProvisionResult, checkpoint: str, mode: str, versions: Mapping[str, Optional[str]],
             locations: Optional[Dict[str, Any]], out_dir: Optional[str], tower: TextTower,
             ckpt: Optional[CheckpointRead]) -> Tuple[Selection, str, bool, str]:
    """Everything decided before a byte is written: (selection, folder, position_ids?, source format).
    Raises _Stop for a checkpoint that cannot serve, an entry already complete, or no room."""
    transformers_version = versions.get("transformers")
    ckpt = ckpt if ckpt is not None else read_checkpoint(checkpoint)
    selection = _select(result, checkpoint, ckpt, tower, transformers_version)
    result.weights_name = weights_name(versions)
    with_ids = position_ids_wanted(transformers_version)
    result.notes.append(_position_ids_note(tower, transformers_version, with_ids))
    if result.weights_name.endswith(".bin") and not _importable("torch"):
        raise _Stop("needs-torch", f"transformers {transformers_version} reads only pytorch_model.bin, and "
                                   "writing it needs torch, which is not installed here.")
    cache_dir = _target(result, mode, versions, locations, out_dir)
    _check_room(cache_dir, selection.nbytes + 4 * 1024 * 1024)
    return selection, cache_dir, with_ids, ckpt.format


def _select(result: ProvisionResult, checkpoint: str, ckpt: CheckpointRead, tower: TextTower,
            transformers_version: Optional[str]) -> Selection:
    """The usable text tower of the checkpoint, its facts recorded in `result.source`; else _Stop."""
    te_kind = (ckpt.layout.get("text_encoder") or {}).get("kind")
    result.source = {"checkpoint": checkpoint, "format": ckpt.format, "family": ckpt.layout.get("family"),
                     "text_encoder_kind": te_kind, "read_seconds": round(ckpt.seconds, 3),
                     "unsafe_globals": ckpt.unsafe_globals[:10], "executed": False}
    bad = [p for p in ckpt.problems if p.get("code") in ("ckpt.format", "ckpt.corrupt") and p.get("severity") != "warn"]
    if not ckpt.records and bad:
        result.source["problems"] = bad[:5]
        raise _Stop("unreadable", f"The checkpoint cannot be read: {bad[0]['message']}.")
    if ckpt.byteorder != "little":
        raise _Stop("unusable-text-encoder",
                    f"The checkpoint stores its tensors {ckpt.byteorder}-endian; only little-endian files are copied.")
    selection = select_text_encoder(ckpt.records, tower, transformers_version)
    result.source.update({"prefix": selection.prefix, "label": selection.label, "candidates": selection.candidates})
    if not selection.ok:
        result.source.update({"missing": selection.missing[:20], "wrong_shapes": selection.wrong_shapes,
                              "bad_dtypes": selection.bad_dtypes, "unlocated": selection.unlocated})
        raise _Stop(*refusal(selection, tower, te_kind))
    result.source.update({"tensors": len(selection.tensors), "dtypes": selection.dtypes, "bytes": selection.nbytes,
                          "parameters": tower.parameters(), "ignored_keys": selection.ignored})
    return selection


def _position_ids_note(tower: TextTower, transformers_version: Optional[str], with_ids: bool) -> str:
    if with_ids:
        return (f"position_ids: a fresh arange({tower.max_position_embeddings}) is written (transformers "
                f"{transformers_version} keeps it as a persistent buffer)")
    return (f"position_ids: not written (transformers {transformers_version or 'of any version >= 4.31'} does not "
            "read them from weights files); the checkpoint's own are never copied")


def _target(result: ProvisionResult, mode: str, versions: Mapping[str, Optional[str]],
            locations: Optional[Dict[str, Any]], out_dir: Optional[str]) -> str:
    """The folder the files go to (recorded in `result`); _Stop when a complete set is already there:
    it is never overwritten."""
    if mode == "hf-cache":
        if locations is None:
            raise ValueError("mode 'hf-cache' needs the cache locations")
        result.layout, cache_dir = locations["transformers"]["layout"], locations["transformers"]["path"]
        result.target = repo_dir(cache_dir) if result.layout == "hub" else cache_dir
        existing = existing_resolution(locations, versions)
    else:
        if out_dir is None:
            raise ValueError("mode 'out' needs out_dir")
        result.layout, result.target, cache_dir = "dir", out_dir, out_dir
        existing = existing_resolution({}, versions, out_dir) if os.path.isdir(out_dir) else {"complete": False}
    if existing.get("complete"):
        result.existing_ours = existing_is_ours(existing, result.layout)
        whose = "written earlier by provision-clip" if result.existing_ours else "not written by provision-clip"
        raise _Stop("already-complete",
                    f"{REPO_ID} is already complete in {existing.get('where') or out_dir} ({whose}): nothing was "
                    "written. A complete entry is never overwritten; delete it first to provision again.")
    return cache_dir


def _check_room(cache_dir: str, need: int) -> None:
    """Room and permission before anything is written; _Stop when either is lacking."""
    from ...probes.cache import disk_free, writable

    check = writable(cache_dir)
    if not check["writable"]:
        raise _Stop("not-writable", f"Cannot write in {check['checked']}: {check['error']}.")
    free = disk_free(cache_dir)
    if free is not None and free < need + DISK_MARGIN:
        raise _Stop("no-space", f"{fmt_bytes(free)} free under {cache_dir}; the files need {fmt_bytes(need)}.")


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def _stage_all(result: ProvisionResult, checkpoint: str, stage_dir: str, repo: str, entries,
               metadata: Dict[str, str], tower: TextTower, versions: Mapping[str, Optional[str]],
               staged: List[StagedFile]) -> None:
    """Write every file under a temporary name into `staged`: tokenizer, config, weights, then the README."""
    sources = TensorSources(checkpoint)
    try:
        for name, data in tokenizer_files().items():
            staged.append(stage_bytes(stage_dir, name, data, "tokenizer"))
        staged.append(stage_bytes(stage_dir, "config.json", config_bytes(tower), "text encoder config"))
        staged.append(stage_weights(stage_dir, result.weights_name or "model.safetensors", entries, sources, metadata))
    finally:
        sources.close()
    if result.layout == "hub":
        result.revision = content_revision(staged)
        ref = os.path.join(repo, "refs", "main")
        if os.path.isfile(ref):
            with open(ref, encoding="utf-8", errors="replace") as fh:
                result.previous_ref = fh.read().strip() or None
    readme = readme_text(result, staged, checkpoint, tower, versions).encode("utf-8")
    staged.append(stage_bytes(stage_dir, MARKER, readme, "marker (README: where these files come from)"))


def _write(result: ProvisionResult, checkpoint: str, cache_dir: str, entries, metadata: Dict[str, str],
           tower: TextTower, versions: Mapping[str, Optional[str]], locations: Optional[Dict[str, Any]]) -> None:
    """Stage every file under a temporary name, then move them into place (refs/main last)."""
    layout = result.layout
    repo = repo_dir(cache_dir)
    stage_dir = os.path.join(repo, "blobs") if layout == "hub" else cache_dir
    created = [d for d in (repo, stage_dir) if layout == "hub" and not os.path.isdir(d)]
    staged: List[StagedFile] = []
    try:
        os.makedirs(stage_dir, exist_ok=True)
        _stage_all(result, checkpoint, stage_dir, repo, entries, metadata, tower, versions, staged)
        if layout == "hub":
            place_hub(cache_dir, staged, stage_dir, result)
        elif layout == "legacy":
            place_legacy(cache_dir, staged, (locations or {}).get("endpoint") or "https://huggingface.co", result)
        else:
            place_dir(cache_dir, staged, result)
    except BaseException:
        for item in staged:
            unlink_quietly(item.tmp)
        for folder in reversed(created):  # a folder this run created and left empty would read as a corrupted repo
            try:
                os.rmdir(folder)
            except OSError:
                pass
        raise


def _done(result: ProvisionResult, start: float, state: str, message: str) -> ProvisionResult:
    result.state, result.message = state, message
    result.seconds = time.perf_counter() - start
    return result
