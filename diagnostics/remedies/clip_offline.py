"""Offline CLIP remedy: make `openai/clip-vit-large-patch14` loadable from the checkpoint itself (issue 7).

ldm's `FrozenCLIPEmbedder()` calls `CLIPTokenizer.from_pretrained` and `CLIPTextModel.from_pretrained`
with `openai/clip-vit-large-patch14` before the checkpoint is loaded, so a server without the Hub
fails (the seed's OSError; a silent 2-token tokenizer with transformers 5) although every SD 1.x
checkpoint carries the complete text encoder. The seed fixed it by downloading the whole Hub repo
(1.7 GB, vision tower included) and editing ldm's code. This module needs neither:

1. the tokenizer files are generated from OpenAI's BPE merges shipped with this package
   (`clip_files`: vocab.json and merges.txt byte-identical to the Hub's);
2. `config.json` describes the ViT-L/14 *text* tower (`CLIPTextModel`), with only keys that
   transformers 4.19 to 5.x understand, and `torch_dtype: float32` as the Hub's config has (transformers
   5 would otherwise build the model in the weights' dtype);
3. the weights are the checkpoint's `cond_stage_model.transformer.*` tensors (SD 1.x `text_model.*`
   names, NAI-style flat names, SDXL's `conditioner.embedders.0.transformer.*`, a diffusers
   `text_encoder/`), renamed to the Hub's `text_model.*` names, copied byte for byte in their own dtype
   from the offsets the checkpoint readers record: the checkpoint's pickle is never executed, and neither
   torch nor numpy is needed for `model.safetensors` (transformers < 4.22, which reads only
   `pytorch_model.bin`, needs torch to write that file). `position_ids` are never copied (merged
   checkpoints carry broken ones): a fresh `arange(77)` is written for transformers < 4.31, where it is a
   persistent buffer, and nothing for newer versions, where it is not;
4. placement: `--hf-cache` writes a Hub-layout entry (blobs named by etag, `snapshots/REV/*` relative
   links, `refs/main` written last so an interrupted run is never visible) into the cache the installed
   transformers reads, or the flat legacy cache of transformers < 4.22 (files named by the sha256 of
   their URL); `--out DIR` writes a plain directory. A complete existing entry is never touched, existing
   files are never overwritten, every file is written to a temporary name and renamed, and the snapshot
   carries a README saying where it came from. Its revision is derived from the content, not a Hub
   commit, so a later online `hf download` supersedes it instead of mistaking it for the real files.

`provision()` returns a `ProvisionResult` (plain data, never raises for bad input); the command in
`commands/provision_clip.py` re-runs the checks and writes the report.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from ..clip_files import LICENSE_FILE, tokenizer_files
from ..context import DEFAULT_CLIP_ID
from ..util import fmt_bytes, version_at_least

REPO_ID = DEFAULT_CLIP_ID
MARKER = "README.md"
MARKER_LINE = "provisioned-by: ldm-diagnostics provision-clip"
CHUNK = 1024 * 1024
DISK_MARGIN = 64 * 1024 * 1024
LFS_SUFFIXES = (".bin", ".safetensors")  # files the Hub stores in LFS: their etag is the sha256
POSITION_IDS = "text_model.embeddings.position_ids"
SEED_DOWNLOAD_BYTES = 1710671599  # pytorch_model.bin of the Hub repo, which the seed downloaded

# Where checkpoints keep the CLIP ViT-L/14 text tower: (prefix, whether `text_model.` follows, label).
SOURCES: Tuple[Tuple[str, bool, str], ...] = (
    ("cond_stage_model.transformer.text_model.", True, "SD 1.x (cond_stage_model.transformer.text_model.*)"),
    ("cond_stage_model.transformer.", False, "flat / NAI-style (cond_stage_model.transformer.*)"),
    ("conditioner.embedders.0.transformer.text_model.", True,
     "SDXL CLIP-L (conditioner.embedders.0.transformer.text_model.*)"),
    ("conditioner.embedders.0.transformer.", False, "SDXL CLIP-L, flat (conditioner.embedders.0.transformer.*)"),
    ("text_encoder/text_model.", True, "diffusers folder (text_encoder/text_model.*)"),
    ("text_encoder/", False, "diffusers folder, flat (text_encoder/*)"),
)
_FLAT_ROOTS = ("embeddings.", "encoder.", "final_layer_norm.")
WEIGHT_DTYPES = ("float16", "float32", "bfloat16")
_SAFETENSORS_CODES = {"float16": "F16", "float32": "F32", "bfloat16": "BF16", "int64": "I64"}
_ITEMSIZE = {"float16": 2, "float32": 4, "bfloat16": 2, "int64": 8}


# -- the text tower ------------------------------------------------------------------------------

@dataclass(frozen=True)
class TextTower:
    """The architecture numbers of a CLIP text tower (`CLIPTextConfig`)."""

    name: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    max_position_embeddings: int
    projection_dim: int
    hidden_act: str = "quick_gelu"

    def expected_shapes(self) -> Dict[str, Tuple[int, ...]]:
        """The Hub's `text_model.*` parameter names and shapes (without the `position_ids` buffer)."""
        h, m = self.hidden_size, self.intermediate_size
        shapes: Dict[str, Tuple[int, ...]] = {
            "text_model.embeddings.token_embedding.weight": (self.vocab_size, h),
            "text_model.embeddings.position_embedding.weight": (self.max_position_embeddings, h),
        }
        for i in range(self.num_hidden_layers):
            layer = f"text_model.encoder.layers.{i}."
            for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
                shapes[f"{layer}self_attn.{proj}.weight"] = (h, h)
                shapes[f"{layer}self_attn.{proj}.bias"] = (h,)
            for norm in ("layer_norm1", "layer_norm2"):
                shapes[f"{layer}{norm}.weight"] = (h,)
                shapes[f"{layer}{norm}.bias"] = (h,)
            shapes[f"{layer}mlp.fc1.weight"] = (m, h)
            shapes[f"{layer}mlp.fc1.bias"] = (m,)
            shapes[f"{layer}mlp.fc2.weight"] = (h, m)
            shapes[f"{layer}mlp.fc2.bias"] = (h,)
        shapes["text_model.final_layer_norm.weight"] = (h,)
        shapes["text_model.final_layer_norm.bias"] = (h,)
        return shapes

    def parameters(self) -> int:
        total = 0
        for shape in self.expected_shapes().values():
            n = 1
            for d in shape:
                n *= d
            total += n
        return total


