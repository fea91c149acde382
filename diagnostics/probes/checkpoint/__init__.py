"""Checkpoint inspection: what is in the file and what is broken, without running its code (issue 4).

`inspect_checkpoint(path)` returns the facts (`CheckpointFacts`, `to_dict()` is the JSON); `probe_checkpoint(ctx)` is the
memoised probe (`ctx.fact("checkpoint", probe_checkpoint)`) the `ckpt.*` rules, `inspect` and the
report share. `read_tensor_records(path)` (reading.py) is the dispatch underneath, public for code
that needs the located tensor records themselves (the CLIP remedy). The pipeline, each step in its
own module:

    sniff (first bytes)  ->  reader (safetensors header | torch zip | legacy | pickle | diffusers folder)
      -> layout (components, family, variant, EMA, CLIP; names and shapes only)
      -> values (position_ids, EMA decay/num_updates: a few hundred bytes)
      -> deep scan (--deep: NaN/Inf, EMA vs model)  ->  hashes (--hash, cached)

Bad input never raises: it becomes an entry of `problems` with a machine-readable `kind`; the rules'
table (`rules/checkpoint/problems.py`) says which finding reports it, with cause and fix.

Public API for code outside this package (the model child, the CLIP remedy, the config checks):
`read_tensor_records`, `inspect_checkpoint`, `file_format` (sniff.py), `read_safetensors_header`
(safetensors_fmt.py), and the layout constants and functions of `layout.py`.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Dict, List, Mapping, Optional

from .facts import FORMATS, STATE_DICT_FORMATS, CheckpointFacts
from .reading import CheckpointRecords, read_tensor_records
from .records import Problem, ReadResult, TensorRecord, problem
from .safetensors_fmt import read_safetensors_header
from .sniff import file_format

Progress = Callable[[int, int, str], None]


def inspect_checkpoint(path: str, deep: bool = False, want_hash: bool = False,
                       environ: Optional[Mapping[str, str]] = None, progress: Optional[Progress] = None,
                       use_hash_cache: bool = True) -> CheckpointFacts:
    """All facts about the checkpoint at `path`; never raises for bad input."""
    environ = os.environ if environ is None else environ
    start = time.perf_counter()
    facts = CheckpointFacts(path=path, options={"deep": bool(deep), "hash": bool(want_hash)})
    read = read_tensor_records(path)
    facts.problems.extend(read.problems)
    facts.realpath, facts.size_bytes = read.realpath, read.size_bytes
    facts.format, facts.content = read.format, read.content
    if read.sniff is not None:
        facts.sniff = read.sniff
    result = read.result
    if read.format == "diffusers-dir" and result is not None:
        return _finish(_inspect_dir(result, facts, deep, progress), start)
    if result is not None:
        facts.seconds["read"] = round(read.seconds, 4)
        _inspect_file(path, read, facts, deep, progress)
    if want_hash and read.sniff is not None and read.size_bytes:
        # Hashes are worth having even for a file we cannot parse (compare it with the publisher's).
        _hash(path, facts, environ, progress, use_hash_cache)
    return _finish(facts, start)


def _inspect_file(path: str, read: CheckpointRecords, facts: CheckpointFacts, deep: bool,
                  progress: Optional[Progress]) -> None:
    result = read.result
    big_endian = read.byteorder == "big"
    _apply(result, facts)
    try:
        with open(path, "rb") as fh:
            if not big_endian:  # values and the deep scan read little-endian numbers
                _values(fh, result.tensors, facts, result.resolve)
            elif facts.position_ids_key:
                facts.position_ids = "unreadable"
                facts.position_ids_detail = {"status": "unreadable", "key": facts.position_ids_key,
                                             "problems": ["big-endian storages are not decoded"]}
            if deep and result.resolve is not None:
                result.resolve(fh, result.tensors)
    except (OSError, MemoryError) as exc:
        facts.problems.append(problem("read-error", f"reading {path} failed: {exc}"))
    if deep and big_endian:
        facts.deep = {"ran": False, "reason": "the storages are big-endian (torch 'byteorder' record)"}
    elif deep:
        t0 = time.perf_counter()
        _deep(path, result.tensors, facts, progress)
        facts.seconds["deep"] = round(time.perf_counter() - t0, 4)


def _hash(path: str, facts: CheckpointFacts, environ: Mapping[str, str], progress: Optional[Progress],
          use_cache: bool) -> None:
    from .hashing import hash_file

    t0 = time.perf_counter()
    try:
        with open(path, "rb") as fh:
            facts.hash = hash_file(path, fh, os.fstat(fh.fileno()), environ, progress, use_cache=use_cache)
        facts.sha256 = facts.hash["sha256"]
    except OSError as exc:
        facts.hash = {"error": f"{exc.strerror or exc}"}
    facts.seconds["hash"] = round(time.perf_counter() - t0, 4)


_UNVERIFIED_KINDS = ("pickle-error", "pickle-too-large", "legacy-truncated")


def _apply(result: ReadResult, facts: CheckpointFacts) -> None:
    from .layout import analyse

    facts.problems.extend(result.problems)
    facts.container = result.container
    facts.metadata = result.metadata
    facts.non_tensor_entries = result.non_tensor_entries[:50]
    facts.records = list(result.tensors)
    if result.pickle is not None:
        facts.pickle = result.pickle
        facts.unsafe_globals = list(result.pickle["unsafe_globals"])
        facts.weights_only = result.pickle["weights_only"]
        incomplete = any(p.kind in _UNVERIFIED_KINDS for p in result.problems) or bool(result.pickle.get("unverified"))
        facts.safe = not facts.unsafe_globals and not incomplete
        facts.pickle["verified"] = not incomplete
    elif facts.format in ("safetensors", "diffusers-dir"):
        facts.safe = True
    facts.apply_layout(analyse(result.tensors))
    facts.training = _training(result, facts.training)
    facts.reader_hints = {k: v for k, v in result.hints.items() if k != "diffusers"}
    if "diffusers" in result.hints:
        _apply_diffusers(result.hints["diffusers"], facts)
    facts.analysed = True


def _training(result: ReadResult, base: Dict[str, Any]) -> Dict[str, Any]:
    training = dict(base)
    training.update(result.training)
    training["top_level_keys"] = result.top_level_keys
    training["state_dict_path"] = result.hints.get("state_dict_path", [])
    training["other_tensors"] = result.other_tensors
    optimizer = result.other_tensors.get("optimizer_states", {})
    training["optimizer_states"] = {"present": "optimizer_states" in result.top_level_keys,
                                    "tensors": optimizer.get("tensors", 0), "bytes": optimizer.get("bytes", 0)}
    return training


def _apply_diffusers(hints: Dict[str, Any], facts: CheckpointFacts) -> None:
    from .diffusers_dir import diffusers_layout

    found = diffusers_layout(hints["configs"])
    facts.family, facts.variant, facts.unet_in_channels = found["family"], found["variant"], found["unet_in_channels"]
    facts.family_evidence = {"source": "unet/config.json", "context_dim": found["context_dim"]}
    if found["text_encoder_kind"]:
        facts.text_encoder["kind"] = found["text_encoder_kind"]
        facts.components["text_encoder"]["kind"] = found["text_encoder_kind"]
    facts.diffusers = hints


def _values(fh, tensors: List[TensorRecord], facts: CheckpointFacts, resolve=None) -> None:
    from .values import position_ids_facts, read_values, scalar

    by_name = {t.name: t for t in tensors}
    key = facts.position_ids_key or None
    record = by_name.get(key) if key else None
    if resolve is not None:
        wanted = [by_name[n] for n in (key, "model_ema.num_updates", "model_ema.decay") if n and n in by_name]
        resolve(fh, wanted)
    values = read_values(fh, record) if record is not None else None
    detail = position_ids_facts(record, values)
    facts.position_ids_detail = detail
    facts.position_ids = {"ok": "ok", "absent": "absent"}.get(detail["status"], "broken")
    if detail["status"] == "unreadable":
        facts.position_ids = "unreadable"
    if facts.ema.get("present") or "model_ema.num_updates" in by_name:
        num = scalar(fh, by_name.get("model_ema.num_updates"))
        decay = scalar(fh, by_name.get("model_ema.decay"))
        facts.ema["num_updates"] = int(num) if isinstance(num, (int, float)) and num == num else None
        facts.ema["decay"] = float(decay) if isinstance(decay, (int, float)) else None


def _deep(path: str, tensors: List[TensorRecord], facts: CheckpointFacts, progress: Optional[Progress]) -> None:
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
    facts.deep = merged
    if merged.get("ran"):
        facts.nonfinite_tensors = [n["name"] for n in merged["nonfinite"]]
        if merged.get("ema"):
            facts.ema["identical_to_model"] = merged["ema"]["identical_to_model"]
            facts.ema["difference"] = {k: v for k, v in merged["ema"].items() if k != "identical_to_model"}


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


def _inspect_dir(result: ReadResult, facts: CheckpointFacts, deep: bool, progress: Optional[Progress]) -> CheckpointFacts:
    """A diffusers folder: each component file is read on its own, so values are read file by file."""
    _apply(result, facts)
    by_file: Dict[str, List[TensorRecord]] = {}
    for t in result.tensors:
        by_file.setdefault(t.file or "", []).append(t)
    for file, group in by_file.items():
        if facts.position_ids_key not in {t.name for t in group}:
            continue
        try:
            with open(file, "rb") as fh:
                _values(fh, group, facts)
        except OSError:
            pass
    if deep:
        _deep(facts.path, result.tensors, facts, progress)
    return facts


def _finish(facts: CheckpointFacts, start: float) -> CheckpointFacts:
    facts.seconds["total"] = round(time.perf_counter() - start, 4)
    facts.readable = facts.analysed and not any(p.blocks_reading for p in facts.problems)
    return facts


def probe_checkpoint(ctx) -> CheckpointFacts:
    """The memoised probe (`ctx.fact("checkpoint", probe_checkpoint)`) for the context's checkpoint."""
    path = ctx.options.checkpoint
    if not path:
        return CheckpointFacts.not_given()
    progress = getattr(ctx, "progress", None)
    return inspect_checkpoint(str(path), deep=ctx.options.deep, want_hash=ctx.options.hash, environ=ctx.environ,
                              progress=progress)
