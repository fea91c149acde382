"""Checkpoint inspection: what is in the file and what is broken, without running its code (issue 4).

`inspect_checkpoint(path)` returns one JSON-serialisable dict of facts; `probe_checkpoint(ctx)` is the
memoised probe (`ctx.fact("checkpoint", probe_checkpoint)`) the `ckpt.*` rules, `inspect` and the
report share. The pipeline, each step in its own module:

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
    from .sniff import HEAD_BYTES, classify_stat, open_file, sniff, stat_path

    environ = os.environ if environ is None else environ
    start = time.perf_counter()
    facts = _base_facts(path)
    facts["options"] = {"deep": bool(deep), "hash": bool(want_hash)}
    st, prob = stat_path(path)
    if prob is not None:
        facts["problems"].append(prob)
        return _finish(facts, start)
    facts["realpath"] = os.path.realpath(path)
    facts["size_bytes"] = st.st_size if not os.path.isdir(path) else None
    if os.path.isdir(path):
        return _finish(_inspect_dir(path, facts, deep, progress), start)
    prob = classify_stat(path, st)
    if prob is not None:
        facts["problems"].append(prob)
        return _finish(facts, start)
    fh, prob = open_file(path)
    if prob is not None:
        facts["problems"].append(prob)
        return _finish(facts, start)
    with fh:
        try:
            head = fh.read(HEAD_BYTES)
        except OSError as exc:
            facts["problems"].append(problem("ckpt.corrupt", "read-error",
                                             f"reading {path} failed: {exc.strerror or exc}", errno=exc.errno))
            return _finish(facts, start)
        sniffed = sniff(head, st.st_size, path)
        facts["content"] = sniffed["kind"]
        facts["sniff"] = sniffed
        t0 = time.perf_counter()
        result = _read(fh, st.st_size, sniffed, facts, path)
        facts["seconds"]["read"] = round(time.perf_counter() - t0, 4)
        big_endian = result is not None and result.container.get("byteorder") == "big"
        if result is not None:
            _apply(result, facts)
            if not big_endian:  # values and the deep scan read little-endian numbers
                _values(fh, result.tensors, facts, result.resolve)
            elif facts.get("position_ids_key"):
                facts["position_ids"] = "unreadable"
                facts["position_ids_detail"] = {"status": "unreadable", "key": facts["position_ids_key"],
                                                "problems": ["big-endian storages are not decoded"]}
            if deep and result.resolve is not None:
                result.resolve(fh, result.tensors)
    if deep and result is not None and big_endian:
        facts["deep"] = {"ran": False, "reason": "the storages are big-endian (torch 'byteorder' record)"}
    elif deep and result is not None:
        t0 = time.perf_counter()
        _deep(path, result.tensors, facts, progress)
        facts["seconds"]["deep"] = round(time.perf_counter() - t0, 4)
    if want_hash and st.st_size > 0:
        # Hashes are worth having even for a file we cannot parse (compare it with the publisher's).
        from .hashing import hash_file

        t0 = time.perf_counter()
        try:
            with open(path, "rb") as fh:
                facts["hash"] = hash_file(path, fh, st, environ, progress, use_cache=use_hash_cache)
            facts["sha256"] = facts["hash"]["sha256"]
        except OSError as exc:
            facts["hash"] = {"error": f"{exc.strerror or exc}"}
        facts["seconds"]["hash"] = round(time.perf_counter() - t0, 4)
    return _finish(facts, start)


def _read(fh, size: int, sniffed: Dict[str, Any], facts: Dict[str, Any], path: str) -> Optional[ReadResult]:
    kind = sniffed["kind"]
    try:
        if kind == "empty":
            facts["problems"].append(problem("ckpt.corrupt", "empty", f"{path} is empty (0 bytes)"))
            return None
        if kind == "zip":
            from .torchfile import read_torch_zip

            result = read_torch_zip(fh, size)
            torch_zip = not any(p["kind"] == "zip-not-torch" for p in result.problems)
            facts["format"] = "torch-zip" if torch_zip else "unknown"
            if result.container.get("torchscript"):
                result.problems.append(problem(
                    "ckpt.format", "torchscript", "a TorchScript archive (code + constants), not a state dict",
                    severity="fail"))
            return result
        if kind == "safetensors":
            from .safetensors_fmt import read_safetensors

            facts["format"] = "safetensors"
            return read_safetensors(fh, size)
        if kind == "pickle":
            from .torchfile import read_torch_pickle_file

            result = read_torch_pickle_file(fh, size)
            facts["format"] = "torch-legacy" if result.container.get("kind") == "legacy" else "pickle"
            return result
    except (OSError, MemoryError) as exc:
        facts["problems"].append(problem("ckpt.corrupt", "read-error", f"reading {path} failed: {exc}"))
        return None
    details = {k: v for k, v in sniffed.items() if k != "kind"}
    messages = {
        "lfs-pointer": "a git-lfs pointer file (a few lines of text), not the checkpoint it points to",
        "html": "an HTML page, not a checkpoint" + (f" (title: {sniffed.get('title')!r})" if sniffed.get("title") else ""),
        "text": "a text file, not a checkpoint" + (f": {sniffed.get('first_line')!r}" if sniffed.get("first_line") else ""),
        "archive": f"a {sniffed.get('archive')} file, not a torch or safetensors checkpoint",
        "unknown": "not a format a checkpoint is stored in (no zip, pickle, safetensors or text signature)",
    }
    facts["problems"].append(problem("ckpt.format", kind, messages.get(kind, kind), **details))
    return None


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
                         for p in result.problems)
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


def _inspect_dir(path: str, facts: Dict[str, Any], deep: bool, progress: Optional[Progress]) -> Dict[str, Any]:
    from .diffusers_dir import is_diffusers_dir, read_diffusers_dir

    facts["content"] = "directory"
    try:
        if not os.access(path, os.R_OK | os.X_OK):
            raise PermissionError(path)
        names = sorted(os.listdir(path))
    except OSError as exc:
        facts["problems"].append(problem("ckpt.format", "permission-denied",
                                         f"{path} is a directory this user cannot list", detail=str(exc)))
        return facts
    if not is_diffusers_dir(path):
        candidates = [n for n in names if n.lower().endswith((".ckpt", ".safetensors", ".pt", ".pth", ".bin"))]
        unzipped = "data.pkl" in names or any(os.path.isfile(os.path.join(path, n, "data.pkl")) for n in names[:50])
        facts["problems"].append(problem(
            "ckpt.format", "directory",
            f"{path} is a directory, not a checkpoint file" + (" (it looks like an unzipped torch checkpoint)"
                                                              if unzipped else ""),
            candidates=candidates[:20], unzipped_torch=unzipped, entries=len(names)))
        return facts
    facts["format"] = "diffusers-dir"
    facts["content"] = "diffusers-dir"
    result = read_diffusers_dir(path)
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
        _deep(path, result.tensors, facts, progress)
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
