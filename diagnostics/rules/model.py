"""Building, loading and running the user's model: `model.*` and `cuda.memory`.

The facts come from one child-process run (`probes/model.py`, the `model` fact):
import the config's target with the user's code first on sys.path, instantiate it the way
`ldm.util.instantiate_from_config` does, load the checkpoint with `strict=False`, move it to the
device and run a smoke forward. These rules turn that run into findings; the pieces live apart:
- `model_stages.py`: which check owns a failed stage, shared formats and findings;
- `model_diagnosis.py`: an exception becomes its cause and fix (knowledge base K01/K02 CLIP files,
  K03 rank_zero_only, K14 OOM, K18 ldm not importable, ...);
- `model_keys.py`: `model.load-keys`, the key-matching result grouped by component and explained;
- here: the import, instantiate, smoke-forward and GPU-memory rules, and the check declarations.
"""

from __future__ import annotations

import os
from typing import Any, Callable, List, Mapping, Optional

from ..findings import Finding, Status, verdict
from ..registry import Check
from ..util import fmt_bytes
from .model_diagnosis import CLIP_RELATED, diagnose
from .model_keys import explain_group, rule_model_load_keys
from .model_stages import (COMPONENT_NAMES, STAGE_CHECK, code_root_missing, error_finding, failed_before, first_line,
                           fmt_params, not_run, secs, skipped)

__all__ = ["CHECKS", "degenerate_tokenizer", "diagnose", "explain_group", "rule_cuda_memory", "rule_model_import",
           "rule_model_instantiate", "rule_model_load_keys", "rule_smoke_forward"]


def rule_model_import(model: Mapping[str, Any], ldm: Optional[Mapping[str, Any]],
                      versions: Optional[Mapping[str, Optional[str]]]) -> Finding:
    before = code_root_missing(model) or not_run(model)
    if before:
        return before
    err = model.get("error")
    if err and err.get("stage") in ("import", "start"):
        return error_finding(err, diagnose(err, ldm, versions), model)
    data = (model.get("stages") or {}).get("import")
    if not data:
        return skipped("The import step did not report (see the model output).")
    notable = model.get("notable") or {}
    evidence = {"target": data.get("target"), "target_file": data.get("target_file"), "ldm": data.get("ldm_file"),
                "torch": data.get("torch"), "python": data.get("python"), "targets": data.get("targets"),
                "versions": data.get("versions"),
                "ckpt_paths_ignored": data.get("ckpt_paths_ignored"),
                "xformers_line": notable.get("xformers_missing")}
    bad = [t for t in data.get("targets") or [] if not t.get("ok")]
    if bad:
        first = bad[0]
        diag = diagnose(dict(first.get("error") or {}, stage="import"), ldm, versions)
        return verdict(Status.FAIL,
                       f"{data.get('target')} imports, but {len(bad)} other target(s) do not: {first['target']} "
                       f"({first['path']}): {diag.summary}", evidence=evidence, cause=diag.cause, fix=diag.fix,
                       docs=diag.docs)
    code_root = (model.get("request") or {}).get("code_root")
    ldm_file = data.get("ldm_file")
    if code_root and ldm_file and not _under(ldm_file, code_root):
        return verdict(Status.WARN,
                       f"{data.get('target')} imports, but from {ldm_file}, not from --code-root {code_root}: the "
                       "check ran against another copy of ldm than the one you pointed at.", evidence=evidence,
                       blocking=False,
                       cause=f"{code_root} has no `ldm/` package, so `import ldm` found an installed one.",
                       fix="Pass the directory that contains `ldm/` (the repository root) as --code-root.")
    note = (" ldm printed \"No module 'xformers'. Proceeding without it.\" (plain attention; see "
            "compat.xformers-missing).") if notable.get("xformers_missing") else ""
    ignored = data.get("ckpt_paths_ignored") or []
    if ignored:
        note += f" Ignored {len(ignored)} ckpt_path entr{'y' if len(ignored) == 1 else 'ies'} of the config (the " \
                "checkpoint is loaded separately, with weights_only=True)."
    return verdict(Status.OK,
                   f"Imported {data.get('target')} from {data.get('ldm_file') or data.get('target_file')} "
                   f"(torch {data.get('torch')}) and {len(data.get('targets') or [])} other targets in "
                   f"{secs(data.get('seconds'))}.{note}", evidence=evidence)


def _under(path: str, root: str) -> bool:
    norm = lambda p: os.path.normcase(os.path.realpath(p))  # noqa: E731
    return norm(path).startswith(norm(root).rstrip(os.sep) + os.sep)


def degenerate_tokenizer(tok: Optional[Mapping[str, Any]]) -> bool:
    """The transformers 5 fallback: a 2-token tokenizer that maps every word to one id."""
    if not tok or tok.get("error"):
        return False
    ids = tok.get("ids") or []
    inner = ids[1:-1] if len(ids) > 2 else ids
    return (tok.get("size") or 0) <= 3 or len(set(inner)) < 3


