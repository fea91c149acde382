"""Config vs checkpoint, decided before any model is built (knowledge base K07, K08, K09).

Each rule takes the config facts (`probes/ldm_config.py`) and the checkpoint's key -> shape map as
plain data, so every mismatch is tested with hand-made dicts. The anchors are the tensors that
identify a layout without reading data (checkpoint-anchors.md, section 9): the UNet input conv
(`input_blocks.0.0.weight`, in-channels 4/9/8/5), the cross-attention width (`attn2.to_k.weight`,
768 SD1 / 1024 SD2 / 2048 SDXL), `proj_in` rank (linear in SD2), the text encoder's key prefix and
width, and the `model_ema.*` shadow weights.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..findings import Finding, Status, ok, skip
from ..probes.ldm_config import find_target, probe_ldm_config, target_search_path
from ..registry import Check
from ..util import version_at_least

Shapes = Mapping[str, Sequence[int]]

UNET = "model.diffusion_model."
UNET_IN = UNET + "input_blocks.0.0.weight"
UNET_OUT = UNET + "out.2.weight"
EMA = "model_ema."
EMA_SCALARS = ("model_ema.decay", "model_ema.num_updates")
CLIP_PREFIX = "cond_stage_model.transformer.text_model."
FLAT_PREFIX = "cond_stage_model.transformer."
OPENCLIP_PREFIX = "cond_stage_model.model."
SDXL_PREFIX = "conditioner.embedders."
ATTN2_TO_K = re.compile(r"^model\.diffusion_model\.(input_blocks|middle_block|output_blocks)\..*\.attn2\.to_k\.weight$")
PROJ_IN = re.compile(r"^model\.diffusion_model\..*\.proj_in\.weight$")

VARIANTS = {4: "txt2img", 9: "inpainting (4 latent + 4 masked-image latent + 1 mask channels)",
            8: "instruct-pix2pix", 5: "depth-to-image", 7: "x4 upscaler"}
FAMILIES = {768: "SD 1.x (CLIP ViT-L/14 text encoder)", 1024: "SD 2.x (OpenCLIP ViT-H/14 text encoder)",
            2048: "SDXL base", 1280: "SDXL refiner"}
# The inference config that goes with each (family, unet in-channels), as shipped by CompVis/RunwayML/Stability.
CONFIG_FOR = {
    (768, 4): "v1-inference.yaml", (768, 9): "v1-inpainting-inference.yaml",
    (1024, 4): "v2-inference.yaml (v2-inference-v.yaml for 768-v models)",
    (1024, 9): "v2-inpainting-inference.yaml", (1024, 5): "v2-midas-inference.yaml",
}
TEXT_ENCODERS = {"FrozenCLIPEmbedder": "clip", "FrozenOpenCLIPEmbedder": "openclip", "FrozenCLIPT5Encoder": "clip"}
TE_NAMES = {"clip": "CLIP text encoder (`cond_stage_model.transformer.text_model.*`)",
            "clip-flat": "CLIP text encoder without the `text_model.` level (`cond_stage_model.transformer.*`)",
            "openclip": "OpenCLIP (`cond_stage_model.model.*`, SD 2.x)",
            "sdxl": "SDXL conditioner (`conditioner.embedders.*`)"}


def _natural(key: str) -> List[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]


def first_match(shapes: Shapes, pattern) -> Optional[str]:
    found = sorted((k for k in shapes if pattern.match(k)), key=_natural)
    return found[0] if found else None


def text_encoder_kind(shapes: Shapes) -> Tuple[str, int]:
    """(kind, tensor count) of the text encoder in the checkpoint: clip, clip-flat, openclip, sdxl or absent."""
    counts = {"clip": 0, "clip-flat": 0, "openclip": 0, "sdxl": 0}
    for key in shapes:
        if key.startswith(CLIP_PREFIX):
            counts["clip"] += 1
        elif key.startswith(FLAT_PREFIX):
            counts["clip-flat"] += 1
        elif key.startswith(OPENCLIP_PREFIX):
            counts["openclip"] += 1
        elif key.startswith(SDXL_PREFIX):
            counts["sdxl"] += 1
    kind = max(counts, key=lambda k: counts[k])
    return (kind, counts[kind]) if counts[kind] else ("absent", 0)


def text_encoder_width(shapes: Shapes) -> Optional[int]:
    for key in (CLIP_PREFIX + "final_layer_norm.weight", FLAT_PREFIX + "final_layer_norm.weight",
                OPENCLIP_PREFIX + "ln_final.weight"):
        if key in shapes and len(shapes[key]) == 1:
            return int(shapes[key][0])
    return None


def _line(config: Mapping[str, Any], dotted: str) -> Optional[int]:
    return (config.get("lines") or {}).get(dotted)


def _where(config: Mapping[str, Any], dotted: str) -> str:
    line = _line(config, dotted)
    return f"{config.get('path')}:{line}" if line else str(config.get("path"))


def _unet(summary: Mapping[str, Any]) -> Dict[str, Any]:
    return dict(((summary.get("unet_config") or {}).get("params")) or {})


def _not_ready(code: str, title: str, config: Mapping[str, Any], layout: Mapping[str, Any]) -> Optional[Finding]:
    """The skip every config-vs-checkpoint rule shares when one side is missing."""
    if not config.get("given"):
        return skip(code, title, "No --config was given.")
    if not config.get("loaded"):
        return skip(code, title, "The config could not be read (see config.load).")
    if not layout.get("ok"):
        err = layout.get("error") or {}
        if err.get("kind") == "no-checkpoint":
            return skip(code, title, "No --checkpoint was given: nothing to compare the config with.")
        hint = " (see ckpt.weights-only-refused)" if err.get("kind") == "weights-only-refused" else " (see ckpt.*)"
        return skip(code, title, f"The checkpoint's tensor shapes could not be read: {err.get('message')}{hint}",
                    error=err)
    return None


# ---------------------------------------------------------------------------------------------


def rule_config_load(config: Mapping[str, Any]) -> Finding:
    code, title = "config.load", "LDM config readable"
    if not config.get("given"):
        return skip(code, title, "No --config was given (pass the inference yaml, e.g. v1-inference.yaml).")
    err = config.get("error")
    path = config.get("path")
    if err:
        where = f" (line {err['line']}" + (f", column {err['column']}" if err.get("column") else "") + ")" \
            if err.get("line") else ""
        evidence = {k: v for k, v in err.items() if k != "message"}
        evidence.update(path=path, message=err.get("message"))
        kind = err.get("kind")
        if kind == "missing-reader":
            return Finding(code, Status.FAIL, title, f"Cannot read {path}: neither omegaconf nor PyYAML is installed.",
                           evidence=evidence, cause="ldm reads its configs with omegaconf.",
                           fix="pip install omegaconf")
        if kind == "unreadable":
            return Finding(code, Status.FAIL, title, f"Cannot read {path}: {err.get('message')}", evidence=evidence,
                           cause="The file is missing, unreadable or not UTF-8 text.",
                           fix="Pass the path of the model's inference yaml with --config.")
        if kind == "syntax":
            src = err.get("source_line")
            return Finding(
                code, Status.FAIL, title,
                f"{path} is not valid YAML{where}: {err.get('message')}" + (f": `{src.strip()}`" if src else ""),
                evidence=evidence,
                cause="A YAML syntax error: often a tab used for indentation, an unclosed [ or {, or a missing "
                      "space after a colon.",
                fix=f"Edit {path}" + (f" at line {err['line']}" if err.get("line") else "")
                    + "; compare it with the original config shipped with the model "
                      "(e.g. v1-inference.yaml) and indent with spaces only.",
            )
        if kind == "interpolation":
            return Finding(code, Status.FAIL, title,
                           f"{path}: an interpolation cannot be resolved{where}: {err.get('message')}",
                           evidence=evidence, cause="A `${...}` reference points at a key that does not exist.",
                           fix="Replace the `${...}` value with a literal, or define the key it refers to.")
        if kind in ("not-a-mapping", "no-model-target"):
            return Finding(code, Status.FAIL, title, f"{path} is not an LDM model config: {err.get('message')}{where}.",
                           evidence=evidence,
                           cause="ldm builds the model with instantiate_from_config(config.model), which needs "
                                 "`model.target` and `model.params`.",
                           fix="Pass the model's inference config (v1-inference.yaml, v1-inpainting-inference.yaml, "
                               "v2-inference.yaml, ...), not a training or application config.")
        return Finding(code, Status.FAIL, title, f"Cannot read {path}: {err.get('message')}", evidence=evidence,
                       fix="Check the file against the original config shipped with the model.")
    summary = config.get("summary") or {}
    unet = _unet(summary)
    cond = summary.get("cond_stage_config") or {}
    ema = summary.get("use_ema") or {}
    bits = [f"target {summary.get('target')}"]
    if unet:
        bits.append(f"UNet in_channels {unet.get('in_channels')}, context_dim {unet.get('context_dim')}")
    if cond:
        bits.append(f"text encoder {str(cond.get('target') or cond.get('special')).rsplit('.', 1)[-1]}")
    if ema.get("effective") is not None:
        bits.append(f"use_ema {ema.get('effective')}" + ("" if ema.get("explicit") else " (default)"))
    return ok(code, title, f"Read {path} with {config.get('reader')}: " + "; ".join(bits) + ".",
              path=path, reader=config.get("reader"), values=summary)


def rule_config_targets(config: Mapping[str, Any], resolved: Sequence[Mapping[str, Any]],
                        code_root: Optional[str] = None) -> Finding:
    """`resolved`: find_target() results, one per config target (with its config `path`)."""
    code, title = "config.targets", "Config targets exist in the code"
    if not config.get("given"):
        return skip(code, title, "No --config was given.")
    if not config.get("loaded"):
        return skip(code, title, "The config could not be read (see config.load).")
    missing = [r for r in resolved if not r.get("found") or r.get("defined") is False]
    built_missing = [r for r in missing if "scheduler_config" not in str(r.get("path"))]
    evidence = {"targets": list(resolved), "code_root": code_root}
    if not missing:
        return ok(code, title, f"All {len(resolved)} targets in the config resolve to source files "
                               "(found without importing them).", **evidence)
    lines = []
    for r in missing:
        if not r.get("found"):
            lines.append(f"{r['target']} ({r.get('path')}): module not found")
        else:
            lines.append(f"{r['target']} ({r.get('path')}): {r['module_file']} defines no "
                         f"`{r['target'].rsplit('.', 1)[-1]}`")
    ldm_target = any(str(r["target"]).startswith("ldm.") for r in missing)
    cause = ("The `ldm` code on the path is not the one this config was written for: e.g. "
             "LatentInpaintDiffusion and FrozenOpenCLIPEmbedder exist in Stability-AI/stablediffusion and the "
             "RunwayML fork, not in the original CompVis repository." if ldm_target else
             "A package the config refers to is not installed, or the name is misspelt.")
    fix = ("Pass --code-root with the repository that matches the config (the directory holding `ldm/`), or use "
           "the config shipped with that code." if ldm_target else
           "Install the package that provides the module, or correct the `target:` line.")
    text = "; ".join(lines[:5]) + (f" (+{len(lines) - 5} more)" if len(lines) > 5 else "")
    if not built_missing:
        return ok(code, title, f"All {len(resolved) - len(missing)} targets built for inference resolve to source "
                               f"files; not found, but only used for training: {text}.", **evidence)
    return Finding(code, Status.FAIL, title, f"Targets that cannot be imported: {text}.",
                   evidence=evidence, cause=cause, fix=fix)


def _config_for(ctx_dim: Optional[int], in_ch: Optional[int]) -> Optional[str]:
    return CONFIG_FOR.get((ctx_dim, in_ch)) if ctx_dim and in_ch else None


def rule_in_channels(config: Mapping[str, Any], shapes: Shapes, layout: Optional[Mapping[str, Any]] = None) -> Finding:
    code, title = "config.in-channels", "UNet input channels: config vs checkpoint"
    not_ready = _not_ready(code, title, config, layout or {"ok": True})
    if not_ready:
        return not_ready
    summary = config.get("summary") or {}
    unet = _unet(summary)
    if UNET_IN not in shapes:
        return skip(code, title, f"The checkpoint has no UNet input conv ({UNET_IN}); see ckpt.components.")
    if "in_channels" not in unet:
        return skip(code, title, "The config has no unet_config.params.in_channels to compare.")
    ck = list(shapes[UNET_IN])
    ck_in = int(ck[1]) if len(ck) > 1 else None
    cfg_in = unet.get("in_channels")
    key_path = "model.params.unet_config.params.in_channels"
    ctx_key = first_match(shapes, ATTN2_TO_K)
    ctx_dim = int(shapes[ctx_key][1]) if ctx_key and len(shapes[ctx_key]) > 1 else unet.get("context_dim")
    evidence: Dict[str, Any] = {"checkpoint": {UNET_IN: ck}, "config": {"in_channels": cfg_in},
                                "config_line": _where(config, key_path),
                                "checkpoint_variant": VARIANTS.get(ck_in, "unknown")}
    problems = []
    if ck_in != cfg_in:
        suggested = _config_for(ctx_dim, ck_in)
        problems.append(Finding(
            code, Status.FAIL, title,
            f"The checkpoint's UNet takes {ck_in} input channels ({UNET_IN} {ck}: "
            f"{VARIANTS.get(ck_in, 'unknown variant')}), but the config says in_channels: {cfg_in} "
            f"({_where(config, key_path)}): loading fails with 'size mismatch for {UNET_IN}'.",
            evidence=evidence,
            cause=("An inpainting checkpoint paired with a txt2img config" if ck_in == 9 and cfg_in == 4 else
                   "A txt2img checkpoint paired with an inpainting config" if ck_in == 4 and cfg_in == 9 else
                   "The config describes a different model variant than the checkpoint") + " (knowledge base K07).",
            fix=(f"Use {suggested}" if suggested else f"Use the config that matches a {ck_in}-channel UNet")
                + (" (LatentInpaintDiffusion, conditioning_key: hybrid, in_channels: 9)" if ck_in == 9 else
                   f" (in_channels: {ck_in})") + ".",
            docs=["https://github.com/TheLastBen/fast-stable-diffusion/issues/1499"],
        ))
    if UNET_OUT in shapes and "out_channels" in unet and int(shapes[UNET_OUT][0]) != unet["out_channels"]:
        evidence["checkpoint"][UNET_OUT] = list(shapes[UNET_OUT])
        evidence["config"]["out_channels"] = unet["out_channels"]
        problems.append(Finding(code, Status.FAIL, title,
                                f"UNet output channels differ: {UNET_OUT} {list(shapes[UNET_OUT])} vs out_channels: "
                                f"{unet['out_channels']}.", evidence=evidence,
                                fix="Use the config shipped with this checkpoint."))
    latent = (summary.get("params") or {}).get("channels", 4)
    key = (summary.get("params") or {}).get("conditioning_key")
    if not problems and isinstance(cfg_in, int) and isinstance(latent, int) and cfg_in > latent \
            and key not in ("hybrid", "concat", "hybrid-adm"):
        evidence["config"].update(conditioning_key=key, channels=latent)
        return Finding(
            code, Status.FAIL, title,
            f"in_channels: {cfg_in} matches the checkpoint, but conditioning_key: {key} feeds the UNet only the "
            f"{latent} latent channels: the first denoising step fails with a channel mismatch.",
            evidence=evidence,
            cause="Extra UNet input channels (mask, masked image, depth) are passed through c_concat, which only "
                  "the `hybrid` and `concat` conditioning keys use.",
            fix="Use the variant's own config, e.g. v1-inpainting-inference.yaml "
                "(target LatentInpaintDiffusion, conditioning_key: hybrid).",
        )
    if problems:
        if len(problems) == 1:
            return problems[0]
        first = problems[0]
        first.summary += " " + " ".join(p.summary for p in problems[1:])
        return first
    return ok(code, title, f"The UNet input conv {ck} matches in_channels: {cfg_in} "
                           f"({VARIANTS.get(ck_in, 'unknown variant')}).", **evidence)


def rule_context_dim(config: Mapping[str, Any], shapes: Shapes, layout: Optional[Mapping[str, Any]] = None) -> Finding:
    code, title = "config.context-dim", "Cross-attention width: config vs checkpoint (SD1 vs SD2)"
    not_ready = _not_ready(code, title, config, layout or {"ok": True})
    if not_ready:
        return not_ready
    summary = config.get("summary") or {}
    unet = _unet(summary)
    to_k = first_match(shapes, ATTN2_TO_K)
    te_width = text_encoder_width(shapes)
    if not to_k and te_width is None:
        return skip(code, title, "The checkpoint has neither UNet cross-attention nor text-encoder weights to compare.")
    cfg_ctx = unet.get("context_dim")
    evidence: Dict[str, Any] = {"config": {"context_dim": cfg_ctx,
                                           "use_linear_in_transformer": unet.get("use_linear_in_transformer", False)},
                                "config_line": _where(config, "model.params.unet_config.params.context_dim"),
                                "checkpoint": {}}
    problems: List[str] = []
    ck_ctx = None
    if to_k:
        ck_ctx = int(shapes[to_k][1]) if len(shapes[to_k]) > 1 else None
        evidence["checkpoint"][to_k] = list(shapes[to_k])
        if cfg_ctx is not None and ck_ctx != cfg_ctx:
            problems.append(f"the UNet's cross-attention takes {ck_ctx}-wide context ({to_k} {list(shapes[to_k])}, "
                            f"{FAMILIES.get(ck_ctx, 'unknown family')}) but the config says context_dim: {cfg_ctx} "
                            f"({FAMILIES.get(cfg_ctx, 'unknown family')})")
    if te_width is not None:
        evidence["checkpoint"]["text_encoder_width"] = te_width
        if cfg_ctx is not None and te_width != cfg_ctx and not (ck_ctx and ck_ctx != cfg_ctx and te_width == ck_ctx):
            problems.append(f"the checkpoint's text encoder outputs {te_width}-wide embeddings but the config's UNet "
                            f"expects context_dim: {cfg_ctx}")
    proj = first_match(shapes, PROJ_IN)
    if proj:
        linear = len(shapes[proj]) == 2
        cfg_linear = bool(unet.get("use_linear_in_transformer", False))
        evidence["checkpoint"][proj] = list(shapes[proj])
        if unet.get("use_spatial_transformer", True) and linear != cfg_linear:
            problems.append(f"{proj} is {list(shapes[proj])} ({'linear' if linear else '1x1 conv'}) but the config has "
                            f"use_linear_in_transformer: {cfg_linear}")
    if problems:
        family = ck_ctx or te_width
        in_ch = int(shapes[UNET_IN][1]) if UNET_IN in shapes and len(shapes[UNET_IN]) > 1 else 4
        suggested = _config_for(family, in_ch)
        return Finding(
            code, Status.FAIL, title,
            "Config and checkpoint are different model families: " + "; ".join(problems)
            + ". Loading fails with 'size mismatch' on every attn2.to_k/to_v (and proj_in) weight.",
            evidence=evidence,
            cause="An SD 2.x checkpoint with an SD 1.x config or the other way round (knowledge base K08): SD 2 uses "
                  "the OpenCLIP ViT-H/14 text encoder (1024) and linear proj_in, SD 1 CLIP ViT-L/14 (768) and "
                  "1x1-conv proj_in.",
            fix=(f"Use {suggested}" if suggested else "Use the config shipped with this checkpoint")
                + (" with the Stability-AI/stablediffusion code (FrozenOpenCLIPEmbedder); 768-v models also need "
                   "parameterization: \"v\"" if family == 1024 else "") + ".",
            docs=["https://github.com/TheLastBen/fast-stable-diffusion/issues/607"],
        )
    width = ck_ctx or te_width
    return ok(code, title, f"Cross-attention width {width} matches context_dim: {cfg_ctx} "
                           f"({FAMILIES.get(width, 'unknown family')}).", **evidence)


def rule_use_ema(config: Mapping[str, Any], shapes: Shapes, layout: Optional[Mapping[str, Any]] = None) -> Finding:
    code, title = "config.use-ema", "use_ema vs EMA weights in the checkpoint"
    not_ready = _not_ready(code, title, config, layout or {"ok": True})
    if not_ready:
        return not_ready
    summary = config.get("summary") or {}
    ema_cfg = summary.get("use_ema") or {}
    use_ema = ema_cfg.get("effective")
    unet_keys = sum(1 for k in shapes if k.startswith(UNET))
    ema_keys = [k for k in shapes if k.startswith(EMA)]
    scalars = [k for k in ema_keys if k in EMA_SCALARS]
    shadows = len(ema_keys) - len(scalars)
    line = _where(config, "model.params.use_ema") if ema_cfg.get("explicit") else _where(config, "model.params")
    evidence = {"use_ema": use_ema, "explicit": bool(ema_cfg.get("explicit")), "config_line": line,
                "checkpoint": {"unet_tensors": unet_keys, "ema_tensors": shadows, "ema_scalars": scalars}}
    if not unet_keys:
        return skip(code, title, "The checkpoint has no UNet weights, so EMA weights are not expected.", **evidence)
    if use_ema is None:
        return skip(code, title, f"Cannot tell whether {summary.get('target')} keeps EMA weights (not an ldm DDPM "
                                 "class and no use_ema in the config).", **evidence)
    where = "" if ema_cfg.get("explicit") else " (not set in the config: LatentDiffusion defaults use_ema to True)"
    if use_ema and shadows == 0:
        expected_missing = unet_keys + (len(EMA_SCALARS) - len(scalars))
        evidence["expected_missing_keys"] = expected_missing
        return Finding(
            code, Status.FAIL, title,
            f"use_ema is True{where}, but the checkpoint has no EMA weights (a pruned file): loading reports "
            f"about {expected_missing} missing model_ema.* keys, and model.ema_scope() (used by the txt2img/img2img "
            "scripts) swaps in EMA buffers that were never loaded.",
            evidence=evidence,
            cause="LitEma registers one shadow buffer per UNet parameter plus decay and num_updates; a pruned or "
                  "EMA-only file keeps the weights to use in model.* and drops model_ema.* (knowledge base K09).",
            fix=f"Add `use_ema: False` under model.params in {config.get('path')} (the file's model.* weights are the "
                "ones to use), or load a full checkpoint that carries model_ema.*.",
            docs=["https://github.com/CompVis/stable-diffusion/issues/271"],
        )
    if use_ema and shadows < unet_keys:
        return Finding(
            code, Status.FAIL, title,
            f"use_ema is True{where}, but the checkpoint has only {shadows} of {unet_keys} EMA weights: the rest "
            "stay unloaded and ema_scope() mixes loaded and unloaded weights.",
            evidence=evidence, cause="An incomplete EMA (a merge or a conversion that dropped part of model_ema.*); "
                                     "see ckpt.ema-incomplete.",
            fix=f"Set `use_ema: False` under model.params in {config.get('path')}, or use a complete checkpoint.")
    if use_ema:
        return ok(code, title, f"use_ema is True{where} and the checkpoint carries all {shadows} EMA weights.",
                  **evidence)
    if shadows:
        return Finding(
            code, Status.WARN, title,
            f"The checkpoint carries {shadows} EMA weights (model_ema.*) that use_ema: False ignores: they load as "
            "unexpected keys and the model samples with the non-EMA weights model.*.",
            evidence=evidence, blocking=False,
            cause="A full (training) checkpoint with both weight sets, used with an inference config.",
            fix="Usually fine. To sample with the EMA weights (what the model card reports), set `use_ema: True` and "
                "sample inside model.ema_scope(), or use the EMA-only (pruned) release of the checkpoint.",
        )
    return ok(code, title, "use_ema is False and the checkpoint has no EMA shadow weights"
              + (f" (only {', '.join(scalars)}, ignored)" if scalars else "") + ".", **evidence)


def clip_key_style(transformers_version: Optional[str]) -> Optional[str]:
    """How the installed transformers names CLIPTextModel's weights: "text_model" (< 5), "flat" (>= 5), None."""
    at_least_5 = version_at_least(transformers_version, "5")
    if at_least_5 is None:
        return None
    return "flat" if at_least_5 else "text_model"


