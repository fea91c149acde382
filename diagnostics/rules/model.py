"""Building, loading and running the user's model: `model.*` and `cuda.memory`.

The facts come from one child-process run (`probes/model.py`, memoised as `ctx.fact("model")`):
import the config's target with the user's code first on sys.path, instantiate it the way
`ldm.util.instantiate_from_config` does, load the checkpoint with `strict=False`, move it to the
device and run a smoke forward. These rules turn that run into findings: a known exception becomes
its cause and fix (knowledge base K01/K02 CLIP files, K03 rank_zero_only, K05 position_ids, K07
channels, K08 SD1/SD2, K09 EMA, K14 OOM, K18 ldm not importable), and the key-matching result is
grouped by component with an explanation for each group.
"""

from __future__ import annotations

import os
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ..findings import Finding, Status, skip, worst
from ..probes.code import probe_ldm
from ..probes.ldm_config import probe_ldm_config
from ..probes.model import probe_model, text_encoder_files
from ..registry import Check
from ..util import fmt_bytes

STAGE_CHECK = {"import": "model.import", "instantiate": "model.instantiate", "load": "model.load-keys",
               "device": "model.smoke-forward", "smoke": "model.smoke-forward", "start": "model.import"}
COMPONENT_NAMES = {"model": "UNet (DiffusionWrapper)", "first_stage_model": "VAE", "cond_stage_model": "text encoder",
                   "model_ema": "EMA", "control_model": "ControlNet", "depth_model": "depth model"}
GROUP_NAMES = {"unet": "UNet", "ema": "EMA (LitEma)", "vae": "VAE", "text_encoder": "text encoder",
               "controlnet": "ControlNet", "depth": "depth model", "image_embedder": "image embedder",
               "wrapper": "model.*", "other": "top level"}
CLIP_RELATED = ("cache.model-missing", "tokenizer.functional", "hub.dns")
SCHEDULE_BUFFERS = {"betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
                    "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
                    "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
                    "posterior_mean_coef1", "posterior_mean_coef2", "logvar", "scale_factor", "lvlb_weights"}
SHOWN = 5  # keys shown per group in a summary
RELATED_FIX = {
    "config.use-ema": "set `use_ema: False` under model.params (or load a checkpoint that carries model_ema.*)",
    "config.in-channels": "use the config for the checkpoint's UNet input channels (v1-inpainting-inference.yaml "
                          "for 9)",
    "config.context-dim": "use the config of the checkpoint's family (v2-inference.yaml for SD 2.x)",
    "config.cond-stage": "rename the checkpoint's text-encoder keys for the installed transformers, or use the "
                         "config of the checkpoint's text encoder",
    "compat.transformers-position-ids": "drop cond_stage_model.transformer.text_model.embeddings.position_ids "
                                        "before a strict load",
}

# Python module -> what to pip install (the PyPI name differs from the import name for several).
PIP_NAMES = {"einops": "einops", "open_clip": "open-clip-torch", "pytorch_lightning": "'pytorch-lightning<2'",
             "omegaconf": "omegaconf", "transformers": "transformers", "torchvision": "torchvision",
             "kornia": "kornia", "clip": "git+https://github.com/openai/CLIP.git", "PIL": "Pillow",
             "taming": "git+https://github.com/CompVis/taming-transformers.git", "imwatermark": "invisible-watermark",
             "safetensors": "safetensors", "tqdm": "tqdm", "numpy": "numpy", "scipy": "scipy", "cv2": "opencv-python",
             "k_diffusion": "k-diffusion", "yaml": "pyyaml", "timm": "timm", "xformers": "xformers"}


def _fmt_params(n: Optional[int]) -> str:
    return "?" if n is None else f"{n / 1e6:.2f} M"


def _secs(x: Optional[float]) -> str:
    if x is None:
        return "?"
    return f"{x:.2f} s" if x < 10 else f"{x:.1f} s"


def _first_line(text: str) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[0].strip() if lines else ""


def _tb_tail(error: Mapping[str, Any], lines: int = 12) -> str:
    return "\n".join((error.get("traceback") or "").strip().splitlines()[-lines:])


# ---------------------------------------------------------------------------------------------
# exceptions -> cause and fix


class Diagnosis:
    def __init__(self, summary: str, cause: str, fix: str, related: Sequence[str] = (), docs: Sequence[str] = (),
                 kind: str = "other", status: Status = Status.FAIL) -> None:
        self.summary, self.cause, self.fix = summary, cause, fix
        self.related, self.docs, self.kind, self.status = list(related), list(docs), kind, status


_CLIP_SIGNATURES = (
    r"Can't load tokenizer for",
    r"We couldn't connect to '[^']*' to load",
    r"couldn't find (it|them) in the cached files",
    r"LocalEntryNotFoundError",
    r"is not a local folder and is not a valid model identifier",
    r"Can't load the configuration of",
    r"Can't load (the )?model for",
    r"outgoing traffic has been disabled",
    r"Incorrect path_or_model_id",
    r"does not appear to have a file named",
)


