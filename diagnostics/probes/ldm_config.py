"""The LDM yaml config (`--config`), read the way `ldm` reads it, plus where each key sits in the file.

The config decides what `instantiate_from_config(config.model)` builds, so the static checks
compare it with the checkpoint before any model is built. It is read with omegaconf (what ldm's
scripts use), or with PyYAML when omegaconf is missing. An unreadable file is a fact with the
failing line, never an exception. Nothing here imports a config `target`: `find_target` only
looks for the module file and the class name in its text.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from .fact_record import UNSET, FactRecord

# Sub-configs that LatentDiffusion and friends pass to `instantiate_from_config`, in model order.
SUB_CONFIGS = ("unet_config", "first_stage_config", "cond_stage_config", "depth_stage_config",
               "low_scale_config", "control_stage_config")

# Targets under these module prefixes are DDPM subclasses: `use_ema` defaults to True there
# (ldm/models/diffusion/ddpm.py, `DDPM.__init__(..., use_ema=True, ...)`).
DDPM_MODULES = ("ldm.models.diffusion.", "cldm.")

UNET_KEYS = ("in_channels", "out_channels", "model_channels", "context_dim", "use_linear_in_transformer",
             "num_heads", "num_head_channels", "channel_mult", "num_res_blocks", "attention_resolutions",
             "use_spatial_transformer", "transformer_depth", "adm_in_channels", "num_classes", "use_fp16",
             "use_checkpoint", "legacy")
MODEL_KEYS = ("use_ema", "conditioning_key", "parameterization", "channels", "image_size", "scale_factor",
              "first_stage_key", "cond_stage_key", "finetune_keys", "ckpt_path", "timesteps", "cond_stage_trainable")


def _yaml_error(exc: BaseException, text_lines: Sequence[str]) -> Dict[str, Any]:
    """Line/column of a PyYAML error (1-based) and the offending source line."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    err: Dict[str, Any] = {"kind": "syntax", "type": type(exc).__name__,
                           "message": " ".join(str(getattr(exc, "problem", None) or exc).split())}
    context = getattr(exc, "context", None)
    if context:
        err["context"] = str(context)
    if mark is not None:
        line = int(mark.line) + 1
        err["line"] = line
        err["column"] = int(mark.column) + 1
        if 0 < line <= len(text_lines):
            err["source_line"] = text_lines[line - 1].rstrip("\n")
    return err


def key_lines(text: str) -> Dict[str, int]:
    """Dotted key path -> 1-based line, from PyYAML's node marks (empty when PyYAML is missing)."""
    try:
        import yaml
    except ImportError:
        return {}
    try:
        root = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except Exception:
        return {}
    lines: Dict[str, int] = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = str(getattr(key_node, "value", ""))
                path = f"{prefix}.{key}" if prefix else key
                lines[path] = key_node.start_mark.line + 1
                walk(value_node, path)

    walk(root, "")
    return lines


