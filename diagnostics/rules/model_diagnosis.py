"""A failure while importing or building the model, turned into its cause and fix: the child
process's own failures (timeout, killed, not started), and every exception through the knowledge
base (the same matcher `explain` uses), with the CLIP-files failure (K01/K02) told in terms of the
files this machine lacks.
"""

from __future__ import annotations

from typing import Any, List, Mapping, Optional

from .model_stages import Diagnosis, first_line

CLIP_RELATED = ("cache.model-missing", "tokenizer.functional", "hub.dns")
# What a knowledge-base signature is called here (the kind of failure a model rule reports on).
KIND_BY_SIGNATURE = {"clip-tokenizer-load": "clip-files", "hub-offline-cached-files": "clip-files",
                     "ldm-not-importable": "ldm-missing", "pl-rank-zero-only": "rank-zero-only",
                     "python-module-missing": "module", "taming-vq2": "module", "hub-cached-download": "module",
                     "hub-too-new": "module", "numpy2-abi": "module", "open-clip-version": "module",
                     "lightning-missing": "module", "config-target-missing": "target",
                     "config-unknown-parameter": "config", "config-finetune-keys": "config", "cuda-oom": "oom"}


def _child_failure(error: Mapping[str, Any]) -> Optional[Diagnosis]:
    """The failures that are not exceptions: the child timed out, died, or never started."""
    kind = error.get("kind")
    message = str(error.get("message") or "")
    if kind == "timeout":
        stage = error.get("stage")
        cause = ("Building the model hung: FrozenCLIPEmbedder downloading from an unreachable hub retries for "
                 "minutes (see hub.dns / hub.connect), or the machine is too slow for this --timeout."
                 if stage == "instantiate" else f"The {stage} step took longer than --timeout.")
        return Diagnosis(f"Timed out during {stage}: {message}.", cause,
                         "Re-run with a larger --timeout (e.g. --timeout 600); set HF_HUB_OFFLINE=1 when the files "
                         "are already cached so nothing waits on the network.", related=("hub.dns",), kind="timeout")
    if kind in ("killed", "crashed"):
        oom = error.get("returncode") in (-9, 137)
        return Diagnosis(
            f"The model process died during {error.get('stage')}: {message}.",
            "Signal 9 is what the kernel's out-of-memory killer sends: the model does not fit in RAM." if oom else
            "The interpreter crashed inside native code (a torch/extension ABI mismatch, or memory).",
            "Free RAM or add swap; the fp32 SD 1.x model needs about 4.0 GiB plus 3.2 GiB for EMA weights (set "
            "use_ema: False for inference)." if oom else
            "Run the same import in a plain `python -c` to see the crash; reinstall torch and compiled extensions "
            "for this Python.", kind="oom" if oom else "crash")
    if kind == "not-started":
        return Diagnosis(f"The model process could not start: {message}.", "The Python interpreter could not be run.",
                         "Check that the interpreter running the harness can start subprocesses.", kind="crash")
    if kind == "omegaconf-missing":
        return Diagnosis(message, "ldm's configs are OmegaConf objects.", "Install omegaconf: `pip install omegaconf`.",
                         kind="module")
    if kind == "oom" or (error.get("type") == "MemoryError"):
        return Diagnosis(f"Out of memory: `{first_line(message) or error.get('type')}`.",
                         "The model does not fit in the available (GPU or CPU) memory.",
                         "Use fp16 (LDM_DIAG_DTYPE=fp16, model.half()), set use_ema: False, close other GPU "
                         "processes, or set PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True.",
                         related=("cuda.memory",), kind="oom")
    return None


def error_as_log(error: Mapping[str, Any]) -> str:
    """The child's exception as the log text the knowledge base reads."""
    text = str(error.get("traceback") or "").rstrip()
    line = f"{error.get('type') or 'Exception'}: {error.get('message') or ''}".rstrip()
    if "Traceback (most recent call last):" not in text:
        text = "Traceback (most recent call last):\n" + text if text else ""
    tail = text.strip().splitlines()[-1:] if text.strip() else []
    if not tail or not tail[0].startswith(str(error.get("type") or "\0")):
        text = (text + "\n" if text else "") + line
    return text


def match_error(error: Mapping[str, Any]):
    """The knowledge base's best explanation of the child's exception (the same matcher `explain` uses)."""
    from ..knowledge.matching import match_signatures, rank
    from ..knowledge.traceback import parse_log

    matches = [m for m in rank(match_signatures(parse_log(error_as_log(error)))) if m.weight >= 3]
    return matches[0] if matches else None


