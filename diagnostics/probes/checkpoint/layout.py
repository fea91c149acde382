"""What a checkpoint contains, from tensor names, dtypes and shapes alone (no tensor data).

- components by key prefix: UNet `model.diffusion_model.`, VAE `first_stage_model.`, text encoders
  (SD1 CLIP-L `cond_stage_model.transformer.text_model.`, its flat NAI-style spelling
  `cond_stage_model.transformer.` without `text_model`, SD2 OpenCLIP `cond_stage_model.model.`, SDXL
  `conditioner.embedders.N.`), EMA `model_ema.`, the DDPM schedule buffers, and what is left (unknown);
- family from the UNet's shapes, as ComfyUI's `detect_unet_config` does: cross-attention width
  (768 SD1, 1024 SD2 with a linear `proj_in`, 2048 plus `label_emb` SDXL);
- variant from the UNet input conv's channels: 4 txt2img, 9 inpainting, 5 depth, 8 instruct-pix2pix;
- EMA twins: LitEma stores each UNet parameter under `model_ema.` + its name without dots
  (`model_ema.diffusion_modelinput_blocks00weight`), plus `decay` and `num_updates`.

Counts are keys and elements; "parameters" leaves out the non-learned buffers `position_ids`,
`model_ema.decay` and `model_ema.num_updates`, so the SD 1.5 reference figures can be compared as is
(UNet 686 / 859,520,964; VAE 248 / 83,653,863; CLIP 197 keys / 123,060,480; EMA 688 keys).
"""

from __future__ import annotations

import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Pattern, Sequence, Tuple

from .records import TensorRecord, bits_of

UNET = "model.diffusion_model."
VAE = "first_stage_model."
EMA = "model_ema."
EMA_SCALARS = ("model_ema.decay", "model_ema.num_updates")

# (prefix, component, text encoder kind, key style) in match order: longest prefixes first.
PREFIXES: Tuple[Tuple[str, str, Optional[str], Optional[str]], ...] = (
    (UNET, "unet", None, None),
    (VAE, "vae", None, None),
    ("cond_stage_model.transformer.text_model.", "text_encoder", "clip-l", "text_model"),
    ("cond_stage_model.transformer.", "text_encoder", "clip-l", "flat"),
    ("cond_stage_model.model.", "text_encoder", "openclip-h", "open_clip"),
    ("conditioner.embedders.0.transformer.text_model.", "text_encoder", "clip-l", "text_model"),
    ("conditioner.embedders.0.transformer.", "text_encoder", "clip-l", "flat"),
    ("conditioner.embedders.1.model.", "text_encoder", "openclip-bigg", "open_clip"),
    ("conditioner.embedders.0.model.", "text_encoder", "openclip-bigg", "open_clip"),
    ("conditioner.embedders.", "text_encoder", "other", None),
    ("cond_stage_model.", "text_encoder", "other", None),
    (EMA, "ema", None, None),
    ("control_model.", "controlnet", None, None),
    ("depth_model.", "depth", None, None),
    ("embedder.", "image_embedder", None, None),
    ("vae.", "vae", None, None),
    # diffusers folders (names prefixed with their component folder by the folder reader)
    ("unet/", "unet", None, None),
    ("vae/", "vae", None, None),
    ("text_encoder/", "text_encoder", "clip-l", "diffusers"),
    ("text_encoder_2/", "text_encoder", "openclip-bigg", "diffusers"),
)

SCHEDULE_BUFFERS = frozenset(
    ["betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
     "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
     "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
     "logvar", "edm_mean", "edm_std", "v_pred"]
)
NOT_PARAMETERS = ("embeddings.position_ids",)

MAIN_COMPONENTS = ("unet", "vae", "text_encoder", "ema")

# The UNet input conv's in-channels: (variant name, what the channels are); the anchor of every variant.
UNET_IN = UNET + "input_blocks.0.0.weight"
UNET_OUT = UNET + "out.2.weight"
UNET_INPUTS: Dict[int, Tuple[Optional[str], str]] = {
    4: ("txt2img", "txt2img"),
    9: ("inpainting", "inpainting (4 latent + 4 masked-image latent + 1 mask channels)"),
    8: ("pix2pix", "instruct-pix2pix"),
    5: ("depth", "depth-to-image"),
    7: (None, "x4 upscaler"),  # no variant of its own: ckpt.family calls it uncommon
}
VARIANTS = {channels: name for channels, (name, _) in UNET_INPUTS.items() if name}
VARIANT_TEXT = {channels: text for channels, (_, text) in UNET_INPUTS.items()}