# openai/clip-vit-large-patch14's text_config, as its config.json on the Hub gives it.
VIT_L14 = TextTower("CLIP ViT-L/14 text tower", vocab_size=49408, hidden_size=768, intermediate_size=3072,
                    num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77, projection_dim=768)


def text_config(tower: TextTower = VIT_L14) -> Dict[str, Any]:
    """config.json for `CLIPTextModel.from_pretrained`, in keys transformers 4.19 to 5.x all read.

    `model_type: clip_text_model` (not the Hub's full `clip`): only the text tower is provisioned, so
    nothing can mistake it for a CLIPModel with a vision tower. Token ids are the Hub's (bos 0, eos 2,
    pad 1): transformers >= 4.30 keeps CLIP's original pooling when `eos_token_id` is 2.
    """
    return {
        "architectures": ["CLIPTextModel"],
        "model_type": "clip_text_model",
        "vocab_size": tower.vocab_size,
        "hidden_size": tower.hidden_size,
        "intermediate_size": tower.intermediate_size,
        "projection_dim": tower.projection_dim,
        "num_hidden_layers": tower.num_hidden_layers,
        "num_attention_heads": tower.num_attention_heads,
        "max_position_embeddings": tower.max_position_embeddings,
        "hidden_act": tower.hidden_act,
        "layer_norm_eps": 1e-05,
        "attention_dropout": 0.0,
        "dropout": 0.0,
        "initializer_range": 0.02,
        "initializer_factor": 1.0,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "pad_token_id": 1,
        # The Hub's value. transformers 5 defaults to dtype="auto": without it an fp16 file would give
        # an fp16 model, unlike the Hub's and unlike ldm's after loading the checkpoint.
        "torch_dtype": "float32",
    }


def config_bytes(tower: TextTower = VIT_L14) -> bytes:
    return (json.dumps(text_config(tower), indent=2) + "\n").encode("utf-8")


def position_ids_wanted(transformers_version: Optional[str]) -> bool:
    """transformers < 4.31 keeps `position_ids` as a persistent buffer (the Hub's .bin carries it)."""
    newer = version_at_least(transformers_version, "4.31") if transformers_version else None
    return newer is False