def _versions_note(signature, error: Mapping[str, Any], versions: Mapping[str, Optional[str]]) -> str:
    packages: List[str] = []
    for cause in signature.causes:
        for need in cause.needs:
            packages += [p for alternative in need.versions for p in alternative if p not in packages]
    imported = error.get("versions") or {}
    shown = [f"{p} {imported.get(p) or versions.get(p)}" for p in packages if imported.get(p) or versions.get(p)]
    return f" (imported: {', '.join(shown)})" if shown else ""


def diagnose(error: Mapping[str, Any], ldm: Optional[Mapping[str, Any]] = None,
             versions: Optional[Mapping[str, Optional[str]]] = None,
             clip_files: Optional[Mapping[str, Any]] = None) -> Diagnosis:
    """Cause and fix for a failure while importing or building the model: the child's own failures
    here, every exception through the knowledge base."""
    versions = versions or {}
    failure = _child_failure(error)
    if failure is not None:
        return failure
    text = f"{error.get('type') or ''}: {first_line(str(error.get('message') or ''))}"
    where = error.get("where") or {}
    at = f" ({where.get('file')}:{where.get('line')})" if where.get("file") else ""
    match = match_error(error)
    if match is None:
        return Diagnosis(f"`{text}`{at}.", "An exception in the model code (traceback in the evidence).",
                         "Read the traceback in the evidence; run the same step in a Python shell with --code-root "
                         "on sys.path to reproduce it.", kind="exception")
    sig = match.signature
    kind = KIND_BY_SIGNATURE.get(sig.slug, sig.slug)
    if kind == "clip-files":
        return _clip_diagnosis(f"{error.get('type')}: {error.get('message')}", clip_files)
    fix = sig.causes[0].fix if sig.causes else sig.fix
    from ..knowledge.results import fill_placeholders

    return Diagnosis(f"`{text}`{at}: {sig.title}{_versions_note(sig, error, versions)}.",
                     sig.cause, fill_placeholders(fix, match.groups),
                     related=[c for c in sig.codes if not c.startswith("model.")], docs=sig.links, kind=kind)


def _clip_diagnosis(text: str, files: Optional[Mapping[str, Any]]) -> Diagnosis:
    files = files or {}
    version = files.get("version") or "openai/clip-vit-large-patch14"
    missing = files.get("missing") or []
    offline = files.get("offline")
    if files.get("kind") == "local-dir":
        where = f"the directory {files.get('path')}"
        fix = (f"Copy the missing files ({', '.join(missing)}) into {files.get('path')}: they come from "
               f"`hf download openai/clip-vit-large-patch14 --local-dir {files.get('path')}` run where the hub is "
               "reachable." if missing else
               f"Check that the files in {files.get('path')} are complete and readable.")
        if files.get("shadows_hub_id"):
            fix += (f" A directory named {version!r} in the working directory shadows the hub id: rename it, or "
                    "fill it.")
    else:
        cache = files.get("cache_dir")
        where = f"the Hugging Face cache ({cache})" if cache else "the Hugging Face cache"
        fix = (f"Where the hub is reachable, run `hf download {version} config.json vocab.json merges.txt "
               "tokenizer_config.json special_tokens_map.json model.safetensors` (`huggingface-cli download` with "
               f"huggingface_hub < 1.0) with the same HF_HOME/HF_HUB_CACHE, and copy {cache} to this machine; or "
               "set `version:` in cond_stage_config.params to a local directory holding those files.")
        if offline:
            fix += " Offline mode (" + ", ".join(f"{k}={v}" for k, v in (files.get("offline_vars") or {}).items()) \
                   + ") stays on afterwards, so nothing waits on the network."
    summary = (f"FrozenCLIPEmbedder cannot load {version!r}: "
               + (f"{len(missing)} required file(s) missing from {where}: {', '.join(missing)}" if missing else
                  f"the files in {where} could not be loaded")
               + (" (offline mode is on)" if offline else "") + f". Error: `{first_line(text)}`")
    cause = ("FrozenCLIPEmbedder.__init__ calls CLIPTokenizer.from_pretrained(version) and "
             "CLIPTextModel.from_pretrained(version); the checkpoint holds no tokenizer or model config, so these "
             "files must come from the hub or the cache" + (", and offline mode forbids the hub" if offline else "")
             + ". transformers 5 returns a 2-token tokenizer instead of raising when the "
               "tokenizer files are missing (tokenizer.functional).")
    return Diagnosis(summary, cause, fix, related=CLIP_RELATED, kind="clip-files")
