"""config.cond-stage: the config's text encoder class against the text encoder the checkpoint carries."""

from __future__ import annotations

from typing import Optional

from ...findings import Finding, Status, verdict
from ...probes.checkpoint.layout import TEXT_ENCODER_LAYOUTS, text_encoder_kind, text_encoder_width
from ...probes.ldm_config import LdmConfigFacts
from ...util import version_at_least
from .common import Shapes, config_where

TEXT_ENCODERS = {"FrozenCLIPEmbedder": "clip", "FrozenOpenCLIPEmbedder": "openclip", "FrozenCLIPT5Encoder": "clip"}
TE_NAMES = {layout: name for layout, (_, name) in TEXT_ENCODER_LAYOUTS.items()}


def clip_key_style(transformers_version: Optional[str]) -> Optional[str]:
    """How the installed transformers names CLIPTextModel's weights: "text_model" (< 5), "flat" (>= 5), None."""
    at_least_5 = version_at_least(transformers_version, "5")
    if at_least_5 is None:
        return None
    return "flat" if at_least_5 else "text_model"


def rule_cond_stage(config: LdmConfigFacts, shapes: Shapes, transformers_version: Optional[str] = None) -> Finding:
    summary = config.summary or {}
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
                "config_line": config_where(config, "model.params.cond_stage_config.target"),
                "checkpoint": {"text_encoder": kind, "tensors": n, "width": text_encoder_width(shapes)},
                "transformers": transformers_version}
    if target is None:
        return verdict(Status.SKIP, "The config has no cond_stage_config.", evidence=evidence)
    if target == "__is_unconditional__":
        if kind != "absent":
            return verdict(Status.WARN,
                           f"The config builds an unconditional model, but the checkpoint has a {TE_NAMES[kind]}: "
                           "its weights are ignored.", evidence=evidence, blocking=False,
                           fix="Use the config shipped with this checkpoint.")
        return verdict(Status.OK, "Unconditional model: no text encoder expected, none in the checkpoint.",
                       evidence=evidence)
    if expected is None:
        return verdict(Status.SKIP, f"No rule for text encoder {cls}; the load check still compares its keys.",
                       evidence=evidence)
    if kind == "absent":
        return verdict(Status.INFO,
            f"The checkpoint has no text-encoder weights: {cls} will take them, with the tokenizer, from "
            f"version {version!r} at start-up, so they must be in the Hugging Face cache or in that directory.",
            evidence=evidence,
            fix="Make sure the files are present before going offline (see cache.model-missing, tokenizer.functional).",
        )
    found = "clip" if kind in ("clip", "clip-flat") else kind
    if found != expected:
        fam = "SD 2.x" if kind == "openclip" else "SD 1.x" if found == "clip" else kind
        return verdict(Status.FAIL,
            f"The config builds {cls} but the checkpoint's text encoder is {TE_NAMES.get(kind, kind)} ({n} tensors): "
            f"this is an {fam} checkpoint. The encoder's weights would not load, and its output width does not "
            "match the UNet.",
            evidence=evidence,
            cause="A config of the other model family.",
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
        return verdict(Status.WARN,
            f"{what}: with ldm's strict=False load the file's {n} text-encoder tensors are ignored and the text "
            f"encoder keeps the weights from version {version!r}; a strict load fails.",
            evidence=evidence, blocking=False,
            cause="CLIPTextModel's parameter names changed between transformers 4 and 5 (from_pretrained renames "
                  "them; nn.Module.load_state_dict does not).",
            fix=fix,
        )
    return verdict(Status.OK, f"The config's {cls} matches the checkpoint's {TE_NAMES[kind]} ({n} tensors){note}.",
                   evidence=evidence)