def rule_model_instantiate(model: Mapping[str, Any], ldm: Optional[Mapping[str, Any]],
                           versions: Optional[Mapping[str, Optional[str]]],
                           text_encoder_files: Callable[[], Mapping[str, Any]],
                           results: Mapping[str, Any]) -> Finding:
    """`text_encoder_files` (on demand) is asked only when the instantiate step failed; `results` holds
    the checks it needs (CLIP_RELATED), quoted when the failure is about the CLIP files."""
    before = not_run(model) or failed_before(model, ("start", "import"))
    if before:
        return before
    err = model.get("error")
    if err and err.get("stage") == "instantiate":
        clip_files = text_encoder_files()
        diag = diagnose(err, ldm, versions, clip_files)
        if diag.kind != "clip-files":
            return error_finding(err, diag, model)
        related = [{"code": f.code, "status": f.status.value, "summary": f.summary}
                   for code in CLIP_RELATED if code in results for f in results[code].findings]
        return error_finding(err, diag, model, related=related, extra={"text_encoder_files": clip_files})
    data = (model.get("stages") or {}).get("instantiate")
    if not data:
        return skipped("The instantiate step did not report (see the model output).")
    notable = model.get("notable") or {}
    comps = data.get("components") or {}
    parts = []
    for name, info in comps.items():
        label = COMPONENT_NAMES.get(name, name)
        if name == "model_ema":
            parts.append(f"{label} {info.get('tensors')} buffers")
        else:
            parts.append(f"{label} {fmt_params(info.get('parameters'))}")
    evidence = {"class": data.get("class"), "seconds": data.get("seconds"), "meta_device": data.get("meta"),
                "meta_error": data.get("meta_error"), "components": comps, "parameters": data.get("parameters"),
                "use_ema": data.get("use_ema"), "unet": data.get("unet"), "tokenizer": data.get("tokenizer"),
                "params_lines": notable.get("params_lines"), "prediction_mode": notable.get("prediction_mode"),
                "rss_peak": fmt_bytes(data.get("rss_peak_bytes")) if data.get("rss_peak_bytes") else None}
    tok = data.get("tokenizer")
    if degenerate_tokenizer(tok):
        return verdict(
            Status.FAIL,
            f"The model built, but its CLIP tokenizer is empty: {tok.get('size')} tokens, "
            f"{tok.get('prompt')!r} -> {tok.get('ids')}: every prompt encodes to the same ids.",
            evidence=evidence,
            cause="transformers 5 returns a placeholder tokenizer instead of raising when the tokenizer files are "
                  "missing (compat.tokenizer-silent-empty).",
            fix="Provide vocab.json and merges.txt for the text encoder's `version` (see tokenizer.functional, "
                "cache.model-missing).")
    how = "parameters on the meta device, no weights allocated" if data.get("meta") else "weights allocated"
    line = f" ({notable['params_lines'][0]})" if notable.get("params_lines") else ""
    return verdict(Status.OK,
                   f"Built {str(data.get('class')).rsplit('.', 1)[-1]} in {secs(data.get('seconds'))} ({how}): "
                   + ", ".join(parts) + f"{line}.", evidence=evidence)



def rule_smoke_forward(model: Mapping[str, Any]) -> Finding:
    before = not_run(model) or failed_before(model, ("start", "import", "instantiate", "load"))
    if before:
        return before
    not_done = model.get("skipped") or {}
    if "smoke" in not_done or "device" in not_done:
        return skipped((not_done.get("smoke") or not_done.get("device") or "").rstrip(".") + ".")
    err = model.get("error")
    if err and err.get("stage") in ("device", "smoke"):
        return error_finding(err, diagnose(err), model)
    data = (model.get("stages") or {}).get("smoke")
    device = ((model.get("stages") or {}).get("device") or {})
    if not data:
        return skipped("The smoke step did not report (see the model output).")
    parts = data.get("parts") or {}
    problems, done = [], []
    for name, label in (("text", "text encoder"), ("unet", "UNet step"), ("vae", "VAE decode")):
        part = parts.get(name) or {}
        if part.get("error"):
            e = part["error"]
            problems.append(f"{label} raised `{e.get('type')}: {first_line(e.get('message') or '')}`")
        elif part.get("skipped"):
            done.append(f"{label} skipped ({part['skipped']})")
        elif part.get("finite") is False:
            problems.append(f"{label} output {part.get('shape')} has NaN/Inf values")
        elif part:
            done.append(f"{label} {part.get('shape')}")
    evidence = {"device": device.get("device"), "dtype": device.get("dtype"), "latent_size": data.get("latent_size"),
                "image_size": data.get("image_size"), "parts": parts, "zero_filled": device.get("zero_filled"),
                "seconds_to_device": device.get("seconds"), "rss_peak_bytes": data.get("rss_peak_bytes")}
    where = f"on {device.get('device')} ({device.get('dtype')}) at {data.get('image_size')} px"
    if problems:
        nan = any("NaN" in p for p in problems)
        return verdict(
            Status.FAIL, f"Smoke forward {where}: " + "; ".join(problems) + ".", evidence=evidence,
            cause=("fp16 overflow (the SD VAE is known to produce NaN in half precision) or broken weights "
                   "." if nan else "The model cannot run a forward pass as configured "
                   "(traceback in the evidence)."),
            fix=("Run the VAE in fp32 (A1111 --no-half-vae) or use the fp16-fixed VAE; check the checkpoint for "
                 "non-finite tensors (ckpt.nonfinite)." if nan else
                 "Fix the config/checkpoint findings above; the error names the failing layer."))
    total_seconds = sum((p or {}).get("seconds") or 0 for p in parts.values())
    rss = data.get("rss_peak_bytes")
    note = f" Process peak memory (RSS) {fmt_bytes(rss)}." if rss and device.get("device") == "cpu" else ""
    if device.get("zero_filled"):
        note += f" {device['zero_filled']} tensors missing from the checkpoint were zero-filled for the run."
    return verdict(Status.OK, f"Smoke forward {where}: " + ", ".join(done)
                   + f"; all outputs finite ({secs(total_seconds)}).{note}", evidence=evidence)