def weights_name(versions: Mapping[str, Optional[str]]) -> str:
    """The weights file the installed transformers reads first (model.safetensors when unknown)."""
    from ..probes.needed_models import transformers_weight_names

    if not versions.get("transformers"):
        return "model.safetensors"  # no transformers here: the format every transformers >= 4.22 reads
    return transformers_weight_names(versions)[0]


# -- reading the checkpoint without running it ------------------------------------------------------

@dataclass
class CheckpointRead:
    """Tensor records of a checkpoint, with the layout facts and the reader's problems."""

    path: str
    format: str = "unknown"
    records: List[Any] = field(default_factory=list)
    problems: List[Dict[str, Any]] = field(default_factory=list)
    layout: Dict[str, Any] = field(default_factory=dict)
    unsafe_globals: List[str] = field(default_factory=list)
    byteorder: str = "little"
    seconds: float = 0.0


def read_checkpoint(path: str) -> CheckpointRead:
    """Every tensor record with its file offset located, through the checkpoint package's
    `read_tensor_records` (the same dispatch `inspect` uses). Never raises."""
    from ..probes.checkpoint import read_tensor_records
    from ..probes.checkpoint.layout import analyse

    start = time.perf_counter()
    read = read_tensor_records(path, locate=True)
    out = CheckpointRead(path=path, format=read.format, records=list(read.records), problems=read.all_problems,
                         unsafe_globals=read.unsafe_globals, byteorder=read.byteorder)
    if read.result is not None:
        try:
            out.layout = analyse(out.records)
        except Exception as exc:  # layout facts are for messages only
            out.layout = {"error": f"{type(exc).__name__}: {exc}"}
    out.seconds = time.perf_counter() - start
    return out


# -- choosing the text-encoder tensors --------------------------------------------------------------

@dataclass
class Selection:
    """The chosen text-encoder tensors, or why there are none usable."""

    ok: bool
    prefix: Optional[str] = None
    label: Optional[str] = None
    tensors: Dict[str, Any] = field(default_factory=dict)  # target (text_model.*) name -> TensorRecord
    missing: List[str] = field(default_factory=list)
    wrong_shapes: List[Dict[str, Any]] = field(default_factory=list)
    bad_dtypes: List[Dict[str, Any]] = field(default_factory=list)
    unlocated: List[str] = field(default_factory=list)
    ignored: List[str] = field(default_factory=list)  # source keys under the prefix that are not weights
    candidates: List[Dict[str, Any]] = field(default_factory=list)
    reason: str = ""

    @property
    def dtypes(self) -> Dict[str, int]:
        counts: Dict[str, int] = {}
        for t in self.tensors.values():
            counts[t.dtype] = counts.get(t.dtype, 0) + 1
        return counts

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tensors.values())


def _target_name(name: str) -> Optional[Tuple[str, str]]:
    """(source prefix, text_model.* name) for a checkpoint key of a CLIP-L text tower, else None."""
    for prefix, nested, _ in SOURCES:
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix):]
        if not nested and rest.startswith("text_model."):
            continue  # belongs to the nested prefix listed before this one
        if not nested and not rest.startswith(_FLAT_ROOTS):
            return prefix, ""  # under the prefix but not a text-tower tensor (e.g. a projection)
        return prefix, "text_model." + rest
    return None