def _in_text_encoder(error: Mapping[str, Any]) -> bool:
    tb = error.get("traceback") or ""
    return any(s in tb for s in ("encoders/modules.py", "FrozenCLIPEmbedder", "CLIPTokenizer", "CLIPTextModel",
                                 "from_pretrained"))


def diagnose(error: Mapping[str, Any], ldm: Optional[Mapping[str, Any]] = None,
             versions: Optional[Mapping[str, Optional[str]]] = None,
             clip_files: Optional[Mapping[str, Any]] = None) -> Diagnosis:
    """Cause and fix for an exception raised while importing or building the model."""
    ldm = ldm or {}
    versions = versions or {}
    etype = str(error.get("type") or "")
    message = str(error.get("message") or "")
    text = f"{etype}: {message}"
    tb = error.get("traceback") or ""
    kind = error.get("kind")

    if kind == "timeout":
        stage = error.get("stage")
        cause = ("Building the model hung: FrozenCLIPEmbedder downloading from an unreachable hub retries for "
                 "minutes (see hub.dns / hub.connect), or the machine is too slow for this --timeout."
                 if stage == "instantiate" else f"The {stage} step took longer than --timeout.")
        return Diagnosis(f"Timed out during {stage}: {message}.", cause,
                         "Re-run with a larger --timeout (e.g. --timeout 600); set HF_HUB_OFFLINE=1 when the files "
                         "are already cached so nothing waits on the network.", related=("hub.dns",), kind="timeout")
    if kind in ("killed", "crashed"):
        rc = error.get("returncode")
        oom = rc in (-9, 137)
        return Diagnosis(
            f"The model process died during {error.get('stage')}: {message}.",
            "Signal 9 is what the kernel's out-of-memory killer sends: the model does not fit in RAM." if oom else
            "The interpreter crashed inside native code (a torch/extension ABI mismatch, or memory).",
            "Free RAM or add swap; the fp32 SD 1.x model needs about 4 GB plus 3.4 GB for EMA weights (set "
            "use_ema: False for inference)." if oom else
            "Run the same import in a plain `python -c` to see the crash; reinstall torch and compiled extensions "
            "for this Python.", kind="oom" if oom else "crash")
    if kind == "not-started":
        return Diagnosis(f"The model process could not start: {message}.", "The Python interpreter could not be run.",
                         "Check that the interpreter running the harness can start subprocesses.", kind="crash")
    if kind == "omegaconf-missing":
        return Diagnosis(message, "ldm's configs are OmegaConf objects.", "pip install omegaconf", kind="module")

    # K03 rank_zero_only (ldm/models/diffusion/ddpm.py with pytorch_lightning 1.8.0 or >= 2.0)
    if "rank_zero_only" in text or "pytorch_lightning.utilities.distributed" in text:
        pl = (error.get("versions") or {}).get("pytorch_lightning") or versions.get("pytorch_lightning")
        where = error.get("where") or {}
        at = f" ({where.get('file')}:{where.get('line')})" if where.get("file") else ""
        return Diagnosis(
            f"`{text.strip()}`{at}: ldm imports rank_zero_only from pytorch_lightning.utilities.distributed, which "
            f"pytorch_lightning {pl or '(this version)'} no longer has.",
            "The module was removed in pytorch_lightning 2.0 (and the name dropped in 1.8.0); see "
            "compat.pl-rank-zero-only.",
            "Pin Lightning: `pip install 'pytorch-lightning<2,!=1.8.0'` (the original environment uses 1.4.2), or "
            "edit ldm/models/diffusion/ddpm.py to `from pytorch_lightning.utilities import rank_zero_only`.",
            related=("compat.pl-rank-zero-only",), docs=("https://github.com/Lightning-AI/pytorch-lightning/issues/15509",),
            kind="rank-zero-only")

    missing_mod = re.search(r"No module named '([^']+)'", message)
    if etype in ("ModuleNotFoundError", "ImportError") and missing_mod:
        name = missing_mod.group(1)
        top = name.split(".")[0]
        if top == "ldm":
            if name == "ldm" or not ldm.get("found"):
                return Diagnosis(
                    f"`{text}`: the `ldm` package is not importable.",
                    "The repository that holds `ldm/` is neither installed (`pip install -e .`) nor on sys.path "
                    "(scripts run from scripts/ do not see the repo root) (knowledge base K18).",
                    "Pass --code-root with the directory that contains `ldm/` (and use the same PYTHONPATH when "
                    "serving), or run `pip install -e .` in that repository.",
                    docs=("https://github.com/CompVis/stable-diffusion/issues/160",), kind="ldm-missing")
            return Diagnosis(
                f"`{text}`: the ldm package at {ldm.get('path')} has no module {name}.",
                "The config was written for another ldm code base (e.g. an SD 2.x config needs "
                "Stability-AI/stablediffusion; CompVis' original repo lacks several modules).",
                "Use --code-root with the repository that matches the config, or the config that matches this code.",
                kind="ldm-mismatch")
        pip = PIP_NAMES.get(top, top)
        return Diagnosis(f"`{text}`: a package the model code imports is missing.",
                         f"`{top}` is not installed in this environment.", f"pip install {pip}", kind="module")
    if "VectorQuantizer2" in text:
        return Diagnosis(f"`{text}`.", "PyPI's taming-transformers 0.0.1 lacks VectorQuantizer2 (knowledge base K15).",
                         "pip install git+https://github.com/CompVis/taming-transformers.git", kind="module")
    if "cached_download" in text or "HfFolder" in text:
        return Diagnosis(f"`{text}`.", "huggingface_hub is newer than the diffusers/transformers that import it "
                                       "(see compat.hub-cached-download).",
                         "pip install 'huggingface_hub<0.26' (or upgrade the package that imports it).",
                         related=("compat.hub-cached-download",), kind="module")
    if "compiled using NumPy 1.x" in text or ("numpy" in text.lower() and "ABI" in text):
        return Diagnosis(f"`{text}`.", "NumPy 2 with a torch (or extension) built for NumPy 1 (see compat.numpy2-abi).",
                         "pip install 'numpy<2'", related=("compat.numpy2-abi",), kind="module")
    if etype == "AttributeError" and "has no attribute" in message and error.get("stage") == "import":
        return Diagnosis(f"`{text}`: the config's target class does not exist in that module.",
                         "The ldm code on the path is another version than the config's (see config.targets).",
                         "Use --code-root with the repository the config was written for, or correct `target:`.",
                         related=("config.targets",), kind="target")

    # K01/K02 CLIP files (FrozenCLIPEmbedder -> CLIPTokenizer/CLIPTextModel.from_pretrained(version))
    if any(re.search(sig, text) or re.search(sig, tb) for sig in _CLIP_SIGNATURES) and (
            _in_text_encoder(error) or "clip" in text.lower()):
        return _clip_diagnosis(text, clip_files)
    if "Model config for" in text and "not found" in text:
        return Diagnosis(f"`{text}`.", "open_clip is too old for this config's architecture (knowledge base K19).",
                         "Install the open_clip version the code was written for (open-clip-torch 2.7.0 for "
                         "Stability-AI/stablediffusion).", related=("compat.open-clip-version",), kind="module")
    if "unexpected keyword argument" in message:
        arg = re.search(r"unexpected keyword argument '([^']+)'", message)
        return Diagnosis(f"`{text}`: the config passes a parameter this code does not accept"
                         + (f" ({arg.group(1)})" if arg else "") + ".",
                         "The config belongs to a newer/other ldm code base (e.g. use_linear_in_transformer is SD 2.x "
                         "only).", "Use the ldm repository that matches the config (--code-root), or its config.",
                         kind="config")
    if "can only finetune from a given checkpoint" in text:
        return Diagnosis(f"`{text}`.", "finetune_keys is set in the config, which asks for ckpt_path (training only).",
                         "Set `finetune_keys: null` under model.params for inference.", kind="config")
    if error.get("kind") == "oom" or "out of memory" in message.lower() or etype == "MemoryError":
        return Diagnosis(f"Out of memory: `{_first_line(message) or etype}`.",
                         "The model does not fit in the available (GPU or CPU) memory (knowledge base K14).",
                         "Use fp16 (LDM_DIAG_DTYPE=fp16, model.half()), set use_ema: False, close other GPU "
                         "processes, or set PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True.",
                         related=("cuda.memory",), kind="oom")
    where = error.get("where") or {}
    at = f" at {where.get('file')}:{where.get('line')}" if where.get("file") else ""
    return Diagnosis(f"`{etype}: {_first_line(message)}`{at}.", "An exception in the model code (traceback in the evidence).",
                     "Read the traceback in the evidence; run the same step in a Python shell with --code-root on "
                     "sys.path to reproduce it.", kind="exception")


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
               + (" (offline mode is on)" if offline else "") + f". Error: `{_first_line(text)}`")
    cause = ("FrozenCLIPEmbedder.__init__ calls CLIPTokenizer.from_pretrained(version) and "
             "CLIPTextModel.from_pretrained(version); the checkpoint holds no tokenizer or model config, so these "
             "files must come from the hub or the cache" + (", and offline mode forbids the hub" if offline else "")
             + " (knowledge base K01/K02). transformers 5 returns a 2-token tokenizer instead of raising when the "
               "tokenizer files are missing (tokenizer.functional).")
    return Diagnosis(summary, cause, fix, related=CLIP_RELATED, kind="clip-files")