def rule_cond_stage(config: Mapping[str, Any], shapes: Shapes, layout: Optional[Mapping[str, Any]] = None,
                    transformers_version: Optional[str] = None) -> Finding:
    code, title = "config.cond-stage", "Text encoder: config vs checkpoint"
    not_ready = _not_ready(code, title, config, layout or {"ok": True})
    if not_ready:
        return not_ready
    summary = config.get("summary") or {}
    cond = summary.get("cond_stage_config") or {}
    target = cond.get("target") or cond.get("special")
    cls = str(target).rsplit(".", 1)[-1] if target else None
    expected = TEXT_ENCODERS.get(cls or "")
    kind, n = text_encoder_kind(shapes)
    params = cond.get("params") or {}
    version = params.get("version")
    if cls == "FrozenCLIPEmbedder" and not version:
        version = "openai/clip-vit-large-patch14"
    evidence = {"config": {"target": target, "version": version},
                "config_line": _where(config, "model.params.cond_stage_config.target"),
                "checkpoint": {"text_encoder": kind, "tensors": n, "width": text_encoder_width(shapes)},
                "transformers": transformers_version}
    if target is None:
        return skip(code, title, "The config has no cond_stage_config.", **evidence)
    if target == "__is_unconditional__":
        if kind != "absent":
            return Finding(code, Status.WARN, title,
                           f"The config builds an unconditional model, but the checkpoint has a {TE_NAMES[kind]}: "
                           "its weights are ignored.", evidence=evidence, blocking=False,
                           fix="Use the config shipped with this checkpoint.")
        return ok(code, title, "Unconditional model: no text encoder expected, none in the checkpoint.", **evidence)
    if expected is None:
        return skip(code, title, f"No rule for text encoder {cls}; the load check still compares its keys.", **evidence)
    if kind == "absent":
        return Finding(
            code, Status.INFO, title,
            f"The checkpoint has no text-encoder weights: {cls} will take them, with the tokenizer, from "
            f"version {version!r} at start-up, so they must be in the Hugging Face cache or in that directory.",
            evidence=evidence,
            fix="Make sure the files are present before going offline (see cache.model-missing, tokenizer.functional).",
        )
    found = "clip" if kind in ("clip", "clip-flat") else kind
    if found != expected:
        fam = "SD 2.x" if kind == "openclip" else "SD 1.x" if found == "clip" else kind
        return Finding(
            code, Status.FAIL, title,
            f"The config builds {cls} but the checkpoint's text encoder is {TE_NAMES.get(kind, kind)} ({n} tensors): "
            f"this is an {fam} checkpoint. The encoder's weights would not load, and its output width does not "
            "match the UNet.",
            evidence=evidence,
            cause="A config of the other model family (knowledge base K08).",
            fix="Use v2-inference.yaml (FrozenOpenCLIPEmbedder) for SD 2.x checkpoints" if kind == "openclip"
            else "Use v1-inference.yaml (FrozenCLIPEmbedder) for SD 1.x checkpoints",
        )
    note = (f"; its tokenizer and model config still come from version {version!r} (see tokenizer.functional)"
            if expected == "clip" else "")
    style = clip_key_style(transformers_version) if expected == "clip" else None
    file_style = "text_model" if kind == "clip" else "flat" if kind == "clip-flat" else None
    if style and file_style and style != file_style:
        evidence["key_style"] = {"checkpoint": file_style, "installed_transformers": style}
        if style == "flat":
            what = (f"transformers {transformers_version} names CLIPTextModel's weights without the `text_model.` "
                    f"level, but the checkpoint uses cond_stage_model.transformer.text_model.* (the SD 1.x layout)")
            fix = ("If the text encoder was fine-tuned, load the file with the `text_model.` part removed from those "
                   "keys (`{k.replace('transformer.text_model.', 'transformer.', 1): v for k, v in sd.items()}`), "
                   "or pin `transformers<5`; for the SD 1.x base models (frozen CLIP) the weights from version are "
                   "the same.")
        else:
            what = (f"transformers {transformers_version} names CLIPTextModel's weights text_model.*, but the "
                    "checkpoint has cond_stage_model.transformer.* without `text_model.` (saved by transformers 5, "
                    "or an old NovelAI-style layout)")
            fix = ("Insert `text_model.` after `cond_stage_model.transformer.` in those keys before loading "
                   "(A1111 and ComfyUI do this on load).")
        return Finding(
            code, Status.WARN, title,
            f"{what}: with ldm's strict=False load the file's {n} text-encoder tensors are ignored and the text "
            f"encoder keeps the weights from version {version!r}; a strict load fails.",
            evidence=evidence, blocking=False,
            cause="CLIPTextModel's parameter names changed between transformers 4 and 5 (from_pretrained renames "
                  "them; nn.Module.load_state_dict does not).",
            fix=fix,
        )
    return ok(code, title, f"The config's {cls} matches the checkpoint's {TE_NAMES[kind]} ({n} tensors){note}.",
              **evidence)