def select_text_encoder(records: List[Any], tower: TextTower = VIT_L14,
                        transformers_version: Optional[str] = None) -> Selection:
    """Group the records by source prefix and pick one complete text tower of `tower`'s shapes.

    When a file holds two complete spellings of the same encoder, the one that ldm's
    load_state_dict(strict=False) applies with this transformers wins (flat names for transformers 5,
    `text_model.*` before), so the provisioned model is the one the LDM ends up with.
    """
    expected = tower.expected_shapes()
    groups: Dict[str, Dict[str, Any]] = {}
    ignored: Dict[str, List[str]] = {}
    for t in records:
        hit = _target_name(t.name)
        if hit is None:
            continue
        prefix, target = hit
        if not target or target == POSITION_IDS or target not in expected:
            ignored.setdefault(prefix, []).append(t.name)
            continue
        groups.setdefault(prefix, {})[target] = t
    if not groups:
        return Selection(False, reason="no-text-encoder", ignored=[n for v in ignored.values() for n in v][:20])
    candidates = []
    for prefix, tensors in groups.items():
        label = next(lbl for p, _, lbl in SOURCES if p == prefix)
        missing = [n for n in expected if n not in tensors]
        wrong = [{"key": tensors[n].name, "shape": list(tensors[n].shape), "expected": list(shape)}
                 for n, shape in expected.items() if n in tensors and tuple(tensors[n].shape) != shape]
        bad = [{"key": t.name, "dtype": t.dtype} for t in tensors.values() if t.dtype not in WEIGHT_DTYPES]
        unlocated = [t.name for t in tensors.values() if t.offset is None or not t.contiguous]
        candidates.append({"prefix": prefix, "label": label, "tensors": tensors, "missing": missing,
                           "wrong_shapes": wrong, "bad_dtypes": bad, "unlocated": unlocated,
                           "complete": not missing and not wrong and not bad and not unlocated})
    complete = [c for c in candidates if c["complete"]]
    v5 = version_at_least(transformers_version, "5") if transformers_version else None
    if len(complete) > 1 and v5 is not None:
        applied = [c for c in complete if c["prefix"].endswith("text_model.") != bool(v5)]
        complete = applied + [c for c in complete if c not in applied]
    summary = [{k: (len(v) if k == "tensors" else v[:10] if isinstance(v, list) else v) for k, v in c.items()}
               for c in candidates]  # evidence: counts and the first names, not 196 of them
    if complete:
        c = complete[0]
        return Selection(True, prefix=c["prefix"], label=c["label"], tensors=c["tensors"], candidates=summary,
                         ignored=ignored.get(c["prefix"], [])[:20])
    best = max(candidates, key=lambda c: len(c["tensors"]) - len(c["wrong_shapes"]))
    reason = "wrong-shapes" if best["wrong_shapes"] else "bad-dtype" if best["bad_dtypes"] else \
        "unlocated" if best["unlocated"] and not best["missing"] else "incomplete"
    return Selection(False, prefix=best["prefix"], label=best["label"], tensors=best["tensors"],
                     missing=best["missing"], wrong_shapes=best["wrong_shapes"][:20],
                     bad_dtypes=best["bad_dtypes"][:20],
                     unlocated=best["unlocated"][:20], candidates=summary, reason=reason)


# -- writing files -------------------------------------------------------------------------------

class _Sources:
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


def _plan(selection: Selection, with_position_ids: bool, max_positions: int) -> List[Entry]:
    """(name, dtype, shape, record or raw bytes) in name order."""
    entries: List[Entry] = [
        (name, t.dtype, tuple(t.shape), t) for name, t in sorted(selection.tensors.items())]
    if with_position_ids:
        raw = struct.pack(f"<{max_positions}q", *range(max_positions))
        entries.append((POSITION_IDS, "int64", (1, max_positions), raw))
        entries.sort(key=lambda e: e[0])
    return entries


def _nbytes(entry) -> int:
    _, dtype, shape, _ = entry
    n = _ITEMSIZE[dtype]
    for d in shape:
        n *= d
    return n


def safetensors_header(entries, metadata: Dict[str, str]) -> bytes:
    """The 8-byte length + JSON header of a safetensors file holding `entries` in order."""
    header: Dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for entry in entries:
        name, dtype, shape, _ = entry
        n = _nbytes(entry)
        header[name] = {"dtype": _SAFETENSORS_CODES[dtype], "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned, as safetensors writes it
    return struct.pack("<Q", len(raw)) + raw


def write_safetensors(fh, entries, sources: _Sources, metadata: Dict[str, str]) -> None:
    """Stream the tensors' bytes unchanged into `fh` (pure Python: no torch, numpy or safetensors)."""
    fh.write(safetensors_header(entries, metadata))
    for name, _, _, src in entries:
        if isinstance(src, bytes):
            fh.write(src)
        else:
            sources.read_into(src, fh.write)


def write_pytorch_bin(path: str, entries, sources: _Sources) -> None:
    """pytorch_model.bin for transformers < 4.22 (which reads nothing else): needs torch. The file is
    torch.save of plain tensors, as `save_pretrained` writes it."""
    import torch  # ImportError is reported by the caller

    dtypes = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16, "int64": torch.int64}
    state: Dict[str, Any] = {}
    for name, dtype, shape, src in entries:
        if isinstance(src, bytes):
            buf = bytearray(src)
        else:
            parts: List[bytes] = []
            sources.read_into(src, parts.append)
            buf = bytearray(b"".join(parts))
        state[name] = torch.frombuffer(buf, dtype=dtypes[dtype]).reshape(shape).clone()
    torch.save(state, path)


