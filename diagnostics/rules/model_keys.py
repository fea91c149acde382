"""`model.load-keys`: the checkpoint's keys against the model's, grouped by component, each group
explained, and the key sets read by the knowledge base's state-dict analyser (the one owner of
what a key set means)."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping

from ..findings import Finding, Status, verdict, worst
from .model_diagnosis import diagnose
from .model_stages import Diagnosis, error_finding, failed_before, not_run, secs, skipped

GROUP_NAMES = {"unet": "UNet", "ema": "EMA (LitEma)", "vae": "VAE", "text_encoder": "text encoder",
               "controlnet": "ControlNet", "depth": "depth model", "image_embedder": "image embedder",
               "wrapper": "model.*", "other": "top level"}
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


def _mismatched(keys: List[str], group: Mapping[str, Any]):
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
        text, related = "shapes differ: the config describes another architecture than the file", ""
    return Status.FAIL, text + "; ldm's load_state_dict raises 'size mismatch' for these even with strict=False", related


def _missing(comp: str, keys: List[str], info: Mapping[str, Any]):
    if comp == "ema":
        return (Status.FAIL if info.get("use_ema") else Status.WARN,
                "use_ema is on but the file has no EMA weights (pruned): the LitEma buffers stay unloaded and "
                "model.ema_scope() would sample with them", "config.use-ema")
    if comp == "unet":
        return (Status.FAIL, "UNet weights are not in the file: it is not a full LDM checkpoint for this config (or "
                             "a diffusers-format file)", "")
    if comp == "vae":
        return (Status.FAIL, "VAE weights are not in the file: images decode with untrained weights unless a VAE "
                             "is loaded separately", "")
    if comp == "text_encoder" and info.get("clip_key_style_mismatch"):
        return (Status.INFO, "the same text-encoder weights under this transformers' names: they keep what "
                             "from_pretrained(version) loaded at start-up", "config.cond-stage")
    if comp == "text_encoder":
        return (Status.INFO, "text-encoder weights are not in the file: they keep what from_pretrained(version) "
                             "loaded at start-up", "config.cond-stage")
    if comp == "other" and all(k.split(".")[-1] in SCHEDULE_BUFFERS for k in keys):
        return Status.INFO, "diffusion schedule buffers: recomputed from the config, harmless", ""
    return Status.WARN, "model tensors the file does not provide keep their initial values", ""


def _unexpected(comp: str, keys: List[str], count: int, info: Mapping[str, Any]):
    if comp == "ema":
        scalars_only = all(k in ("model_ema.decay", "model_ema.num_updates") for k in keys) and count <= 2
        return (Status.INFO if scalars_only else Status.WARN,
                "EMA bookkeeping scalars, ignored" if scalars_only else
                "EMA weights in the file are ignored because use_ema is False: the model runs the non-EMA weights",
                "config.use-ema")
    if comp == "text_encoder" and all(k.endswith("embeddings.position_ids") for k in keys) and count == len(keys):
        return (Status.INFO, "position_ids is no longer a saved buffer in transformers >= 4.31: harmless with "
                             "strict=False, fatal with strict=True (drop the key before a strict load)",
                "compat.transformers-position-ids")
    if comp == "text_encoder" and info.get("clip_key_style_mismatch"):
        return (Status.WARN, "CLIP weights named for another transformers major version (with/without "
                             "`text_model.`): ignored, so the text encoder runs the weights from version; fatal with "
                             "strict=True" + (" (includes embeddings.position_ids)"
                                              if any(k.endswith("position_ids") for k in keys) else ""),
                "config.cond-stage")
    if comp == "text_encoder":
        return (Status.FAIL, "text-encoder weights of another layout are ignored: the config's encoder does not "
                             "match the file", "config.cond-stage")
    if comp == "controlnet":
        return Status.WARN, "ControlNet weights: this file needs a ControlLDM (cldm) config", ""
    if comp == "unet":
        return Status.FAIL, "UNet tensors the model does not have: the config describes a smaller/other UNet", ""
    return Status.INFO, "extra tensors the model does not use, ignored by strict=False", ""


def explain_group(kind: str, group: Mapping[str, Any], info: Mapping[str, Any]) -> Dict[str, Any]:
    """One group of missing/unexpected/mismatched keys -> {status, text, related}."""
    comp = group.get("component")
    count = group.get("count", 0)
    keys = [k["key"] if isinstance(k, dict) else k for k in group.get("keys") or []]
    if kind == "mismatched":
        status, text, related = _mismatched(keys, group)
    elif kind == "missing":
        status, text, related = _missing(comp, keys, info)
    else:
        status, text, related = _unexpected(comp, keys, count, info)
    return {"kind": kind, "component": comp, "name": GROUP_NAMES.get(comp, comp), "prefix": group.get("prefix"),
            "count": count, "first_keys": keys[:SHOWN], "status": status.value, "explanation": text,
            "related": related}


def _load_failed(err: Mapping[str, Any], model: Mapping[str, Any]) -> Finding:
    if err.get("kind") == "weights-only-refused":
        unsafe = err.get("unsafe_globals") or []
        return verdict(
            Status.FAIL,
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
    return error_finding(err, Diagnosis(
        f"The checkpoint could not be read: {diag.summary}", diag.cause,
        "Check the file with `python -m diagnostics inspect CKPT` (see ckpt.*).", kind=diag.kind), model)


def rule_model_load_keys(model: Mapping[str, Any]) -> Finding:
    before = not_run(model) or failed_before(model, ("start", "import", "instantiate"))
    if before:
        return before
    err = model.get("error")
    if "load" in (model.get("skipped") or {}):
        return skipped("No --checkpoint was given: only the model was built.")
    if err and err.get("stage") == "load":
        return _load_failed(err, model)
    data = (model.get("stages") or {}).get("load")
    if not data:
        return skipped("The load step did not report (see the model output).")
    instantiate = (model.get("stages") or {}).get("instantiate") or {}
    info = {"use_ema": instantiate.get("use_ema"), "clip_key_style_mismatch": bool(data.get("clip_key_shift"))}
    groups = []
    for kind in ("mismatched", "missing", "unexpected"):
        for group in (data.get(kind) or {}).get("groups") or []:
            groups.append(explain_group(kind, group, info))
    counts = {k: (data.get(k) or {}).get("count", 0) for k in ("missing", "unexpected", "mismatched")}
    analysis = _key_analysis(data, counts)
    evidence = {"format": data.get("format"), "checkpoint_tensors": data.get("checkpoint_tensors"),
                "model_keys": data.get("model_keys"), "loaded": data.get("loaded"), "counts": counts,
                "groups": groups, "dtypes": data.get("dtypes"), "seconds": data.get("seconds"),
                "read_seconds": data.get("read_seconds"), "extras": data.get("extras"),
                "analysis": analysis.to_dict()}
    head = (f"{data.get('loaded')} of {data.get('checkpoint_tensors')} checkpoint tensors loaded into "
            f"{data.get('model_keys')} model keys in {secs(data.get('seconds'))}")
    if not groups:
        return verdict(Status.OK, f"{head}: every key matched (0 missing, 0 unexpected, 0 size mismatches).",
                       evidence=evidence)
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
        return verdict(status, summary, evidence=evidence,
                       cause="Only differences that ldm's strict=False load tolerates.",
                       fix="Nothing to do for ldm's own loader" + ("; " + "; ".join(sorted(set(notes))) if notes else "")
                           + ".")
    codes = []
    for g in serious:
        if g["related"] and g["related"] not in codes:
            codes.append(g["related"])
    fixes = [f"{c}: {RELATED_FIX[c]}" for c in codes if c in RELATED_FIX]
    fixes += [f"{v.code}: {v.fix}" for v in analysis.verdicts() if v.fix and v.code not in codes
              and v.code != "model.load-keys"]
    if any(not g["related"] for g in serious):
        fixes.append("use the checkpoint that belongs to this config (the file lacks or adds whole components)")
    return verdict(status, summary, evidence=evidence,
                   cause="The checkpoint and the model built from the config disagree"
                         + (f"; explained in detail by {', '.join(codes)}." if codes else "."),
                   fix="; ".join(fixes) + ".", blocking=status is Status.FAIL)


def _key_analysis(data: Mapping[str, Any], counts: Mapping[str, int]):
    """The load's key lists through the knowledge base's state-dict analyser (the one owner of what a
    key set means)."""
    from ..knowledge.state_dict import analyse_keys

    def keys(kind: str) -> List[Any]:
        return [k for g in (data.get(kind) or {}).get("groups") or [] for k in g.get("keys") or []]

    mismatched = [(k["key"], k.get("checkpoint"), k.get("model")) for k in keys("mismatched") if isinstance(k, dict)]
    return analyse_keys([k if isinstance(k, str) else k.get("key") for k in keys("missing")],
                        [k if isinstance(k, str) else k.get("key") for k in keys("unexpected")], mismatched,
                        dict(counts))