# Cross-attention keys (their width is the family's context_dim) and transformer input projections
# (linear in SD 2.x, a 1x1 conv in SD 1.x).
ATTN2_TO_K = re.compile(r"^model\.diffusion_model\.(input_blocks|middle_block|output_blocks)\..*\.attn2\.to_k\.weight$")
PROJ_IN = re.compile(r"^model\.diffusion_model\..*\.proj_in\.weight$")

# Text encoder key layouts, by the prefix the state dict uses (first match wins): layout -> (prefix, name).
CLIP_PREFIX = "cond_stage_model.transformer.text_model."
FLAT_PREFIX = "cond_stage_model.transformer."
OPENCLIP_PREFIX = "cond_stage_model.model."
SDXL_PREFIX = "conditioner.embedders."
TEXT_ENCODER_LAYOUTS: Dict[str, Tuple[str, str]] = {
    "clip": (CLIP_PREFIX, "CLIP text encoder (`cond_stage_model.transformer.text_model.*`)"),
    "clip-flat": (FLAT_PREFIX, "CLIP text encoder without the `text_model.` level (`cond_stage_model.transformer.*`)"),
    "openclip": (OPENCLIP_PREFIX, "OpenCLIP (`cond_stage_model.model.*`, SD 2.x)"),
    "sdxl": (SDXL_PREFIX, "SDXL conditioner (`conditioner.embedders.*`)"),
}
# The final layer norm, whose size is the text encoder's output width.
TEXT_ENCODER_WIDTH_KEYS = (CLIP_PREFIX + "final_layer_norm.weight", FLAT_PREFIX + "final_layer_norm.weight",
                           OPENCLIP_PREFIX + "ln_final.weight")

Shapes = Mapping[str, Sequence[int]]


def text_encoder_kind(names: Iterable[str]) -> Tuple[str, int]:
    """(layout, tensor count) of the text encoder among state-dict keys: clip, clip-flat, openclip, sdxl or absent."""
    counts = {layout: 0 for layout in TEXT_ENCODER_LAYOUTS}
    for key in names:
        for layout, (prefix, _) in TEXT_ENCODER_LAYOUTS.items():
            if key.startswith(prefix):
                counts[layout] += 1
                break
    kind = max(counts, key=lambda k: counts[k])
    return (kind, counts[kind]) if counts[kind] else ("absent", 0)


def text_encoder_width(shapes: Shapes) -> Optional[int]:
    for key in TEXT_ENCODER_WIDTH_KEYS:
        if key in shapes and len(shapes[key]) == 1:
            return int(shapes[key][0])
    return None


def _natural(key: str) -> List[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]


def first_match(names: Iterable[str], pattern: Pattern) -> Optional[str]:
    """The first key (in natural order: block 2 before block 10) that `pattern` matches."""
    found = sorted((k for k in names if pattern.match(k)), key=_natural)
    return found[0] if found else None


def component_of(name: str) -> Tuple[str, Optional[str], Optional[str], str]:
    """(component, text encoder kind, key style, prefix) for one key."""
    if name in EMA_SCALARS:
        return "ema", None, None, EMA
    for prefix, component, kind, style in PREFIXES:
        if name.startswith(prefix):
            return component, kind, style, prefix
    if name in SCHEDULE_BUFFERS:
        return "schedule", None, None, ""
    return "unknown", None, None, ""


def is_parameter(name: str) -> bool:
    return name not in EMA_SCALARS and not name.endswith(NOT_PARAMETERS)


def ema_twin(unet_key: str) -> str:
    """LitEma's buffer name for a UNet parameter: dots removed from the DiffusionWrapper-relative name."""
    return EMA + ("diffusion_model." + unet_key[len(UNET):]).replace(".", "")


def _empty_component() -> Dict[str, Any]:
    return {"present": False, "tensors": 0, "parameters": 0, "bytes": 0, "dtypes": {}, "bytes_by_dtype": {},
            "prefixes": []}