class _HashingWriter:
    """A file object that hashes what goes through it (sha256, and git's blob sha1 for small files)."""

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


def _tmp_path(directory: str, name: str) -> str:
    return os.path.join(directory, f".{name}.{os.getpid()}.incomplete")


def stage_bytes(directory: str, name: str, data: bytes, role: str) -> StagedFile:
    tmp = _tmp_path(directory, name)
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return StagedFile(name, tmp, len(data), hashlib.sha256(data).hexdigest(), etag_of(name, data), role)


def stage_weights(directory: str, name: str, entries, sources: _Sources, metadata: Dict[str, str]) -> StagedFile:
    tmp = _tmp_path(directory, name)
    try:
        if name.endswith(".safetensors"):
            with open(tmp, "wb") as raw:
                fh = _HashingWriter(raw)
                write_safetensors(fh, entries, sources, metadata)
                raw.flush()
                os.fsync(raw.fileno())
            digest, size = fh.sha256.hexdigest(), fh.size
        else:
            write_pytorch_bin(tmp, entries, sources)
            digest, size = _sha256_file(tmp), os.path.getsize(tmp)
    except BaseException:
        _unlink(tmp)
        raise
    return StagedFile(name, tmp, size, digest, etag_of(name, sha256=digest), "text-encoder weights")


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _atomic_write(path: str, data: bytes) -> None:
    tmp = _tmp_path(os.path.dirname(path) or ".", os.path.basename(path))
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise


def _link(target_rel: str, link_path: str, blob_path: str) -> str:
    """A relative symlink as huggingface_hub makes it, or a copy where symlinks are not allowed."""
    tmp = _tmp_path(os.path.dirname(link_path), os.path.basename(link_path))
    _unlink(tmp)
    try:
        os.symlink(target_rel, tmp)
        how = "symlink"
    except (OSError, NotImplementedError, AttributeError):
        import shutil

        shutil.copyfile(blob_path, tmp)
        how = "copy"
    os.replace(tmp, link_path)
    return how


# -- the result ----------------------------------------------------------------------------------

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


# -- placement -----------------------------------------------------------------------------------

def repo_dir(cache_dir: str, repo_id: str = REPO_ID) -> str:
    from ..probes.cache import repo_folder

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


def clip_model_entry(versions: Mapping[str, Optional[str]], kind: str = "hub",
                     path: Optional[str] = None) -> Dict[str, Any]:
    """The needed-model description (as probes/needed_models builds it) of FrozenCLIPEmbedder's default."""
    from ..probes.needed_models import FROZEN_CLIP, clip_text_groups

    return {"ref": path or REPO_ID, "loader": FROZEN_CLIP, "via": "provision-clip",
            "groups": clip_text_groups(versions),
            "cache_user": "transformers", "tokenizer_check": "clip", "config_key": None,
            "repo_id": REPO_ID if kind == "hub" else None, "path": path, "kind": kind, "shadowed": False}


def existing_resolution(locations: Dict[str, Any], versions: Mapping[str, Optional[str]],
                        out_dir: Optional[str] = None) -> Dict[str, Any]:
    """Does the loader already find every file it needs (cache entry, or the --out directory)?"""
    from ..probes.cache import _hub_lib, resolve_model

    if out_dir is not None:
        return resolve_model(clip_model_entry(versions, "local", out_dir), locations, None)
    return resolve_model(clip_model_entry(versions), locations, _hub_lib())