def load_yaml(path: Path) -> Dict[str, Any]:
    """Parse the file with omegaconf (PyYAML without it); returns {"data"} or {"error"} (with the
    line where the parser gives one) plus the reader used. Never raises."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return {"reader": None, "text": "", "error": {"kind": "unreadable", "type": type(exc).__name__,
                                                       "message": str(exc)}}
    lines = text.splitlines()
    reader = None
    try:
        from omegaconf import OmegaConf

        reader = "omegaconf"
    except ImportError:
        if importlib.util.find_spec("yaml") is None:
            return {"reader": None, "text": text, "error": {
                "kind": "missing-reader", "type": "ModuleNotFoundError",
                "message": "neither omegaconf nor PyYAML is installed"}}
        reader = "yaml"
    try:
        if reader == "omegaconf":
            conf = OmegaConf.create(text)  # same parser as OmegaConf.load, without re-reading the file
            try:
                data = OmegaConf.to_container(conf, resolve=True)
            except Exception as exc:  # interpolation errors (${...} pointing nowhere)
                full_key = getattr(exc, "full_key", None)
                err = {"kind": "interpolation", "type": type(exc).__name__,
                       "message": str(exc).strip().splitlines()[0], "key": full_key}
                if full_key:
                    line = key_lines(text).get(str(full_key))
                    if line:
                        err["line"] = line
                        err["source_line"] = lines[line - 1]
                return {"reader": reader, "text": text, "error": err}
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:
        if hasattr(exc, "problem_mark") or hasattr(exc, "context_mark"):
            return {"reader": reader, "text": text, "error": _yaml_error(exc, lines)}
        return {"reader": reader, "text": text, "error": {"kind": "syntax", "type": type(exc).__name__,
                                                           "message": str(exc).strip().splitlines()[0] if str(exc).strip() else ""}}
    return {"reader": reader, "text": text, "data": data}


def _pick(params: Any, keys: Sequence[str]) -> Dict[str, Any]:
    if not isinstance(params, dict):
        return {}
    return {k: params[k] for k in keys if k in params}


def collect_targets(data: Any, prefix: str = "") -> List[Dict[str, str]]:
    """Every mapping with a `target` in the config, with its dotted path (model first)."""
    found: List[Dict[str, str]] = []
    if isinstance(data, dict):
        target = data.get("target")
        if isinstance(target, str):
            found.append({"path": prefix or "<root>", "target": target})
        for key, value in data.items():
            if key == "target":
                continue
            found.extend(collect_targets(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found.extend(collect_targets(value, f"{prefix}[{i}]"))
    return found


def summarise(data: Dict[str, Any]) -> Dict[str, Any]:
    """The values the static checks compare with the checkpoint, as plain data."""
    model = data.get("model") if isinstance(data.get("model"), dict) else {}
    params = model.get("params") if isinstance(model.get("params"), dict) else {}
    target = model.get("target") if isinstance(model.get("target"), str) else None
    summary: Dict[str, Any] = {"target": target, "params": _pick(params, MODEL_KEYS)}
    explicit = params.get("use_ema") if "use_ema" in params else None
    default = True if target and target.startswith(DDPM_MODULES) else None
    summary["use_ema"] = {"value": explicit, "explicit": "use_ema" in params,
                          "effective": bool(explicit) if "use_ema" in params else default}
    for name in SUB_CONFIGS:
        sub = params.get(name)
        if sub is None:
            continue
        if isinstance(sub, str):  # "__is_unconditional__", "__is_first_stage__"
            summary[name] = {"target": None, "special": sub}
            continue
        if not isinstance(sub, dict):
            continue
        sub_params = sub.get("params") if isinstance(sub.get("params"), dict) else {}
        entry: Dict[str, Any] = {"target": sub.get("target")}
        if name == "unet_config":
            entry["params"] = _pick(sub_params, UNET_KEYS)
        elif name == "first_stage_config":
            entry["params"] = _pick(sub_params, ("embed_dim", "ckpt_path"))
            entry["ddconfig"] = _pick(sub_params.get("ddconfig"), ("z_channels", "ch", "ch_mult", "resolution",
                                                                  "in_channels", "out_ch", "double_z"))
        else:
            entry["params"] = {k: v for k, v in sub_params.items() if not isinstance(v, (dict, list))}
        summary[name] = entry
    return summary


@dataclass(eq=False)
class LdmConfigFacts(FactRecord):
    """What `read_ldm_config` found (`ctx.fact("ldm_config")`); the JSON form is the dict it always was."""

    given: bool
    path: Optional[str] = None
    loaded: bool = False
    error: Optional[Dict[str, Any]] = None  # {"kind", "type", "message", "line"?, ...} when not loaded
    reader: Any = UNSET  # "omegaconf" | "yaml" | None, once the file was found
    summary: Any = UNSET  # summarise(): the values the static checks compare (when loaded)
    targets: Any = UNSET  # collect_targets(): every `target` with its dotted path
    lines: Any = UNSET  # dotted key path -> 1-based line
    data: Any = UNSET  # the parsed config


def _not_a_model_config(data: Any, text: str) -> Optional[Dict[str, Any]]:
    """The error for parsed data that is not an LDM model config, else None."""
    if data is None or data == {}:
        return {"kind": "not-a-mapping", "type": "empty", "message": "the file is empty"}
    if not isinstance(data, dict):
        return {"kind": "not-a-mapping", "type": type(data).__name__,
                "message": f"the file is a {type(data).__name__}, not a mapping with a top-level `model:` key"}
    model = data.get("model")
    if isinstance(model, dict) and isinstance(model.get("target"), str):
        return None
    error = {"kind": "no-model-target", "type": "KeyError",
             "message": "no `model.target` key: this is not an LDM model config "
                        f"(top-level keys: {', '.join(map(str, data)) or 'none'})"}
    lines = key_lines(text)
    if "model" in lines:
        error["line"] = lines["model"]
    return error


def read_ldm_config(path: Optional[str]) -> LdmConfigFacts:
    """Facts about the config at `path`: loaded or the error (with line), summary, targets, key lines."""
    if not path:
        return LdmConfigFacts(given=False)
    p = Path(path)
    facts = LdmConfigFacts(given=True, path=str(p))
    if not p.is_file():
        facts.error = {"kind": "unreadable", "type": "FileNotFoundError",
                       "message": f"{p} does not exist or is not a file"}
        return facts
    parsed = load_yaml(p)
    facts.reader = parsed.get("reader")
    if "error" in parsed:
        facts.error = parsed["error"]
        return facts
    data = parsed["data"]
    facts.error = _not_a_model_config(data, parsed["text"])
    if facts.error is not None:
        return facts
    facts.loaded = True
    facts.summary = summarise(data)
    facts.targets = collect_targets(data["model"], "model")
    facts.lines = key_lines(parsed["text"])
    facts.data = data
    return facts


def probe_ldm_config(ctx) -> LdmConfigFacts:
    return read_ldm_config(ctx.options.config)


_CLASS_DEF = "(?m)^(?:class|def)\\s+{name}\\b|^{name}\\s*=|\\bimport\\b[^\\n]*\\b{name}\\b"


def find_target(target: str, search_path: Sequence[str]) -> Dict[str, Any]:
    """Locate `pkg.module.Name` as source text on `search_path` without importing anything.

    Returns {"found": bool, "module_file", "defined": True/False/None (None: could not tell)}.
    """
    result: Dict[str, Any] = {"target": target, "found": False, "module_file": None, "defined": None}
    if "." not in target:
        result["reason"] = "not a dotted `module.Name` path"
        return result
    module, name = target.rsplit(".", 1)
    parts = module.split(".")
    for base in search_path:
        if not base or not os.path.isdir(base):
            continue
        root = Path(base)
        candidates = [root.joinpath(*parts).with_suffix(".py"), root.joinpath(*parts, "__init__.py")]
        # a compiled extension or a namespace package can also hold the module
        if not any(c.is_file() for c in candidates):
            if root.joinpath(*parts).is_dir() and not root.joinpath(parts[0], "__init__.py").exists():
                result.update(found=True, module_file=str(root.joinpath(*parts)))
                return result
            continue
        for cand in candidates:
            if cand.is_file():
                result["found"] = True
                result["module_file"] = str(cand)
                try:
                    text = cand.read_text(encoding="utf-8", errors="replace")
                except OSError:
                    return result
                result["defined"] = bool(re.search(_CLASS_DEF.format(name=re.escape(name)), text))
                if not result["defined"] and re.search(r"(?m)^\s*from\s+\S+\s+import\s+\*", text):
                    result["defined"] = None  # star-import: it may come from elsewhere
                return result
    # installed as a single module or extension somewhere else (e.g. torch's compiled parts)
    top = parts[0]
    for base in search_path:
        if base and os.path.isdir(base) and any(
                Path(base, top + ext).exists() for ext in (".py", ".so", ".pyd")):
            result.update(found=True, module_file=str(Path(base, top)), defined=None)
            return result
    return result


def target_search_path(code_root: Optional[str]) -> List[str]:
    """Where `import` would look in the child process: the code root first, then this interpreter's path."""
    path = [code_root] if code_root else []
    cwd = os.getcwd()
    return path + [p if p else cwd for p in sys.path]