def summarise(tensors: Iterable[TensorRecord]) -> Dict[str, Any]:
    """Per-component counts, dtypes and bytes (the chart of size by component and dtype reads these)."""
    components: Dict[str, Dict[str, Any]] = {c: _empty_component() for c in MAIN_COMPONENTS}
    kinds: Dict[str, int] = {}
    styles: Dict[str, int] = {}
    te_prefixes: Dict[str, int] = {}
    unknown: List[str] = []
    for t in tensors:
        comp, kind, style, prefix = component_of(t.name)
        c = components.setdefault(comp, _empty_component())
        numel = t.numel
        nbytes = (numel * bits_of(t.dtype) + 7) // 8
        c["present"] = True
        c["tensors"] += 1
        if is_parameter(t.name):
            c["parameters"] += numel
        c["bytes"] += nbytes
        c["dtypes"][t.dtype] = c["dtypes"].get(t.dtype, 0) + 1
        c["bytes_by_dtype"][t.dtype] = c["bytes_by_dtype"].get(t.dtype, 0) + nbytes
        if prefix and prefix not in c["prefixes"]:
            c["prefixes"].append(prefix)
        if comp == "text_encoder":
            kinds[kind or "other"] = kinds.get(kind or "other", 0) + 1
            if style:
                styles[style] = styles.get(style, 0) + 1
            te_prefixes[prefix] = te_prefixes.get(prefix, 0) + 1
        if comp == "unknown" and len(unknown) < 50:
            unknown.append(t.name)
    return {"components": components, "te_kinds": kinds, "te_styles": styles, "te_prefixes": te_prefixes,
            "unknown_keys": unknown}


def unet_facts(by_name: Dict[str, TensorRecord], prefix: str = UNET) -> Dict[str, Any]:
    """Architecture numbers read from UNet shapes (None where the key is absent)."""
    def shape(key: str) -> Optional[Tuple[int, ...]]:
        t = by_name.get(prefix + key)
        return t.shape if t is not None else None

    conv_in = shape("input_blocks.0.0.weight")
    out = shape("out.2.weight")
    label = shape("label_emb.0.0.weight")
    context_dim = None
    linear = None
    attn_key = re.compile(re.escape(prefix) + r"(input_blocks|middle_block|output_blocks)\.(\d+)\.1\.transformer_blocks\.0\.attn2\.to_k\.weight$")
    proj_key = re.compile(re.escape(prefix) + r"(input_blocks|middle_block|output_blocks)\.(\d+)\.1\.proj_in\.weight$")
    for name, t in by_name.items():
        if context_dim is None and attn_key.match(name) and len(t.shape) == 2:
            context_dim = t.shape[1]
        if linear is None and proj_key.match(name):
            linear = len(t.shape) == 2
        if context_dim is not None and linear is not None:
            break
    return {
        "in_channels": conv_in[1] if conv_in and len(conv_in) == 4 else None,
        "model_channels": conv_in[0] if conv_in and len(conv_in) == 4 else None,
        "out_channels": out[0] if out else None,
        "context_dim": context_dim,
        "linear_proj_in": linear,
        "adm_in_channels": label[1] if label and len(label) == 2 else None,
    }


def family_of(unet: Dict[str, Any], te_kinds: Dict[str, int]) -> Tuple[str, Dict[str, Any]]:
    """("sd1" | "sd2" | "sdxl" | "unknown", evidence)."""
    ctx, linear, adm = unet.get("context_dim"), unet.get("linear_proj_in"), unet.get("adm_in_channels")
    ev: Dict[str, Any] = {"source": "unet", "context_dim": ctx, "linear_proj_in": linear, "adm_in_channels": adm}
    if ctx == 768 and adm is None:
        if linear:
            ev["note"] = "768-wide cross-attention with a linear proj_in (unusual for SD 1.x)"
        return "sd1", ev
    if ctx == 1024:
        if adm in (1536, 2048):
            ev["note"] = f"unCLIP ({'ViT-L' if adm == 1536 else 'ViT-H'} image embedding)"
        elif adm is not None:
            ev["note"] = f"label_emb with {adm} inputs"
        return "sd2", ev
    if ctx == 2048 and adm == 2816:
        return "sdxl", ev
    if ctx == 1280 and adm == 2560:
        ev["note"] = "SDXL refiner"
        ev["refiner"] = True
        return "sdxl", ev
    if ctx is None and te_kinds:
        ev["source"] = "text_encoder"
        if "openclip-bigg" in te_kinds:
            return "sdxl", ev
        if "openclip-h" in te_kinds:
            return "sd2", ev
        if "clip-l" in te_kinds:
            return "sd1", ev
    return "unknown", ev


def variant_of(in_channels: Optional[int], family: str, has_depth_model: bool) -> str:
    if in_channels is None:
        return "unknown"
    return VARIANTS.get(in_channels, "unknown")


