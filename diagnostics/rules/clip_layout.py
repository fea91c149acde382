"""`compat.transformers5-clip-layout`: will the checkpoint's CLIP text-encoder weights load?

transformers 5 dropped the `text_model.` level from CLIPTextModel's state dict: the model built by
ldm's FrozenCLIPEmbedder names its weights `cond_stage_model.transformer.embeddings.*`, while
SD 1.x checkpoints (written with transformers 4) hold `cond_stage_model.transformer.text_model.*`.
ldm's `init_from_ckpt` loads with `strict=False`, so all of them (196 for CLIP ViT-L) are dropped
without an error and the text encoder keeps the weights from_pretrained(version) loaded: the stock
ones for a stock checkpoint, but a fine-tuned text encoder is silently lost. The reverse (a flat
checkpoint under transformers 4) loses them the same way.

Facts: the installed transformers (`versions`) and the checkpoint's text-encoder key style (the
`checkpoint` fact, `text_encoder.key_style`: `text_model`, `flat`, `open_clip`, ...). The fix is
the key rename.
"""

from __future__ import annotations

from typing import Any, List, Mapping, Optional

from ..findings import Finding, Status, skip
from ..registry import Check
from ..util import version_at_least

CODE = "compat.transformers5-clip-layout"
TITLE = "CLIP text-encoder key layout vs transformers"
PREFIX = "cond_stage_model.transformer."


def rule_clip_layout(checkpoint: Optional[Mapping[str, Any]], versions: Mapping[str, Optional[str]]) -> Finding:
    """The rule on hand-made facts (tests) or the probes' (the check)."""
    checkpoint = checkpoint or {}
    if not checkpoint.get("path"):
        return skip(CODE, TITLE, "No checkpoint given (--checkpoint).")
    if not checkpoint.get("analysed"):
        return skip(CODE, TITLE, "The checkpoint could not be read (see ckpt.format).", path=checkpoint.get("path"))
    text_encoder = checkpoint.get("text_encoder") or {}
    style = text_encoder.get("key_style")
    transformers = versions.get("transformers")
    evidence = {"transformers": transformers, "key_style": style, "kind": text_encoder.get("kind"),
                "prefixes": text_encoder.get("prefixes")}
    if not text_encoder.get("present") or "clip-l" not in str(text_encoder.get("kind") or ""):
        return skip(CODE, TITLE, "The checkpoint has no CLIP ViT-L text encoder (SD 1.x layout).", **evidence)
    if transformers is None:
        return skip(CODE, TITLE, "transformers is not installed: the text encoder cannot be built here.", **evidence)
    five = version_at_least(transformers, "5.0.0.dev0")
    if five is None or style not in ("text_model", "flat"):
        return Finding(CODE, Status.INFO, TITLE,
                       f"Could not compare: transformers {transformers}, text-encoder key style {style!r}.",
                       evidence=evidence, blocking=False)
    model_style = "flat" if five else "text_model"
    if style == model_style:
        return Finding(CODE, Status.OK, TITLE,
                       f"The checkpoint names the CLIP weights `{PREFIX}{'text_model.' if style == 'text_model' else ''}"
                       f"*`, as transformers {transformers} does: they load.", evidence=evidence)
    if five:
        summary = (f"transformers {transformers} names CLIPTextModel's weights without `text_model.`, but the "
                   f"checkpoint holds `{PREFIX}text_model.*`: ldm's strict=False load drops every text-encoder "
                   "weight (196 missing, 196 unexpected for ViT-L) and keeps the ones from_pretrained(version) "
                   "loaded.")
        fix = (f"Rename the keys before load_state_dict: `{PREFIX}text_model.X` -> `{PREFIX}X` (e.g. "
               "`sd = {k.replace('cond_stage_model.transformer.text_model.', 'cond_stage_model.transformer.'): v "
               "for k, v in sd.items()}`), or pin `transformers<5` for this checkpoint.")
    else:
        summary = (f"The checkpoint names the CLIP weights `{PREFIX}*` without `text_model.` (a transformers 5 or "
                   f"flat layout), but transformers {transformers} expects `{PREFIX}text_model.*`: ldm's "
                   "strict=False load drops every text-encoder weight.")
        fix = (f"Rename the keys before load_state_dict: `{PREFIX}X` -> `{PREFIX}text_model.X`, or use "
               "transformers >= 5 with this checkpoint.")
    return Finding(CODE, Status.WARN, TITLE, summary, evidence=evidence,
                   cause="CLIPTextModel's state-dict layout changed between transformers 4 and 5; ldm loads the "
                         "checkpoint with strict=False, which reports the mismatch only as key lists.",
                   fix=fix, blocking=False)


CHECKS: List[Check] = [
    Check(CODE, TITLE, rule_clip_layout, reads=("checkpoint", "versions")),
]