def readme_text(result: ProvisionResult, staged: List[StagedFile], checkpoint: str, tower: TextTower,
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
    for s in staged:
        lines.append(f"| {s.name} | {s.size} | {s.sha256} |")
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


def _place_hub(cache_dir: str, staged: List[StagedFile], blobs: str, result: ProvisionResult) -> None:
    """blobs/<etag>, snapshots/<rev>/<name> -> ../../blobs/<etag>, then refs/main (last)."""
    repo = repo_dir(cache_dir)
    snapshot = os.path.join(repo, "snapshots", result.revision or "")
    os.makedirs(snapshot, exist_ok=True)
    os.makedirs(os.path.join(repo, "refs"), exist_ok=True)
    for s in staged:
        blob = os.path.join(blobs, s.etag)
        if os.path.isfile(blob) and os.path.getsize(blob) == s.size:
            _unlink(s.tmp)  # the same content is already there (e.g. the Hub's identical vocab.json)
            written = False
        else:
            os.replace(s.tmp, blob)
            written = True
        link = os.path.join(snapshot, s.name)
        how = _link(os.path.join("..", "..", "blobs", s.etag), link, blob)
        result.files.append({"name": s.name, "path": link, "blob": blob, "size": s.size, "sha256": s.sha256,
                             "role": s.role, "written": written, "link": how})
        result.bytes_written += s.size if written else 0
    _atomic_write(os.path.join(repo, "refs", "main"), (result.revision or "").encode("ascii"))


def _place_legacy(cache_dir: str, staged: List[StagedFile], endpoint: str, result: ProvisionResult) -> None:
    """transformers < 4.22: `<sha256(url)>.<sha256(etag)>` plus a `.json` with url and etag; offline it
    takes any `<sha256(url)>.*`, so a file is written only where none exists for its URL."""
    from ..probes.cache import legacy_filename

    listing = os.listdir(cache_dir)
    for s in staged:
        url = f"{endpoint}/{REPO_ID}/resolve/main/{s.name}"
        stem = legacy_filename(url)
        present = [f for f in listing if (f == stem or f.startswith(stem + "."))
                   and not f.endswith((".json", ".lock", ".incomplete"))]
        if present:
            _unlink(s.tmp)
            result.files.append({"name": s.name, "path": os.path.join(cache_dir, present[0]), "size": s.size,
                                 "sha256": s.sha256, "role": s.role, "written": False, "url": url})
            continue
        etag = f'"{s.etag}"'
        path = os.path.join(cache_dir, stem + "." + hashlib.sha256(etag.encode("utf-8")).hexdigest())
        sidecar = {"url": url, "etag": etag, "provisioned_by": MARKER_LINE}
        _atomic_write(path + ".json", json.dumps(sidecar).encode("utf-8"))
        os.replace(s.tmp, path)
        result.files.append({"name": s.name, "path": path, "size": s.size, "sha256": s.sha256, "role": s.role,
                             "written": True, "url": url})
        result.bytes_written += s.size


def _place_dir(out_dir: str, staged: List[StagedFile], result: ProvisionResult) -> None:
    for s in staged:
        path = os.path.join(out_dir, s.name)
        if os.path.lexists(path):  # never overwrite: an existing file is kept and re-checked as it is
            _unlink(s.tmp)
            result.files.append({"name": s.name, "path": path, "size": s.size, "sha256": s.sha256, "role": s.role,
                                 "written": False, "kept_existing": True})
            continue
        os.replace(s.tmp, path)
        result.files.append({"name": s.name, "path": path, "size": s.size, "sha256": s.sha256, "role": s.role,
                             "written": True})
        result.bytes_written += s.size


# -- the remedy ----------------------------------------------------------------------------------

def minimal_download(versions: Mapping[str, Optional[str]]) -> str:
    """The smallest `hf download` that makes FrozenCLIPEmbedder() load: the files it needs, one weights format."""
    from ..rules.cache import download_command

    names = ["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json", "config.json",
             weights_name(versions)]
    return download_command(REPO_ID, names, versions)


def provision(checkpoint: str, mode: str, versions: Mapping[str, Optional[str]],
              locations: Optional[Dict[str, Any]] = None, out_dir: Optional[str] = None,
              tower: TextTower = VIT_L14, ckpt: Optional[CheckpointRead] = None) -> ProvisionResult:
    """Provision the text tower of `checkpoint` into the HF cache (`mode="hf-cache"`, `locations` from
    `probes.cache.cache_locations`) or into `out_dir` (`mode="out"`). Never raises for bad input;
    OSErrors while writing become `write-error` (temporary files are removed)."""
    start = time.perf_counter()
    tv = versions.get("transformers")
    result = ProvisionResult("write-error", mode, "")
    ckpt = ckpt if ckpt is not None else read_checkpoint(checkpoint)
    te_kind = (ckpt.layout.get("text_encoder") or {}).get("kind")
    result.source = {"checkpoint": checkpoint, "format": ckpt.format, "family": ckpt.layout.get("family"),
                     "text_encoder_kind": te_kind, "read_seconds": round(ckpt.seconds, 3),
                     "unsafe_globals": ckpt.unsafe_globals[:10], "executed": False}
    bad = [p for p in ckpt.problems if p.get("code") in ("ckpt.format", "ckpt.corrupt") and p.get("severity") != "warn"]
    if not ckpt.records and bad:
        result.source["problems"] = bad[:5]
        return _done(result, start, "unreadable", f"The checkpoint cannot be read: {bad[0]['message']}.")
    if ckpt.byteorder != "little":
        return _done(result, start, "unusable-text-encoder",
                     f"The checkpoint stores its tensors {ckpt.byteorder}-endian; only little-endian files are copied.")
    selection = select_text_encoder(ckpt.records, tower, tv)
    result.source.update({"prefix": selection.prefix, "label": selection.label, "candidates": selection.candidates})
    if not selection.ok:
        result.source.update({"missing": selection.missing[:20], "wrong_shapes": selection.wrong_shapes,
                              "bad_dtypes": selection.bad_dtypes, "unlocated": selection.unlocated})
        return _done(result, start, *_refusal(selection, tower, te_kind))
    result.source.update({"tensors": len(selection.tensors), "dtypes": selection.dtypes, "bytes": selection.nbytes,
                          "parameters": tower.parameters(), "ignored_keys": selection.ignored})
    result.weights_name = weights_name(versions)
    with_ids = position_ids_wanted(tv)
    result.notes.append(
        f"position_ids: a fresh arange({tower.max_position_embeddings}) is written (transformers {tv} keeps it as a "
        "persistent buffer)" if with_ids else
        f"position_ids: not written (transformers {tv or 'of any version >= 4.31'} does not read them from weights "
        "files); the checkpoint's own are never copied")
    if result.weights_name.endswith(".bin") and not _importable("torch"):
        return _done(result, start, "needs-torch", f"transformers {tv} reads only pytorch_model.bin, and writing it "
                                                   "needs torch, which is not installed here.")

    # Where the files go, and whether a complete set is already there: it is never overwritten.
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
        result.existing_ours = _existing_is_ours(existing, result.layout)
        whose = "written earlier by provision-clip" if result.existing_ours else "not written by provision-clip"
        return _done(result, start, "already-complete",
                     f"{REPO_ID} is already complete in {existing.get('where') or out_dir} ({whose}): nothing was "
                     "written. A complete entry is never overwritten; delete it first to provision again.")

    # Room and permission before anything is written.
    from ..probes.cache import disk_free, writable

    need = selection.nbytes + 4 * 1024 * 1024
    w = writable(cache_dir)
    if not w["writable"]:
        return _done(result, start, "not-writable", f"Cannot write in {w['checked']}: {w['error']}.")
    free = disk_free(cache_dir)
    if free is not None and free < need + DISK_MARGIN:
        return _done(result, start, "no-space", f"{fmt_bytes(free)} free under {cache_dir}; the files need "
                                                f"{fmt_bytes(need)}.")
    entries = _plan(selection, with_ids, tower.max_position_embeddings)
    metadata = {"format": "pt", "provisioned_by": "ldm-diagnostics provision-clip",
                "source_keys": selection.prefix or "", "source_format": ckpt.format}
    try:
        _write(result, checkpoint, cache_dir, entries, metadata, tower, versions, locations)
    except (OSError, ImportError, ValueError, RuntimeError) as exc:
        return _done(result, start, "write-error", f"Writing the files failed: {type(exc).__name__}: {exc}")
    result.bytes_total = sum(f["size"] for f in result.files)
    what = f"{len(result.files)} files, {fmt_bytes(result.bytes_total)}"
    return _done(result, start, "provisioned",
                 f"Provisioned {REPO_ID} ({tower.name}, {len(selection.tensors)} tensors from {selection.prefix}*) "
                 f"into {result.target} ({what}; written {fmt_bytes(result.bytes_written)}).")


def _refusal(selection: Selection, tower: TextTower, te_kind: Optional[str]) -> Tuple[str, str]:
    """(state, message) for a checkpoint whose text encoder cannot be provisioned."""
    if selection.reason == "no-text-encoder":
        other = f" (its text encoder is {te_kind}, not CLIP ViT-L/14)" if te_kind and "clip-l" not in te_kind else ""
        return "no-text-encoder", (f"The checkpoint has no CLIP ViT-L/14 text encoder{other}: there is nothing to "
                                   "extract.")
    if selection.reason == "wrong-shapes":
        first = selection.wrong_shapes[0]
        detail = (f"{len(selection.wrong_shapes)} tensors have other shapes than the {tower.name} (first: "
                  f"{first['key']} {first['shape']}, expected {first['expected']})")
    elif selection.reason == "bad-dtype":
        detail = f"tensors in dtypes this remedy does not copy: {sorted({b['dtype'] for b in selection.bad_dtypes})}"
    elif selection.reason == "unlocated":
        detail = (f"{len(selection.unlocated)} tensors cannot be located in the file or are not contiguous "
                  f"(first: {selection.unlocated[0]})")
    else:
        detail = (f"{len(selection.missing)} of {len(tower.expected_shapes())} tensors are missing "
                  f"(first: {selection.missing[0]})")
    return "unusable-text-encoder", f"The text encoder under {selection.prefix}* cannot be provisioned: {detail}."


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def _existing_is_ours(existing: Dict[str, Any], layout: Optional[str]) -> Optional[bool]:
    cached = [f for f in (existing.get("files") or {}).values() if f.get("state") == "cached" and f.get("path")]
    if not cached:
        return None
    if layout == "legacy":
        return _legacy_is_ours(cached[0]["path"])
    return is_ours(os.path.dirname(cached[0]["path"]))


def _write(result: ProvisionResult, checkpoint: str, cache_dir: str, entries, metadata: Dict[str, str],
           tower: TextTower, versions: Mapping[str, Optional[str]], locations: Optional[Dict[str, Any]]) -> None:
    """Stage every file under a temporary name, then move them into place (refs/main last)."""
    layout = result.layout
    repo = repo_dir(cache_dir)
    stage_dir = os.path.join(repo, "blobs") if layout == "hub" else cache_dir
    created = [d for d in (repo, stage_dir) if layout == "hub" and not os.path.isdir(d)]
    staged: List[StagedFile] = []
    sources = _Sources(checkpoint)
    try:
        os.makedirs(stage_dir, exist_ok=True)
        for name, data in tokenizer_files().items():
            staged.append(stage_bytes(stage_dir, name, data, "tokenizer"))
        staged.append(stage_bytes(stage_dir, "config.json", config_bytes(tower), "text encoder config"))
        staged.append(stage_weights(stage_dir, result.weights_name or "model.safetensors", entries, sources, metadata))
        if layout == "hub":
            # The revision names the content (README aside), so a re-run resumes the same snapshot.
            content = "\n".join(f"{s.name} {s.etag}" for s in sorted(staged, key=lambda s: s.name))
            result.revision = hashlib.sha1(("ldm-diagnostics provision-clip\n" + content).encode("utf-8")).hexdigest()
            ref = os.path.join(repo, "refs", "main")
            if os.path.isfile(ref):
                with open(ref, encoding="utf-8", errors="replace") as fh:
                    result.previous_ref = fh.read().strip() or None
        readme = readme_text(result, staged, checkpoint, tower, versions).encode("utf-8")
        staged.append(stage_bytes(stage_dir, MARKER, readme, "marker (README: where these files come from)"))
        if layout == "hub":
            _place_hub(cache_dir, staged, stage_dir, result)
        elif layout == "legacy":
            _place_legacy(cache_dir, staged, (locations or {}).get("endpoint") or "https://huggingface.co", result)
        else:
            _place_dir(cache_dir, staged, result)
    except BaseException:
        for s in staged:
            _unlink(s.tmp)
        for d in reversed(created):  # a folder this run created and left empty would read as a corrupted repo
            try:
                os.rmdir(d)
            except OSError:
                pass
        raise
    finally:
        sources.close()


def _done(result: ProvisionResult, start: float, state: str, message: str) -> ProvisionResult:
    result.state, result.message = state, message
    result.seconds = time.perf_counter() - start
    return result
