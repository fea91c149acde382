"""Checkpoint inspection: what is in the file and what is broken, without running its code (issue 4).

`inspect_checkpoint(path)` returns one JSON-serialisable dict of facts; `probe_checkpoint(ctx)` is the
memoised probe (`ctx.fact("checkpoint", probe_checkpoint)`) the `ckpt.*` rules, `inspect` and the
report share. `read_tensor_records(path)` (reading.py) is the dispatch underneath, public for code
that needs the located tensor records themselves (the CLIP remedy). The pipeline, each step in its
own module:

    sniff (first bytes)  ->  reader (safetensors header | torch zip | legacy | pickle | diffusers folder)
      -> layout (components, family, variant, EMA, CLIP; names and shapes only)
      -> values (position_ids, EMA decay/num_updates: a few hundred bytes)
      -> deep scan (--deep: NaN/Inf, EMA vs model)  ->  hashes (--hash, cached)

Bad input never raises: it becomes an entry of `problems` with the finding code it belongs to
(`ckpt.format` or `ckpt.corrupt`) and a machine-readable `kind` that the rules turn into cause and fix.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Dict, List, Mapping, Optional

from .reading import CheckpointRecords, read_tensor_records
from .records import ReadResult, TensorRecord, problem

Progress = Callable[[int, int, str], None]
FORMATS = ("safetensors", "torch-zip", "torch-legacy", "pickle", "diffusers-dir", "unknown")


def _base_facts(path: str) -> Dict[str, Any]:
    return {
        "path": path,
        "realpath": None,
        "format": "unknown",
        "content": None,
        "size_bytes": None,
        "analysed": False,
        "problems": [],
        "container": {},
        "safe": None,
        "unsafe_globals": [],
        "pickle": None,
        "weights_only": None,
        "tensors_total": 0,
        "parameters_total": 0,
        "tensor_bytes_total": 0,
        "components": {},
        "unknown_keys": [],
        "unknown_keys_count": 0,
        "family": "unknown",
        "family_evidence": {},
        "variant": "unknown",
        "unet_in_channels": None,
        "unet": {},
        "text_encoder": {"present": False, "kind": None, "key_style": None, "prefixes": [], "width": None},
        "position_ids": "absent",
        "position_ids_detail": {"status": "absent"},
        "ema": {"present": False, "tensors": 0, "missing": [], "shape_mismatches": [], "num_updates": None,
                "decay": None},
        "training": {"global_step": None, "epoch": None, "lightning_version": None},
        "metadata": {},
        "non_tensor_entries": [],
        "deep": None,
        "hash": None,
        "seconds": {},
    }


def inspect_checkpoint(path: str, deep: bool = False, want_hash: bool = False,
                       environ: Optional[Mapping[str, str]] = None, progress: Optional[Progress] = None,
                       use_hash_cache: bool = True) -> Dict[str, Any]:
    """All facts about the checkpoint at `path`; never raises for bad input."""
    environ = os.environ if environ is None else environ
    start = time.perf_counter()
    facts = _base_facts(path)
    facts["options"] = {"deep": bool(deep), "hash": bool(want_hash)}
    read = read_tensor_records(path)
    facts["problems"].extend(read.problems)
    facts["realpath"], facts["size_bytes"] = read.realpath, read.size_bytes
    facts["format"], facts["content"] = read.format, read.content
    if read.sniff is not None:
        facts["sniff"] = read.sniff
    result = read.result
    if read.format == "diffusers-dir" and result is not None:
        return _finish(_inspect_dir(result, facts, deep, progress), start)
    if result is not None:
        facts["seconds"]["read"] = round(read.seconds, 4)
        _inspect_file(path, read, facts, deep, progress)
    if want_hash and read.sniff is not None and read.size_bytes:
        # Hashes are worth having even for a file we cannot parse (compare it with the publisher's).
        _hash(path, facts, environ, progress, use_hash_cache)
    return _finish(facts, start)


def _inspect_file(path: str, read: CheckpointRecords, facts: Dict[str, Any], deep: bool,
                  progress: Optional[Progress]) -> None:
    result = read.result
    big_endian = read.byteorder == "big"
    _apply(result, facts)
    try:
        with open(path, "rb") as fh:
            if not big_endian:  # values and the deep scan read little-endian numbers
                _values(fh, result.tensors, facts, result.resolve)
            elif facts.get("position_ids_key"):
                facts["position_ids"] = "unreadable"
                facts["position_ids_detail"] = {"status": "unreadable", "key": facts["position_ids_key"],
                                                "problems": ["big-endian storages are not decoded"]}
            if deep and result.resolve is not None:
                result.resolve(fh, result.tensors)
    except (OSError, MemoryError) as exc:
        facts["problems"].append(problem("ckpt.corrupt", "read-error", f"reading {path} failed: {exc}"))
    if deep and big_endian:
        facts["deep"] = {"ran": False, "reason": "the storages are big-endian (torch 'byteorder' record)"}
    elif deep:
        t0 = time.perf_counter()
        _deep(path, result.tensors, facts, progress)
        facts["seconds"]["deep"] = round(time.perf_counter() - t0, 4)


def _hash(path: str, facts: Dict[str, Any], environ: Mapping[str, str], progress: Optional[Progress],
          use_cache: bool) -> None:
    from .hashing import hash_file

    t0 = time.perf_counter()
    try:
        with open(path, "rb") as fh:
            facts["hash"] = hash_file(path, fh, os.fstat(fh.fileno()), environ, progress, use_cache=use_cache)
        facts["sha256"] = facts["hash"]["sha256"]
    except OSError as exc:
        facts["hash"] = {"error": f"{exc.strerror or exc}"}
    facts["seconds"]["hash"] = round(time.perf_counter() - t0, 4)


def _apply(result: ReadResult, facts: Dict[str, Any]) -> None:
    from .layout import analyse

    facts["problems"].extend(result.problems)
    facts["container"] = result.container
    facts["metadata"] = result.metadata
    facts["non_tensor_entries"] = result.non_tensor_entries[:50]
    if result.pickle is not None:
        facts["pickle"] = result.pickle
        facts["unsafe_globals"] = list(result.pickle["unsafe_globals"])
        facts["weights_only"] = result.pickle["weights_only"]
        incomplete = any(p["kind"] in ("pickle-error", "pickle-too-large", "legacy-truncated")
                         for p in result.problems) or bool(result.pickle.get("unverified"))
        facts["safe"] = not facts["unsafe_globals"] and not incomplete
        facts["pickle"]["verified"] = not incomplete
    elif facts["format"] in ("safetensors", "diffusers-dir"):
        facts["safe"] = True
    layout = analyse(result.tensors)
    ema = dict(layout.pop("ema"))
    facts.update(layout)
    facts["ema"] = dict(facts["ema"], **ema)
    training = dict(facts["training"])
    training.update(result.training)
    training["top_level_keys"] = result.top_level_keys
    training["state_dict_path"] = result.hints.get("state_dict_path", [])
    training["other_tensors"] = result.other_tensors
    training["optimizer_states"] = {
        "present": "optimizer_states" in result.top_level_keys,
        "tensors": result.other_tensors.get("optimizer_states", {}).get("tensors", 0),
        "bytes": result.other_tensors.get("optimizer_states", {}).get("bytes", 0),
    }
    facts["training"] = training
    facts["reader_hints"] = {k: v for k, v in result.hints.items() if k != "diffusers"}
    if "diffusers" in result.hints:
        from .diffusers_dir import diffusers_layout

        d = diffusers_layout(result.hints["diffusers"]["configs"])
        facts["family"], facts["variant"], facts["unet_in_channels"] = d["family"], d["variant"], d["unet_in_channels"]
        facts["family_evidence"] = {"source": "unet/config.json", "context_dim": d["context_dim"]}
        if d["text_encoder_kind"]:
            facts["text_encoder"]["kind"] = d["text_encoder_kind"]
            facts["components"]["text_encoder"]["kind"] = d["text_encoder_kind"]
        facts["diffusers"] = result.hints["diffusers"]
    facts["analysed"] = True


def _values(fh, tensors: List[TensorRecord], facts: Dict[str, Any], resolve=None) -> None:
    from .values import position_ids_facts, read_values, scalar

    by_name = {t.name: t for t in tensors}
    key = facts.get("position_ids_key")
    record = by_name.get(key) if key else None
    if resolve is not None:
        wanted = [by_name[n] for n in (key, "model_ema.num_updates", "model_ema.decay") if n and n in by_name]
        resolve(fh, wanted)
    values = read_values(fh, record) if record is not None else None
    detail = position_ids_facts(record, values)
    facts["position_ids_detail"] = detail
    facts["position_ids"] = {"ok": "ok", "absent": "absent"}.get(detail["status"], "broken")
    if detail["status"] == "unreadable":
        facts["position_ids"] = "unreadable"
    if facts["ema"].get("present") or "model_ema.num_updates" in by_name:
        num = scalar(fh, by_name.get("model_ema.num_updates"))
        decay = scalar(fh, by_name.get("model_ema.decay"))
        facts["ema"]["num_updates"] = int(num) if isinstance(num, (int, float)) and num == num else None
        facts["ema"]["decay"] = float(decay) if isinstance(decay, (int, float)) else None


def _deep(path: str, tensors: List[TensorRecord], facts: Dict[str, Any], progress: Optional[Progress]) -> None:
    from .deep import deep_scan

    groups: Dict[str, List[TensorRecord]] = {}
    for t in tensors:
        groups.setdefault(t.file or path, []).append(t)
    parts: List[Dict[str, Any]] = []
    try:
        for file, group in groups.items():
            parts.append(deep_scan(file, group, progress))
            if not parts[-1].get("ran"):
                break
    except OSError as exc:
        parts.append({"ran": False, "reason": f"reading tensor data failed: {exc.strerror or exc}"})
    merged = _merge_deep(parts)
    facts["deep"] = merged
    if merged.get("ran"):
        facts["nonfinite_tensors"] = [n["name"] for n in merged["nonfinite"]]
        if merged.get("ema"):
            facts["ema"]["identical_to_model"] = merged["ema"]["identical_to_model"]
            facts["ema"]["difference"] = {k: v for k, v in merged["ema"].items() if k != "identical_to_model"}


def _merge_deep(parts: List[Dict[str, Any]]) -> Dict[str, Any]:
    failed = [p for p in parts if not p.get("ran")]
    if failed:
        return failed[0]
    merged: Dict[str, Any] = {"ran": True, "seconds": 0.0, "bytes_read": 0, "tensors_scanned": 0, "nonfinite": [],
                              "nonfinite_count": 0, "skipped": [], "skipped_count": 0, "ema": None}
    for p in parts:
        for key in ("seconds", "bytes_read", "tensors_scanned", "nonfinite_count", "skipped_count"):
            merged[key] += p[key]
        merged["nonfinite"].extend(p["nonfinite"])
        merged["skipped"].extend(p["skipped"])
        merged["ema"] = merged["ema"] or p.get("ema")
        merged["buffer_bytes"] = p.get("buffer_bytes")
    merged["seconds"] = round(merged["seconds"], 3)
    merged["read_rate_mb_s"] = round(merged["bytes_read"] / merged["seconds"] / 1e6, 1) if merged["seconds"] else None
    return merged


def _inspect_dir(result: ReadResult, facts: Dict[str, Any], deep: bool, progress: Optional[Progress]) -> Dict[str, Any]:
    """A diffusers folder: each component file is read on its own, so values are read file by file."""
    _apply(result, facts)
    by_file: Dict[str, List[TensorRecord]] = {}
    for t in result.tensors:
        by_file.setdefault(t.file or "", []).append(t)
    for file, group in by_file.items():
        if facts.get("position_ids_key") not in {t.name for t in group}:
            continue
        try:
            with open(file, "rb") as fh:
                _values(fh, group, facts)
        except OSError:
            pass
    if deep:
        _deep(facts["path"], result.tensors, facts, progress)
    return facts


def _finish(facts: Dict[str, Any], start: float) -> Dict[str, Any]:
    facts["seconds"]["total"] = round(time.perf_counter() - start, 4)
    facts["readable"] = facts["analysed"] and not any(
        p["code"] == "ckpt.corrupt" and p.get("severity") != "warn" for p in facts["problems"])
    return facts


def probe_checkpoint(ctx) -> Dict[str, Any]:
    """The memoised probe (`ctx.fact("checkpoint", probe_checkpoint)`) for the context's checkpoint."""
    path = ctx.options.checkpoint
    if not path:
        return {"path": None, "analysed": False, "problems": []}
    progress = getattr(ctx, "progress", None)
    return inspect_checkpoint(str(path), deep=ctx.options.deep, want_hash=ctx.options.hash, environ=ctx.environ,
                              progress=progress)