# ---------------------------------------------------------------------------------------------
# the rules


def _not_run(code: str, title: str, model: Mapping[str, Any]) -> Optional[Finding]:
    if model.get("ran"):
        return None
    reason = model.get("reason")
    if reason == "code-root-missing" and code == "model.import":
        return Finding(code, Status.FAIL, title, f"--code-root {model.get('code_root')} does not exist, so the "
                                                 "model code cannot be imported.",
                       evidence={"code_root": model.get("code_root")},
                       cause="The path is wrong, or the repository is not on this machine.",
                       fix="Pass --code-root with the directory that contains `ldm/` (the repository root).")
    return skip(code, title, model.get("message") or "The model was not built.")


def _failed_before(code: str, title: str, model: Mapping[str, Any], stages: Sequence[str]) -> Optional[Finding]:
    err = model.get("error")
    if err and err.get("stage") in stages:
        owner = STAGE_CHECK.get(err["stage"], "model.import")
        return skip(code, title, f"Did not run: the {err['stage']} step failed first (see {owner}).")
    return None


def _error_finding(code: str, title: str, error: Mapping[str, Any], diagnosis: Diagnosis,
                   model: Mapping[str, Any], related: Sequence[Mapping[str, Any]] = (),
                   extra: Optional[Dict[str, Any]] = None) -> Finding:
    evidence: Dict[str, Any] = {
        "stage": error.get("stage"), "exception": f"{error.get('type')}: {error.get('message')}"[:2000],
        "where": error.get("where"), "traceback": _tb_tail(error, 40), "related_checks": list(diagnosis.related),
        "output": (model.get("output") or [])[-20:],
    }
    if related:
        evidence["related_findings"] = list(related)
    if extra:
        evidence.update(extra)
    return Finding(code, diagnosis.status, title, diagnosis.summary, evidence=evidence, cause=diagnosis.cause,
                   fix=diagnosis.fix, docs=list(diagnosis.docs))


