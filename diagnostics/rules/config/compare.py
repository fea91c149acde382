"""config.in-channels, config.context-dim, config.use-ema: the yaml against the checkpoint's shapes
(knowledge base K07, K08, K09). The anchors are those of `probes/checkpoint/layout.py`: the UNet input
conv (in-channels 4/9/8/5), the cross-attention width (768 SD1 / 1024 SD2 / 2048 SDXL), `proj_in` rank
(linear in SD2), the text encoder's width, and the `model_ema.*` shadow weights."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from ...findings import Finding, Status, verdict
from ...probes.checkpoint.layout import (ATTN2_TO_K, EMA, EMA_SCALARS, PROJ_IN, UNET, UNET_IN, UNET_OUT, VARIANT_TEXT,
                                         first_match, text_encoder_width)
from ...probes.ldm_config import LdmConfigFacts
from .common import Shapes, config_where, unet_params

FAMILIES = {768: "SD 1.x (CLIP ViT-L/14 text encoder)", 1024: "SD 2.x (OpenCLIP ViT-H/14 text encoder)",
            2048: "SDXL base", 1280: "SDXL refiner"}
# The inference config that goes with each (family, unet in-channels), as shipped by CompVis/RunwayML/Stability.
CONFIG_FOR = {
    (768, 4): "v1-inference.yaml", (768, 9): "v1-inpainting-inference.yaml",
    (1024, 4): "v2-inference.yaml (v2-inference-v.yaml for 768-v models)",
    (1024, 9): "v2-inpainting-inference.yaml", (1024, 5): "v2-midas-inference.yaml",
}


def _config_for(ctx_dim: Optional[int], in_ch: Optional[int]) -> Optional[str]:
    return CONFIG_FOR.get((ctx_dim, in_ch)) if ctx_dim and in_ch else None


def rule_in_channels(config: LdmConfigFacts, shapes: Shapes) -> Finding:
    summary = config.summary or {}
    unet = unet_params(summary)
    if UNET_IN not in shapes:
        return verdict(Status.SKIP, f"The checkpoint has no UNet input conv ({UNET_IN}); see ckpt.components.")
    if "in_channels" not in unet:
        return verdict(Status.SKIP, "The config has no unet_config.params.in_channels to compare.")
    ck = list(shapes[UNET_IN])
    ck_in = int(ck[1]) if len(ck) > 1 else None
    cfg_in = unet.get("in_channels")
    key_path = "model.params.unet_config.params.in_channels"
    ctx_key = first_match(shapes, ATTN2_TO_K)
    ctx_dim = int(shapes[ctx_key][1]) if ctx_key and len(shapes[ctx_key]) > 1 else unet.get("context_dim")
    evidence: Dict[str, Any] = {"checkpoint": {UNET_IN: ck}, "config": {"in_channels": cfg_in},
                                "config_line": config_where(config, key_path),
                                "checkpoint_variant": VARIANT_TEXT.get(ck_in, "unknown")}
    out_mismatch = UNET_OUT in shapes and "out_channels" in unet and int(shapes[UNET_OUT][0]) != unet["out_channels"]
    if out_mismatch:
        evidence["checkpoint"][UNET_OUT] = list(shapes[UNET_OUT])
        evidence["config"]["out_channels"] = unet["out_channels"]
        out_text = (f"UNet output channels differ: {UNET_OUT} {list(shapes[UNET_OUT])} vs out_channels: "
                    f"{unet['out_channels']}.")
    if ck_in != cfg_in:
        details = _in_channel_mismatch(config, ck, ck_in, cfg_in, ctx_dim)
        if out_mismatch:
            details["summary"] += " " + out_text
        return verdict(Status.FAIL, details.pop("summary"), evidence=evidence, **details)
    if out_mismatch:
        return verdict(Status.FAIL, out_text, evidence=evidence, fix="Use the config shipped with this checkpoint.")
    latent = (summary.get("params") or {}).get("channels", 4)
    key = (summary.get("params") or {}).get("conditioning_key")
    if isinstance(cfg_in, int) and isinstance(latent, int) and cfg_in > latent \
            and key not in ("hybrid", "concat", "hybrid-adm"):
        evidence["config"].update(conditioning_key=key, channels=latent)
        return verdict(Status.FAIL,
            f"in_channels: {cfg_in} matches the checkpoint, but conditioning_key: {key} feeds the UNet only the "
            f"{latent} latent channels: the first denoising step fails with a channel mismatch.",
            evidence=evidence,
            cause="Extra UNet input channels (mask, masked image, depth) are passed through c_concat, which only "
                  "the `hybrid` and `concat` conditioning keys use.",
            fix="Use the variant's own config, e.g. v1-inpainting-inference.yaml "
                "(target LatentInpaintDiffusion, conditioning_key: hybrid).",
        )
    return verdict(Status.OK, f"The UNet input conv {ck} matches in_channels: {cfg_in} "
                   f"({VARIANT_TEXT.get(ck_in, 'unknown variant')}).", evidence=evidence)


def _in_channel_mismatch(config: LdmConfigFacts, ck: List[int], ck_in: Optional[int], cfg_in: Any,
                         ctx_dim: Optional[int]) -> Dict[str, Any]:
    """Summary, cause, fix and docs when the UNet input conv and in_channels differ (K07)."""
    key_path = "model.params.unet_config.params.in_channels"
    suggested = _config_for(ctx_dim, ck_in)
    return {
        "summary": f"The checkpoint's UNet takes {ck_in} input channels ({UNET_IN} {ck}: "
                   f"{VARIANT_TEXT.get(ck_in, 'unknown variant')}), but the config says in_channels: {cfg_in} "
                   f"({config_where(config, key_path)}): loading fails with 'size mismatch for {UNET_IN}'.",
        "cause": ("An inpainting checkpoint paired with a txt2img config" if ck_in == 9 and cfg_in == 4 else
                  "A txt2img checkpoint paired with an inpainting config" if ck_in == 4 and cfg_in == 9 else
                  "The config describes a different model variant than the checkpoint") + ".",
        "fix": (f"Use {suggested}" if suggested else f"Use the config that matches a {ck_in}-channel UNet")
               + (" (LatentInpaintDiffusion, conditioning_key: hybrid, in_channels: 9)" if ck_in == 9 else
                  f" (in_channels: {ck_in})") + ".",
        "docs": ["https://github.com/TheLastBen/fast-stable-diffusion/issues/1499"],
    }


def rule_context_dim(config: LdmConfigFacts, shapes: Shapes) -> Finding:
    code = "config.context-dim"
    summary = config.summary or {}
    unet = unet_params(summary)
    to_k = first_match(shapes, ATTN2_TO_K)
    te_width = text_encoder_width(shapes)
    if not to_k and te_width is None:
        return verdict(Status.SKIP, "The checkpoint has neither UNet cross-attention nor text-encoder weights to compare.")
    cfg_ctx = unet.get("context_dim")
    evidence: Dict[str, Any] = {"config": {"context_dim": cfg_ctx,
                                           "use_linear_in_transformer": unet.get("use_linear_in_transformer", False)},
                                "config_line": config_where(config, "model.params.unet_config.params.context_dim"),
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
        return verdict(Status.FAIL,
            "Config and checkpoint are different model families: " + "; ".join(problems)
            + ". Loading fails with 'size mismatch' on every attn2.to_k/to_v (and proj_in) weight.",
            evidence=evidence,
            cause="An SD 2.x checkpoint with an SD 1.x config or the other way round: SD 2 uses "
                  "the OpenCLIP ViT-H/14 text encoder (1024) and linear proj_in, SD 1 CLIP ViT-L/14 (768) and "
                  "1x1-conv proj_in.",
            fix=(f"Use {suggested}" if suggested else "Use the config shipped with this checkpoint")
                + (" with the Stability-AI/stablediffusion code (FrozenOpenCLIPEmbedder); 768-v models also need "
                   "parameterization: \"v\"" if family == 1024 else "") + ".",
            docs=["https://github.com/TheLastBen/fast-stable-diffusion/issues/607"],
        )
    width = ck_ctx or te_width
    return verdict(Status.OK, f"Cross-attention width {width} matches context_dim: {cfg_ctx} "
                   f"({FAMILIES.get(width, 'unknown family')}).", evidence=evidence)


def rule_use_ema(config: LdmConfigFacts, shapes: Shapes) -> Finding:
    summary = config.summary or {}
    ema_cfg = summary.get("use_ema") or {}
    use_ema = ema_cfg.get("effective")
    unet_keys = sum(1 for k in shapes if k.startswith(UNET))
    ema_keys = [k for k in shapes if k.startswith(EMA)]
    scalars = [k for k in ema_keys if k in EMA_SCALARS]
    shadows = len(ema_keys) - len(scalars)
    line = config_where(config, "model.params.use_ema") if ema_cfg.get("explicit") else config_where(config, "model.params")
    evidence = {"use_ema": use_ema, "explicit": bool(ema_cfg.get("explicit")), "config_line": line,
                "checkpoint": {"unet_tensors": unet_keys, "ema_tensors": shadows, "ema_scalars": scalars}}
    if not unet_keys:
        return verdict(Status.SKIP, "The checkpoint has no UNet weights, so EMA weights are not expected.",
                       evidence=evidence)
    if use_ema is None:
        return verdict(Status.SKIP, f"Cannot tell whether {summary.get('target')} keeps EMA weights (not an ldm DDPM "
                       "class and no use_ema in the config).", evidence=evidence)
    where = "" if ema_cfg.get("explicit") else " (not set in the config: LatentDiffusion defaults use_ema to True)"
    if use_ema and shadows == 0:
        expected_missing = unet_keys + (len(EMA_SCALARS) - len(scalars))
        evidence["expected_missing_keys"] = expected_missing
        return verdict(Status.FAIL,
            f"use_ema is True{where}, but the checkpoint has no EMA weights (a pruned file): loading reports "
            f"about {expected_missing} missing model_ema.* keys, and model.ema_scope() (used by the txt2img/img2img "
            "scripts) swaps in EMA buffers that were never loaded.",
            evidence=evidence,
            cause="LitEma registers one shadow buffer per UNet parameter plus decay and num_updates; a pruned or "
                  "EMA-only file keeps the weights to use in model.* and drops model_ema.*.",
            fix=f"Add `use_ema: False` under model.params in {config.path} (the file's model.* weights are the "
                "ones to use), or load a full checkpoint that carries model_ema.*.",
            docs=["https://github.com/CompVis/stable-diffusion/issues/271"],
        )
    if use_ema and shadows < unet_keys:
        return verdict(Status.FAIL,
            f"use_ema is True{where}, but the checkpoint has only {shadows} of {unet_keys} EMA weights: the rest "
            "stay unloaded and ema_scope() mixes loaded and unloaded weights.",
            evidence=evidence, cause="An incomplete EMA (a merge or a conversion that dropped part of model_ema.*); "
                                     "see ckpt.ema-incomplete.",
            fix=f"Set `use_ema: False` under model.params in {config.path}, or use a complete checkpoint.")
    if use_ema:
        return verdict(Status.OK, f"use_ema is True{where} and the checkpoint carries all {shadows} EMA weights.",
                       evidence=evidence)
    if shadows:
        return verdict(Status.WARN,
            f"The checkpoint carries {shadows} EMA weights (model_ema.*) that use_ema: False ignores: they load as "
            "unexpected keys and the model samples with the non-EMA weights model.*.",
            evidence=evidence, blocking=False,
            cause="A full (training) checkpoint with both weight sets, used with an inference config.",
            fix="Usually fine. To sample with the EMA weights (what the model card reports), set `use_ema: True` and "
                "sample inside model.ema_scope(), or use the EMA-only (pruned) release of the checkpoint.",
        )
    return verdict(Status.OK, "use_ema is False and the checkpoint has no EMA shadow weights"
                   + (f" (only {', '.join(scalars)}, ignored)" if scalars else "") + ".", evidence=evidence)