# ---------------------------------------------------------------------------------------------


def _config(ctx):
    return ctx.fact("ldm_config", probe_ldm_config)


def _layout(ctx):
    from ..probes.model import checkpoint_shapes

    return checkpoint_shapes(ctx)


def _compare(rule):
    def run(ctx):
        config = _config(ctx)
        if not config.get("loaded"):
            return [rule(config, {}, {"ok": True})]
        layout = _layout(ctx)
        return [rule(config, layout.get("shapes") or {}, layout)]
    return run


def _cond_stage(ctx):
    from ..probes.environment import probe_environment

    config = _config(ctx)
    layout = _layout(ctx) if config.get("loaded") else {"ok": True}
    versions = ctx.fact("environment", probe_environment).get("packages") or {}
    return [rule_cond_stage(config, layout.get("shapes") or {}, layout, versions.get("transformers"))]


def _targets(ctx):
    config = _config(ctx)
    resolved = []
    if config.get("loaded"):
        search = target_search_path(ctx.options.code_root)
        for entry in config.get("targets") or []:
            found = find_target(entry["target"], search)
            found["path"] = entry["path"]
            resolved.append(found)
    return [rule_config_targets(config, resolved, ctx.options.code_root)]


CHECKS: List[Check] = [
    Check("config.load", "LDM config readable", lambda ctx: [rule_config_load(_config(ctx))], reads=("ctx",)),
    Check("config.targets", "Config targets exist in the code", _targets, reads=("ctx",)),
    Check("config.in-channels", "UNet input channels: config vs checkpoint", _compare(rule_in_channels), reads=("ctx",)),
    Check("config.context-dim", "Cross-attention width: config vs checkpoint (SD1 vs SD2)", _compare(rule_context_dim), reads=("ctx",)),
    Check("config.use-ema", "use_ema vs EMA weights in the checkpoint", _compare(rule_use_ema), reads=("ctx",)),
    Check("config.cond-stage", "Text encoder: config vs checkpoint", _cond_stage, reads=("ctx",)),
]