def ema_facts(by_name: Dict[str, TensorRecord]) -> Dict[str, Any]:
    unet_keys = [n for n in by_name if n.startswith(UNET)]
    ema_keys = [n for n in by_name if n.startswith(EMA) and n not in EMA_SCALARS]
    facts: Dict[str, Any] = {"present": bool(ema_keys), "tensors": len(ema_keys) + sum(1 for s in EMA_SCALARS if s in by_name),
                             "twins": 0, "missing": [], "missing_count": 0, "shape_mismatches": [],
                             "shape_mismatch_count": 0, "extra": [], "extra_count": 0, "dtype_mismatch_count": 0,
                             "scalars": {s.split(".", 1)[1]: s in by_name for s in EMA_SCALARS}}
    if not ema_keys:
        return facts
    twins = {ema_twin(k): k for k in unet_keys}
    missing, mismatches, pairs = [], [], []
    dtype_mismatch = 0
    for k in unet_keys:
        e = ema_twin(k)
        if e not in by_name:
            missing.append(k)
            continue
        pairs.append((k, e))
        a, b = by_name[k], by_name[e]
        if a.shape != b.shape:
            mismatches.append({"key": k, "ema_key": e, "model_shape": list(a.shape), "ema_shape": list(b.shape)})
        elif a.dtype != b.dtype:
            dtype_mismatch += 1
    extra = [k for k in ema_keys if k not in twins]
    facts.update({
        "twins": len(pairs),
        "missing": missing[:50], "missing_count": len(missing),
        "shape_mismatches": mismatches[:50], "shape_mismatch_count": len(mismatches),
        "extra": extra[:50], "extra_count": len(extra),
        "dtype_mismatch_count": dtype_mismatch,
        "unet_present": bool(unet_keys),
    })
    return facts


def position_ids_key(by_name: Dict[str, TensorRecord]) -> Optional[str]:
    for name in by_name:
        if name.endswith("embeddings.position_ids") and component_of(name)[0] == "text_encoder":
            return name
    return None


def text_encoder_facts(summary: Dict[str, Any], by_name: Dict[str, TensorRecord]) -> Dict[str, Any]:
    kinds = summary["te_kinds"]
    comp = summary["components"]["text_encoder"]
    if not comp["present"]:
        return {"present": False, "kind": None, "key_style": None, "prefixes": [], "width": None}
    named = [k for k in ("clip-l", "openclip-h", "openclip-bigg") if k in kinds]
    kind = "+".join(named) if named else "other"
    width = None
    for name, t in by_name.items():
        if name.endswith(("embeddings.token_embedding.weight", "model.token_embedding.weight")) and len(t.shape) == 2:
            width = t.shape[1]
            break
    if kind == "openclip-h" and width == 1280:
        kind = "openclip-bigg"
    styles = summary["te_styles"]
    style = max(styles, key=lambda s: styles[s]) if styles else None
    if "text_model" in styles and "flat" in styles:
        style = "mixed"
    return {"present": True, "kind": kind, "key_style": style, "prefixes": sorted(summary["te_prefixes"]),
            "width": width}


def analyse(tensors: List[TensorRecord]) -> Dict[str, Any]:
    """All header-only layout facts (JSON-serialisable)."""
    by_name: Dict[str, TensorRecord] = {}
    duplicates = 0
    for t in tensors:
        if t.name in by_name:
            duplicates += 1
        by_name[t.name] = t
    summary = summarise(by_name.values())
    components = summary["components"]
    unet = unet_facts(by_name) if components["unet"]["present"] else unet_facts({})
    family, family_ev = family_of(unet, summary["te_kinds"])
    te = text_encoder_facts(summary, by_name)
    components["text_encoder"]["kind"] = te["kind"]
    components["text_encoder"]["key_style"] = te["key_style"]
    ema = ema_facts(by_name)
    pid_key = position_ids_key(by_name)
    pid = by_name.get(pid_key) if pid_key else None
    all_bytes = sum(t.nbytes for t in by_name.values())
    return {
        "tensors_total": len(by_name),
        "duplicate_names": duplicates,
        "parameters_total": sum(t.numel for t in by_name.values() if is_parameter(t.name)),
        "tensor_bytes_total": all_bytes,
        "components": components,
        "unknown_keys": summary["unknown_keys"],
        "unknown_keys_count": components.get("unknown", {}).get("tensors", 0),
        "family": family,
        "family_evidence": family_ev,
        "variant": variant_of(unet.get("in_channels"), family, components.get("depth", {}).get("present", False)),
        "unet_in_channels": unet.get("in_channels"),
        "unet": unet,
        "text_encoder": te,
        "position_ids_key": pid_key,
        "position_ids_meta": {"dtype": pid.dtype, "shape": list(pid.shape)} if pid is not None else None,
        "ema": ema,
    }