def rule_model_import(model: Mapping[str, Any], ldm: Optional[Mapping[str, Any]] = None,
                      versions: Optional[Mapping[str, Optional[str]]] = None) -> Finding:
    code, title = "model.import", "Model code importable"
    not_run = _not_run(code, title, model)
    if not_run:
        return not_run
    err = model.get("error")
    if err and err.get("stage") in ("import", "start"):
        return _error_finding(code, title, err, diagnose(err, ldm, versions), model)
    data = (model.get("stages") or {}).get("import")
    if not data:
        return skip(code, title, "The import step did not report (see the model output).")
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
        return Finding(code, Status.FAIL, title,
                       f"{data.get('target')} imports, but {len(bad)} other target(s) do not: {first['target']} "
                       f"({first['path']}): {diag.summary}", evidence=evidence, cause=diag.cause, fix=diag.fix,
                       docs=list(diag.docs))
    code_root = (model.get("request") or {}).get("code_root")
    ldm_file = data.get("ldm_file")
    if code_root and ldm_file and not _under(ldm_file, code_root):
        return Finding(code, Status.WARN, title,
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
    return Finding(code, Status.OK, title,
                   f"Imported {data.get('target')} from {data.get('ldm_file') or data.get('target_file')} "
                   f"(torch {data.get('torch')}) and {len(data.get('targets') or [])} other targets in "
                   f"{_secs(data.get('seconds'))}.{note}", evidence=evidence)


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


def rule_model_instantiate(model: Mapping[str, Any], ldm: Optional[Mapping[str, Any]] = None,
                           versions: Optional[Mapping[str, Optional[str]]] = None,
                           clip_files: Optional[Mapping[str, Any]] = None,
                           related: Sequence[Mapping[str, Any]] = ()) -> Finding:
    code, title = "model.instantiate", "Model builds from the config"
    not_run = _not_run(code, title, model)
    if not_run:
        return not_run
    before = _failed_before(code, title, model, ("start", "import"))
    if before:
        return before
    err = model.get("error")
    if err and err.get("stage") == "instantiate":
        diag = diagnose(err, ldm, versions, clip_files)
        return _error_finding(code, title, err, diag, model, related=related if diag.kind == "clip-files" else (),
                              extra={"text_encoder_files": clip_files} if diag.kind == "clip-files" else None)
    data = (model.get("stages") or {}).get("instantiate")
    if not data:
        return skip(code, title, "The instantiate step did not report (see the model output).")
    notable = model.get("notable") or {}
    comps = data.get("components") or {}
    parts = []
    for name, info in comps.items():
        label = COMPONENT_NAMES.get(name, name)
        if name == "model_ema":
            parts.append(f"{label} {info.get('tensors')} buffers")
        else:
            parts.append(f"{label} {_fmt_params(info.get('parameters'))}")
    evidence = {"class": data.get("class"), "seconds": data.get("seconds"), "meta_device": data.get("meta"),
                "meta_error": data.get("meta_error"), "components": comps, "parameters": data.get("parameters"),
                "use_ema": data.get("use_ema"), "unet": data.get("unet"), "tokenizer": data.get("tokenizer"),
                "params_lines": notable.get("params_lines"), "prediction_mode": notable.get("prediction_mode"),
                "rss_peak": fmt_bytes(data.get("rss_peak_bytes")) if data.get("rss_peak_bytes") else None}
    tok = data.get("tokenizer")
    if degenerate_tokenizer(tok):
        return Finding(
            code, Status.FAIL, title,
            f"The model built, but its CLIP tokenizer is empty: {tok.get('size')} tokens, "
            f"{tok.get('prompt')!r} -> {tok.get('ids')}: every prompt encodes to the same ids.",
            evidence=evidence,
            cause="transformers 5 returns a placeholder tokenizer instead of raising when the tokenizer files are "
                  "missing (compat.tokenizer-silent-empty).",
            fix="Provide vocab.json and merges.txt for the text encoder's `version` (see tokenizer.functional, "
                "cache.model-missing).")
    how = "parameters on the meta device, no weights allocated" if data.get("meta") else "weights allocated"
    line = f" ({notable['params_lines'][0]})" if notable.get("params_lines") else ""
    return Finding(code, Status.OK, title,
                   f"Built {str(data.get('class')).rsplit('.', 1)[-1]} in {_secs(data.get('seconds'))} ({how}): "
                   + ", ".join(parts) + f"{line}.", evidence=evidence)


def explain_group(kind: str, group: Mapping[str, Any], info: Mapping[str, Any]) -> Dict[str, Any]:
    """One group of missing/unexpected/mismatched keys -> {status, text, related}."""
    comp = group.get("component")
    count = group.get("count", 0)
    keys = [k["key"] if isinstance(k, dict) else k for k in group.get("keys") or []]
    use_ema = info.get("use_ema")
    status, related = Status.WARN, ""
    if kind == "mismatched":
        status = Status.FAIL
        if any(k.endswith("input_blocks.0.0.weight") for k in keys):
            first = next(k for k in group["keys"] if k["key"].endswith("input_blocks.0.0.weight"))
            text = (f"UNet input conv is {first['checkpoint']} in the file but {first['model']} in the model: the "
                    "config's in_channels is for another variant (4 txt2img, 9 inpainting)")
            related = "config.in-channels"
        elif any(".attn2.to_k." in k or ".attn2.to_v." in k or k.endswith("proj_in.weight") for k in keys):
            text = ("cross-attention/proj_in shapes differ: the checkpoint and the config are different families "
                    "(SD 1.x context 768 vs SD 2.x 1024)")
            related = "config.context-dim"
        else:
            text = "shapes differ: the config describes another architecture than the file"
        text += "; ldm's load_state_dict raises 'size mismatch' for these even with strict=False"
    elif kind == "missing":
        if comp == "ema":
            status = Status.FAIL if use_ema else Status.WARN
            text = ("use_ema is on but the file has no EMA weights (pruned): the LitEma buffers stay unloaded and "
                    "model.ema_scope() would sample with them")
            related = "config.use-ema"
        elif comp == "unet":
            status = Status.FAIL
            text = "UNet weights are not in the file: it is not a full LDM checkpoint for this config (or a diffusers-format file)"
        elif comp == "vae":
            status = Status.FAIL
            text = "VAE weights are not in the file: images decode with untrained weights unless a VAE is loaded separately"
        elif comp == "text_encoder" and info.get("clip_key_style_mismatch"):
            status = Status.INFO
            text = ("the same text-encoder weights under this transformers' names: they keep what "
                    "from_pretrained(version) loaded at start-up")
            related = "config.cond-stage"
        elif comp == "text_encoder":
            status = Status.INFO
            text = ("text-encoder weights are not in the file: they keep what from_pretrained(version) loaded at "
                    "start-up")
            related = "config.cond-stage"
        elif comp == "other" and all(k.split(".")[-1] in SCHEDULE_BUFFERS for k in keys):
            status = Status.INFO
            text = "diffusion schedule buffers: recomputed from the config, harmless"
        else:
            text = "model tensors the file does not provide keep their initial values"
    else:  # unexpected
        if comp == "ema":
            scalars_only = all(k in ("model_ema.decay", "model_ema.num_updates") for k in keys) and count <= 2
            status = Status.INFO if scalars_only else Status.WARN
            text = ("EMA bookkeeping scalars, ignored" if scalars_only else
                    "EMA weights in the file are ignored because use_ema is False: the model runs the non-EMA weights")
            related = "config.use-ema"
        elif comp == "text_encoder" and all(k.endswith("embeddings.position_ids") for k in keys) and count == len(keys):
            status = Status.INFO
            text = ("position_ids is no longer a saved buffer in transformers >= 4.31: harmless with strict=False, "
                    "fatal with strict=True (drop the key before a strict load)")
            related = "compat.transformers-position-ids"
        elif comp == "text_encoder" and info.get("clip_key_style_mismatch"):
            status = Status.WARN
            text = ("CLIP weights named for another transformers major version (with/without `text_model.`): "
                    "ignored, so the text encoder runs the weights from version; fatal with strict=True"
                    + (" (includes embeddings.position_ids)" if any(k.endswith("position_ids") for k in keys) else ""))
            related = "config.cond-stage"
        elif comp == "text_encoder":
            status = Status.FAIL
            text = "text-encoder weights of another layout are ignored: the config's encoder does not match the file"
            related = "config.cond-stage"
        elif comp == "controlnet":
            text = "ControlNet weights: this file needs a ControlLDM (cldm) config"
        elif comp == "unet":
            status = Status.FAIL
            text = "UNet tensors the model does not have: the config describes a smaller/other UNet"
        else:
            status = Status.INFO
            text = "extra tensors the model does not use, ignored by strict=False"
    return {"kind": kind, "component": comp, "name": GROUP_NAMES.get(comp, comp), "prefix": group.get("prefix"),
            "count": count, "first_keys": keys[:SHOWN], "status": status.value, "explanation": text,
            "related": related}


def rule_model_load_keys(model: Mapping[str, Any]) -> Finding:
    code, title = "model.load-keys", "Checkpoint keys vs model (strict=False)"
    not_run = _not_run(code, title, model)
    if not_run:
        return not_run
    before = _failed_before(code, title, model, ("start", "import", "instantiate"))
    if before:
        return before
    err = model.get("error")
    if "load" in (model.get("skipped") or {}):
        return skip(code, title, "No --checkpoint was given: only the model was built.")
    if err and err.get("stage") == "load":
        if err.get("kind") == "weights-only-refused":
            unsafe = err.get("unsafe_globals") or []
            return Finding(
                code, Status.FAIL, title,
                "torch.load(weights_only=True) refused the checkpoint"
                + (f": it pickles {', '.join(unsafe[:5])}" if unsafe else "") + ". The harness never unpickles "
                "arbitrary code, so the keys were not compared.",
                evidence={"error": err.get("message"), "unsafe_globals": unsafe},
                cause="The file stores Python objects besides tensors (Lightning callbacks in original SD .ckpt "
                      "files); see ckpt.weights-only-refused.",
                fix="For a file you trust: convert it once to safetensors or a plain state dict in a throw-away "
                    "environment (`torch.load(..., weights_only=False)['state_dict']` then "
                    "`safetensors.torch.save_file`), and deploy that.",
                docs=["https://pytorch.org/docs/stable/notes/serialization.html#weights-only"])
        diag = diagnose(err)
        return _error_finding(code, title, err, Diagnosis(
            f"The checkpoint could not be read: {diag.summary}", diag.cause,
            "Check the file with `python -m diagnostics inspect CKPT` (see ckpt.*).", kind=diag.kind), model)
    data = (model.get("stages") or {}).get("load")
    if not data:
        return skip(code, title, "The load step did not report (see the model output).")
    instantiate = (model.get("stages") or {}).get("instantiate") or {}
    info = {"use_ema": instantiate.get("use_ema"), "clip_key_style_mismatch": bool(data.get("clip_key_shift"))}
    groups = []
    for kind in ("mismatched", "missing", "unexpected"):
        for group in (data.get(kind) or {}).get("groups") or []:
            groups.append(explain_group(kind, group, info))
    counts = {k: (data.get(k) or {}).get("count", 0) for k in ("missing", "unexpected", "mismatched")}
    evidence = {"format": data.get("format"), "checkpoint_tensors": data.get("checkpoint_tensors"),
                "model_keys": data.get("model_keys"), "loaded": data.get("loaded"), "counts": counts,
                "groups": groups, "dtypes": data.get("dtypes"), "seconds": data.get("seconds"),
                "read_seconds": data.get("read_seconds"), "extras": data.get("extras")}
    head = (f"{data.get('loaded')} of {data.get('checkpoint_tensors')} checkpoint tensors loaded into "
            f"{data.get('model_keys')} model keys in {_secs(data.get('seconds'))}")
    if not groups:
        return Finding(code, Status.OK, title, f"{head}: every key matched (0 missing, 0 unexpected, 0 size "
                                               "mismatches).", evidence=evidence)
    lines = []
    for g in groups:
        ref = f" [{g['related']}]" if g["related"] else ""
        lines.append(f"{g['count']} {g['kind']} {g['name']} ({g['prefix'] or 'top level'}*: "
                     f"{', '.join(g['first_keys'][:3])}{'...' if g['count'] > 3 else ''}): {g['explanation']}{ref}")
    status = worst(Status(g["status"]) for g in groups)
    summary = (f"{head}; {counts['missing']} missing, {counts['unexpected']} unexpected, {counts['mismatched']} size "
               "mismatches: " + "; ".join(lines))
    serious = [g for g in groups if g["status"] in ("fail", "warn")]
    if not serious:
        notes = [f"{g['related']}: {RELATED_FIX[g['related']]}" for g in groups if g["related"] in RELATED_FIX]
        return Finding(code, status, title, summary, evidence=evidence,
                       cause="Only differences that ldm's strict=False load tolerates.",
                       fix="Nothing to do for ldm's own loader" + ("; " + "; ".join(sorted(set(notes))) if notes else "")
                           + ".")
    codes = []
    for g in serious:
        if g["related"] and g["related"] not in codes:
            codes.append(g["related"])
    fixes = [f"{c}: {RELATED_FIX[c]}" for c in codes if c in RELATED_FIX]
    if any(not g["related"] for g in serious):
        fixes.append("use the checkpoint that belongs to this config (the file lacks or adds whole components)")
    return Finding(code, status, title, summary, evidence=evidence,
                   cause="The checkpoint and the model built from the config disagree"
                         + (f"; explained in detail by {', '.join(codes)}." if codes else "."),
                   fix="; ".join(fixes) + ".", blocking=status is Status.FAIL)


def rule_smoke_forward(model: Mapping[str, Any]) -> Finding:
    code, title = "model.smoke-forward", "Smoke forward: text encoder, one UNet step, VAE decode"
    not_run = _not_run(code, title, model)
    if not_run:
        return not_run
    before = _failed_before(code, title, model, ("start", "import", "instantiate", "load"))
    if before:
        return before
    skipped = model.get("skipped") or {}
    if "smoke" in skipped or "device" in skipped:
        return skip(code, title, (skipped.get("smoke") or skipped.get("device") or "").rstrip(".") + ".")
    err = model.get("error")
    if err and err.get("stage") in ("device", "smoke"):
        return _error_finding(code, title, err, diagnose(err), model)
    data = (model.get("stages") or {}).get("smoke")
    device = ((model.get("stages") or {}).get("device") or {})
    if not data:
        return skip(code, title, "The smoke step did not report (see the model output).")
    parts = data.get("parts") or {}
    problems, done = [], []
    for name, label in (("text", "text encoder"), ("unet", "UNet step"), ("vae", "VAE decode")):
        part = parts.get(name) or {}
        if part.get("error"):
            e = part["error"]
            problems.append(f"{label} raised `{e.get('type')}: {_first_line(e.get('message') or '')}`")
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
        return Finding(
            code, Status.FAIL, title, f"Smoke forward {where}: " + "; ".join(problems) + ".", evidence=evidence,
            cause=("fp16 overflow (the SD VAE is known to produce NaN in half precision) or broken weights "
                   "(knowledge base K25)." if nan else "The model cannot run a forward pass as configured "
                   "(traceback in the evidence)."),
            fix=("Run the VAE in fp32 (A1111 --no-half-vae) or use the fp16-fixed VAE; check the checkpoint for "
                 "non-finite tensors (ckpt.nonfinite)." if nan else
                 "Fix the config/checkpoint findings above; the error names the failing layer."))
    secs = sum((p or {}).get("seconds") or 0 for p in parts.values())
    rss = data.get("rss_peak_bytes")
    note = f" Process peak memory (RSS) {fmt_bytes(rss)}." if rss and device.get("device") == "cpu" else ""
    if device.get("zero_filled"):
        note += f" {device['zero_filled']} tensors missing from the checkpoint were zero-filled for the run."
    return Finding(code, Status.OK, title, f"Smoke forward {where}: " + ", ".join(done)
                   + f"; all outputs finite ({_secs(secs)}).{note}", evidence=evidence)


def rule_cuda_memory(model: Mapping[str, Any]) -> Finding:
    code, title = "cuda.memory", "GPU memory for the model"
    if not model.get("ran"):
        return skip(code, title, model.get("message") or "The model was not built.")
    skipped = model.get("skipped") or {}
    device = (model.get("stages") or {}).get("device") or {}
    err = model.get("error")
    if "device" in skipped:
        return skip(code, title, str(skipped["device"]).rstrip(".") + ".")
    if err and err.get("stage") in ("start", "import", "instantiate", "load"):
        return skip(code, title, f"Did not run: the {err['stage']} step failed first (see "
                                 f"{STAGE_CHECK.get(err['stage'])}).")
    req = model.get("request") or {}
    if device.get("device") == "cpu" or (not device and req.get("device") == "cpu"):
        return skip(code, title, "--device cpu was given: the model ran on the CPU, GPU memory was not measured.")
    if err and err.get("stage") in ("device", "smoke") and (err.get("kind") == "oom" or
                                                          "out of memory" in str(err.get("message")).lower()):
        total = device.get("total_memory")
        return Finding(code, Status.FAIL, title,
                       f"CUDA out of memory during {err['stage']}: `{_first_line(str(err.get('message')))}`.",
                       evidence={"stage": err["stage"], "error": err.get("message"),
                                 "total_memory": fmt_bytes(total) if total else None,
                                 "dtype": device.get("dtype") or req.get("dtype")},
                       cause="The model (fp32 SD 1.x: ~4.3 GB, +3.4 GB with EMA buffers) plus activations does not "
                             "fit in free GPU memory, or other processes hold it (knowledge base K14).",
                       fix="Load in fp16 (LDM_DIAG_DTYPE=fp16; model.half()), set use_ema: False, stop other GPU "
                           "processes (nvidia-smi), lower the resolution, or set "
                           "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True.",
                       docs=["https://github.com/CompVis/stable-diffusion/issues/760"])
    if not device:
        return skip(code, title, "The model was not moved to a GPU.")
    smoke = (model.get("stages") or {}).get("smoke") or {}
    peak = smoke.get("max_memory_allocated") or device.get("max_memory_allocated")
    total = device.get("total_memory")
    evidence = {"gpu": device.get("gpu"), "dtype": device.get("dtype"), "seconds_to_device": device.get("seconds"),
                "allocated_after_move": device.get("memory_allocated"), "peak": peak, "total": total,
                "image_size": smoke.get("image_size")}
    text = (f"Moved to {device.get('gpu') or 'cuda'} ({device.get('dtype')}) in {_secs(device.get('seconds'))}: "
            f"{fmt_bytes(device.get('memory_allocated'))} after the move, peak {fmt_bytes(peak)}"
            + (f" during a {smoke.get('image_size')} px smoke forward" if smoke else "")
            + (f", of {fmt_bytes(total)}" if total else "") + ".")
    if total and peak and peak > 0.9 * total:
        return Finding(code, Status.WARN, title, text + " That is over 90% of the GPU: full-size sampling with "
                                                        "batches will run out of memory.", evidence=evidence,
                       fix="Use fp16 (LDM_DIAG_DTYPE=fp16), use_ema: False, or a GPU with more memory.")
    return Finding(code, Status.OK, title, text, evidence=evidence)


# ---------------------------------------------------------------------------------------------


def _model(ctx):
    return ctx.fact("model", probe_model)


def _versions(ctx):
    from ..probes.environment import installed_versions

    return installed_versions(ctx)


def _clip_version(ctx) -> str:
    config = ctx.fact("ldm_config", probe_ldm_config)
    cond = ((config.get("summary") or {}).get("cond_stage_config") or {})
    return str((cond.get("params") or {}).get("version") or "openai/clip-vit-large-patch14")


def related_findings(ctx, codes: Sequence[str]) -> List[Dict[str, Any]]:
    """Run the hub/cache checks the CLIP failure points at, when they are registered (cheap: facts are memoised)."""
    from ..registry import all_checks, run_check

    out: List[Dict[str, Any]] = []
    try:
        available = {c.id: c for c in all_checks()}
    except Exception:  # another area's module failing to import must not hide this finding
        return out
    for code in codes:
        check = available.get(code)
        if check is None or code == "hub.dns":  # network probes are reported by their own check, not re-run here
            continue
        for f in run_check(check, ctx).findings:
            out.append({"code": f.code, "status": f.status.value, "summary": f.summary})
    return out


def _instantiate(ctx):
    model = _model(ctx)
    err = model.get("error") or {}
    clip_files = related = None
    if err.get("stage") == "instantiate":
        diag = diagnose(err, ctx.fact("ldm", probe_ldm), _versions(ctx))
        if diag.kind == "clip-files":
            version = _clip_version(ctx)
            clip_files = ctx.fact("text_encoder_files", lambda c: text_encoder_files(version, c.environ, str(c.cwd)))
            related = related_findings(ctx, CLIP_RELATED)
    return [rule_model_instantiate(model, ctx.fact("ldm", probe_ldm), _versions(ctx), clip_files, related or ())]


CHECKS: List[Check] = [
    Check("model.import", "Model code importable",
          lambda ctx: [rule_model_import(_model(ctx), ctx.fact("ldm", probe_ldm), _versions(ctx))], reads=("ctx",)),
    Check("model.instantiate", "Model builds from the config", _instantiate, reads=("ctx",)),
    Check("model.load-keys", "Checkpoint keys vs model (strict=False)", lambda ctx: [rule_model_load_keys(_model(ctx))], reads=("ctx",)),
    Check("model.smoke-forward", "Smoke forward: text encoder, one UNet step, VAE decode",
          lambda ctx: [rule_smoke_forward(_model(ctx))], reads=("ctx",)),
    Check("cuda.memory", "GPU memory for the model", lambda ctx: [rule_cuda_memory(_model(ctx))], reads=("ctx",)),
]