def rule_cuda_memory(model: Mapping[str, Any]) -> Finding:
    if not model.get("ran"):
        return skipped(model.get("message") or "The model was not built.")
    not_done = model.get("skipped") or {}
    device = (model.get("stages") or {}).get("device") or {}
    err = model.get("error")
    if "device" in not_done:
        return skipped(str(not_done["device"]).rstrip(".") + ".")
    if err and err.get("stage") in ("start", "import", "instantiate", "load"):
        return skipped(f"Did not run: the {err['stage']} step failed first (see {STAGE_CHECK.get(err['stage'])}).")
    req = model.get("request") or {}
    if device.get("device") == "cpu" or (not device and req.get("device") == "cpu"):
        return skipped("--device cpu was given: the model ran on the CPU, GPU memory was not measured.")
    if err and err.get("stage") in ("device", "smoke") and (err.get("kind") == "oom" or
                                                          "out of memory" in str(err.get("message")).lower()):
        total = device.get("total_memory")
        return verdict(Status.FAIL,
                       f"CUDA out of memory during {err['stage']}: `{first_line(str(err.get('message')))}`.",
                       evidence={"stage": err["stage"], "error": err.get("message"),
                                 "total_memory": fmt_bytes(total) if total else None,
                                 "dtype": device.get("dtype") or req.get("dtype")},
                       cause="The model (fp32 SD 1.x: about 4.0 GiB, +3.2 GiB with EMA buffers) plus activations does not "
                             "fit in free GPU memory, or other processes hold it.",
                       fix="Load in fp16 (LDM_DIAG_DTYPE=fp16; model.half()), set use_ema: False, stop other GPU "
                           "processes (nvidia-smi), lower the resolution, or set "
                           "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True.",
                       docs=["https://github.com/CompVis/stable-diffusion/issues/760"])
    if not device:
        return skipped("The model was not moved to a GPU.")
    smoke = (model.get("stages") or {}).get("smoke") or {}
    peak = smoke.get("max_memory_allocated") or device.get("max_memory_allocated")
    total = device.get("total_memory")
    evidence = {"gpu": device.get("gpu"), "dtype": device.get("dtype"), "seconds_to_device": device.get("seconds"),
                "allocated_after_move": device.get("memory_allocated"), "peak": peak, "total": total,
                "image_size": smoke.get("image_size")}
    text = (f"Moved to {device.get('gpu') or 'cuda'} ({device.get('dtype')}) in {secs(device.get('seconds'))}: "
            f"{fmt_bytes(device.get('memory_allocated'))} after the move, peak {fmt_bytes(peak)}"
            + (f" during a {smoke.get('image_size')} px smoke forward" if smoke else "")
            + (f", of {fmt_bytes(total)}" if total else "") + ".")
    if total and peak and peak > 0.9 * total:
        return verdict(Status.WARN, text + " That is over 90% of the GPU: full-size sampling with "
                                                        "batches will run out of memory.", evidence=evidence,
                       fix="Use fp16 (LDM_DIAG_DTYPE=fp16), use_ema: False, or a GPU with more memory.")
    return verdict(Status.OK, text, evidence=evidence)


# ---------------------------------------------------------------------------------------------

_RUN = ("model", "ldm", "versions")  # the model run, the ldm code it imported, the installed versions
CHECKS: List[Check] = [
    Check("model.import", "Import of the model code", rule_model_import, reads=_RUN),
    Check("model.instantiate", "Model instantiation from the config", rule_model_instantiate, reads=_RUN,
          on_demand=("text_encoder_files",), needs=CLIP_RELATED),
    Check("model.load-keys", "Checkpoint keys vs model (strict=False)", rule_model_load_keys, reads=("model",)),
    Check("model.smoke-forward", "Smoke forward: text encoder, one UNet step, VAE decode", rule_smoke_forward,
          reads=("model",)),
    Check("cuda.memory", "GPU memory for the model", rule_cuda_memory, reads=("model",)),
]
