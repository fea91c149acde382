"""ckpt.ema-*: the EMA shadow weights (LitEma's `model_ema.*`): there, complete, the UNet's shapes, trained.

Every rule but ckpt.ema-absent needs EMA weights in the file (the `EMA_PRESENT` precondition).
"""

from __future__ import annotations

from ...findings import Finding, Status, verdict
from ...probes.checkpoint.facts import CheckpointFacts
from ...util import fmt_bytes


def rule_ema_absent(facts: CheckpointFacts) -> Finding:
    ema = facts.ema or {}
    unet = (facts.components or {}).get("unet") or {}
    evidence = {"ema": {k: ema.get(k) for k in ("present", "tensors", "num_updates", "decay", "twins")},
                "unet_tensors": unet.get("tensors")}
    if ema.get("present"):
        return verdict(Status.OK,
                       f"EMA present: {ema.get('tensors')} model_ema.* tensors (num_updates {ema.get('num_updates')}, "
                       f"decay {ema.get('decay')}).", evidence=evidence)
    if not unet.get("present"):
        return verdict(Status.SKIP, "No UNet, so no EMA expected.", evidence=evidence)
    expected = (unet.get("tensors") or 0) + 2
    return verdict(Status.INFO,
        f"No EMA weights (a pruned file). A config with `use_ema: True` (LatentDiffusion's default, e.g. "
        f"v1-inpainting-inference.yaml) builds LitEma anyway and load_state_dict(strict=False) reports {expected} "
        "missing model_ema.* keys: expected with this file, and harmless unless sampling runs under ema_scope().",
        evidence=evidence,
        cause="EMA weights are dropped when a checkpoint is pruned for inference.",
        fix="Set `model.params.use_ema: False` in the config to build no EMA and silence the missing keys.")


def rule_ema_incomplete(facts: CheckpointFacts) -> Finding:
    ema = facts.ema
    evidence = {k: ema.get(k) for k in ("twins", "missing", "missing_count", "extra", "extra_count", "tensors")}
    if not ema.get("unet_present", True):
        return verdict(Status.WARN,
                       f"EMA-only file: {ema.get('tensors')} model_ema.* tensors and no UNet; ldm loads UNet weights "
                       "from model.diffusion_model.*, which are missing.", evidence=evidence,
                       cause="The EMA was exported without converting its names back to UNet keys.",
                       fix="Convert the EMA names to UNet keys (model_ema.diffusion_modelX -> model.diffusion_model.X "
                           "with the dots restored), or use the model's regular release.")
    if ema.get("missing_count"):
        missing = ema.get("missing") or []
        return verdict(Status.WARN,
                       f"{ema['missing_count']} of {ema['twins'] + ema['missing_count']} UNet tensors have no EMA twin "
                       f"(e.g. {', '.join(missing[:3])}); under ema_scope() those stay at their random initial values.",
                       evidence=evidence,
                       cause="The EMA was saved from a different UNet definition, or a converter dropped keys.",
                       fix="Set `model.params.use_ema: False` to use the live weights, or re-export the EMA.")
    extra = f"; {ema['extra_count']} EMA tensors match no UNet key" if ema.get("extra_count") else ""
    return verdict(Status.OK if not extra else Status.INFO,
                   f"All {ema.get('twins')} UNet tensors have an EMA twin{extra}.", evidence=evidence)


def rule_ema_shape_mismatch(facts: CheckpointFacts) -> Finding:
    ema = facts.ema
    mismatches = ema.get("shape_mismatches") or []
    evidence = {"shape_mismatches": mismatches, "count": ema.get("shape_mismatch_count")}
    if not mismatches:
        return verdict(Status.OK, f"All {ema.get('twins')} EMA twins have their UNet tensor's shape.",
                       evidence=evidence)
    m = mismatches[0]
    return verdict(Status.FAIL,
        f"{ema.get('shape_mismatch_count')} EMA tensors differ in shape from the UNet: {m['ema_key']} "
        f"{m['ema_shape']} vs {m['key']} {m['model_shape']}. With use_ema: True, load_state_dict raises "
        f"\"size mismatch for {m['ema_key']}\" (strict=False does not skip size mismatches).",
        evidence=evidence,
        cause="The EMA belongs to another model: e.g. a txt2img EMA (4-channel input) left in an inpainting "
              "(9-channel) conversion.",
        fix="Set `model.params.use_ema: False` in the config (the EMA keys are then ignored), or drop them: "
            "`sd = {k: v for k, v in sd.items() if not k.startswith('model_ema.')}`.")


def rule_ema_untrained(facts: CheckpointFacts) -> Finding:
    ema = facts.ema
    evidence = {"num_updates": ema.get("num_updates"), "decay": ema.get("decay"),
                "identical_to_model": ema.get("identical_to_model"), "difference": ema.get("difference")}
    ema_bytes = ((facts.components or {}).get("ema") or {}).get("bytes")
    if ema.get("num_updates") == 0:
        return verdict(Status.WARN,
                       "model_ema.num_updates is 0: the EMA was never updated and holds the weights from the start of "
                       "training, not the trained model.", evidence=evidence,
                       cause="Training ran with EMA disabled, or the EMA was reset before saving.",
                       fix="Do not sample under ema_scope(); set `model.params.use_ema: False`, and prune the EMA "
                           f"({fmt_bytes(ema_bytes)}).")
    if ema.get("identical_to_model") is True:
        return verdict(Status.WARN,
                       f"The EMA is identical to the live UNet weights (--deep compared all "
                       f"{(ema.get('difference') or {}).get('pairs')} pairs): it carries no information.",
                       evidence=evidence,
                       cause="The EMA was copied from the model (LitEma at step 0, or a converter that duplicated it).",
                       fix=f"Prune it: {fmt_bytes(ema_bytes)} of dead weight.")
    if ema.get("identical_to_model") is False:
        diff = ema.get("difference") or {}
        rel = diff.get("relative_l2")
        return verdict(Status.OK,
                       f"The EMA differs from the live weights (relative L2 {rel:.3g}, max |diff| "
                       f"{diff.get('max_abs_diff'):.3g}); num_updates {ema.get('num_updates')}." if rel is not None else
                       f"The EMA differs from the live weights; num_updates {ema.get('num_updates')}.",
                       evidence=evidence)
    return verdict(Status.OK,
                   f"num_updates {ema.get('num_updates')}, decay {ema.get('decay')} (run `inspect --deep` to compare the "
                   "EMA with the live weights).", evidence=evidence)
