"""ckpt.components, ckpt.family, ckpt.clip-*, ckpt.nonfinite, ckpt.dtype, ckpt.hash: what the file holds.

All of them read names, shapes and a few values (the layout analysis of `probes/checkpoint/layout.py`);
ckpt.nonfinite reads the `--deep` scan and ckpt.hash the `--hash` digests.
"""

from __future__ import annotations

from typing import Optional

from ...findings import Finding, Status, verdict
from ...probes.checkpoint.facts import CheckpointFacts
from ...util import fmt_bytes, version_at_least
from .common import dtype_text, params_text

FAMILY_NAMES = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL", "unknown": "an unknown family"}
CONFIGS = {
    ("sd1", "txt2img"): "v1-inference.yaml",
    ("sd1", "inpainting"): "v1-inpainting-inference.yaml",
    ("sd1", "pix2pix"): "instruct-pix2pix's generate.yaml (ldm fork from timothybrooks/instruct-pix2pix)",
    ("sd2", "txt2img"): "v2-inference.yaml (512 px, eps) or v2-inference-v.yaml (768 px, v-prediction)",
    ("sd2", "inpainting"): "v2-inpainting-inference.yaml",
    ("sd2", "depth"): "v2-midas-inference.yaml",
    ("sdxl", "txt2img"): "sd-xl-base-1.0.yaml / sd-xl-refiner-1.0.yaml (Stability's `sgm` code, not `ldm`)",
}



# The text-encoder kinds of `probes/checkpoint/layout.py`, as people name them.
KIND_NAMES = {"clip-l": "CLIP ViT-L/14", "openclip-h": "OpenCLIP ViT-H/14", "openclip-bigg": "OpenCLIP ViT-bigG/14",
              "other": "unrecognised"}


def kind_name(kind: Optional[str]) -> str:
    """"clip-l+openclip-bigg" -> "CLIP ViT-L/14 and OpenCLIP ViT-bigG/14"."""
    return " and ".join(KIND_NAMES.get(part, part) for part in str(kind or "unknown").split("+"))


def rule_components(facts: CheckpointFacts) -> Finding:
    comps = facts.components or {}
    training = facts.training or {}
    evidence = {"components": comps, "unknown_keys": facts.unknown_keys,
                "unknown_keys_count": facts.unknown_keys_count, "training": training,
                "tensors_total": facts.tensors_total, "parameters_total": facts.parameters_total}
    if not facts.tensors_total:
        return verdict(Status.FAIL, "The file holds no tensors.", evidence=evidence,
                       cause="An empty state dict, or an object that is not a model.",
                       fix="Check that this is the model file (a LoRA, embedding or config has a different layout).")
    labels = {"unet": "UNet", "vae": "VAE", "text_encoder": "text encoder", "ema": "EMA"}
    parts = []
    for name in ("unet", "vae", "text_encoder", "ema"):
        c = comps.get(name) or {}
        if c.get("present"):
            label = labels[name]
            if name == "text_encoder" and c.get("kind"):
                label += f" ({kind_name(c['kind'])})"
            parts.append(f"{label} {c['tensors']} tensors / {params_text(c['parameters'])} params {dtype_text(c)}")
    extra = [n for n in comps if n not in labels and n not in ("schedule", "unknown") and comps[n].get("present")]
    summary = "; ".join(parts)
    if extra:
        summary += "; also " + ", ".join(f"{n} ({comps[n]['tensors']})" for n in extra)
    dead = (training.get("optimizer_states") or {}).get("bytes") or 0
    other = sum(v.get("bytes", 0) for v in (training.get("other_tensors") or {}).values())
    unet, vae = comps.get("unet") or {}, comps.get("vae") or {}
    if not unet.get("present"):
        return verdict(Status.FAIL,
                       f"No UNet (model.diffusion_model.*): {summary or 'no known component'}.", evidence=evidence,
                       cause="This is not a full LDM checkpoint: a VAE, text encoder, LoRA or EMA-only export.",
                       fix="Use the full model checkpoint; a VAE or text encoder file is loaded on top of one.")
    if not vae.get("present"):
        return verdict(Status.FAIL,
                       f"No VAE (first_stage_model.*): {summary}. ldm loads with strict=False, so the VAE keeps "
                       "its random initial weights and images come out as noise.", evidence=evidence,
                       cause="The VAE was stripped (UNet-only export) or stored separately.",
                       fix="Merge the base model's VAE into the state dict (the `first_stage_model.*` keys of e.g. "
                           "vae-ft-mse-840000-ema-pruned), or use the full checkpoint.")
    notes = []
    if dead:
        notes.append(f"{fmt_bytes(dead)} of optimizer state (dead weight for inference)")
    elif other:
        notes.append(f"{fmt_bytes(other)} of tensors outside the state dict")
    if facts.unknown_keys_count:
        notes.append(f"{facts.unknown_keys_count} keys of no known component (e.g. "
                     f"{', '.join((facts.unknown_keys or [])[:3])})")
    if notes:
        return verdict(Status.INFO, summary + "; " + "; ".join(notes) + ".", evidence=evidence,
                       fix="Optional: keep only `state_dict` for deployment (smaller, loads faster)." if dead else "")
    return verdict(Status.OK, summary + ".", evidence=evidence)


def rule_family(facts: CheckpointFacts) -> Finding:
    family, variant = facts.family, facts.variant
    unet = facts.unet or {}
    ev_family = facts.family_evidence or {}
    evidence = {"family": family, "variant": variant, "unet_in_channels": facts.unet_in_channels,
                "unet": unet, "family_evidence": ev_family, "text_encoder": facts.text_encoder}
    if family == "unknown":
        return verdict(Status.WARN,
                       f"Could not tell the family from the UNet: cross-attention width {unet.get('context_dim')}, "
                       f"label_emb {unet.get('adm_in_channels')}.", evidence=evidence,
                       cause="Not an SD 1.x / 2.x / XL UNet, or the UNet keys are missing.",
                       fix="Check the model card for the config it needs.")
    where = (f"UNet input {facts.unet_in_channels} channels, cross-attention {unet.get('context_dim')}"
             + (", linear proj_in" if unet.get("linear_proj_in") else "")
             + (f", label_emb {unet.get('adm_in_channels')}" if unet.get("adm_in_channels") else ""))
    if ev_family.get("source") == "text_encoder":
        where = f"from the text encoder only ({kind_name(facts.text_encoder.get('kind'))}); no UNet shapes"
    note = f"; {ev_family['note']}" if ev_family.get("note") else ""
    if variant == "unknown":
        return verdict(Status.WARN,
                       f"{FAMILY_NAMES[family]} with a {facts.unet_in_channels}-channel UNet input ({where}{note}): "
                       "not txt2img (4), inpainting (9), depth (5) or instruct-pix2pix (8).", evidence=evidence,
                       cause="An uncommon variant (e.g. an upscaler) or a damaged input conv.",
                       fix="Use the config from the model's card; its unet_config.in_channels must equal "
                           f"{facts.unet_in_channels}.")
    config = CONFIGS.get((family, variant))
    evidence["config"] = config
    return verdict(Status.OK,
                   f"{FAMILY_NAMES[family]} {variant} ({where}{note})" + (f"; config: {config}" if config else "") + ".",
                   evidence=evidence)


# The Hub repositories the text encoder comes from, per family, when the file does not carry it.
HUB_TEXT_ENCODERS = {"sd1": "openai/clip-vit-large-patch14", "sd2": "laion/CLIP-ViT-H-14-laion2B-s32B-b79K (open_clip)",
                     "sdxl": "openai/clip-vit-large-patch14 and laion/CLIP-ViT-bigG-14-laion2B-39B-b160k"}


def text_encoder_loaded_by(style: Optional[str], transformers_version: Optional[str]) -> Optional[bool]:
    """Does ldm's load_state_dict(strict=False) pick up CLIP keys of this style with this transformers?"""
    if style not in ("text_model", "flat") or not transformers_version:
        return None
    v5 = version_at_least(transformers_version, "5")
    if v5 is None:
        return None
    # transformers 5 removed CLIPTextModel.text_model: the module's keys are flat (embeddings.*, encoder.*).
    return (style == "flat") if v5 else (style == "text_model")


def rule_clip_missing(facts: CheckpointFacts, transformers_version: Optional[str]) -> Finding:
    te = facts.text_encoder or {}
    comp = (facts.components or {}).get("text_encoder") or {}
    family = facts.family
    hub = HUB_TEXT_ENCODERS.get(family, "the text encoder")
    repos = [part.split(" ")[0] for part in hub.split(" and ")] if family in HUB_TEXT_ENCODERS else []
    evidence = {"text_encoder": te, "tensors": comp.get("tensors"), "parameters": comp.get("parameters"),
                "transformers": transformers_version, "hub_model": hub}
    if not te.get("present"):
        return verdict(Status.WARN,
                       f"No text encoder weights in the file: the model takes them from the Hub ({hub}) when it is "
                       "built, so deployment needs network access or a local copy.",
                       evidence=evidence,
                       cause="A pruned or UNet+VAE-only checkpoint.",
                       fix=("1. On a machine with network, download the text encoder into the Hugging Face cache "
                            "(cache.model-missing gives the command with only the files the loader reads):\n```bash\n"
                            + "\n".join(f"hf download {repo}" for repo in repos) + "\n```\n"
                            "2. Copy the cache (~/.cache/huggingface) to this machine and start with "
                            "`HF_HUB_OFFLINE=1`; the cache.* checks verify it."))
    prefixes = ", ".join(te.get("prefixes") or [])
    loaded = text_encoder_loaded_by(te.get("key_style"), transformers_version)
    base = (f"The file carries the {kind_name(te.get('kind'))} text encoder ({comp.get('tensors')} tensors / "
            f"{params_text(comp.get('parameters'))} params under {prefixes})")
    if loaded is False:
        if te.get("key_style") == "text_model":
            why = (f"transformers {transformers_version} has no CLIPTextModel.text_model, so ldm's "
                   "load_state_dict(strict=False) drops these keys as unexpected and keeps the Hub weights: a "
                   "fine-tuned text encoder in this file is silently ignored")
            fix = ("Rename `cond_stage_model.transformer.text_model.` to `cond_stage_model.transformer.` before "
                   "load_state_dict, or pin `transformers<5` (the original environment used 4.19.2).")
        else:
            why = (f"these are NAI-style names (no `text_model.`); with transformers {transformers_version} ldm expects "
                   "`cond_stage_model.transformer.text_model.*`, so the weights are dropped as unexpected keys")
            fix = "Rename `cond_stage_model.transformer.` to `cond_stage_model.transformer.text_model.` before load_state_dict."
        return verdict(Status.WARN, f"{base}, but its weights go missing at load: {why}.", evidence=evidence,
                       cause="The key names in the file and the module names of the installed transformers differ.",
                       fix=fix)
    base = "The text encoder is not missing: " + base[0].lower() + base[1:]
    summary = (f"{base}; its weights replace the Hub weights at load, but FrozenCLIPEmbedder still calls "
               f"from_pretrained({hub.split(' ')[0]!r}) for the tokenizer and architecture, so the Hub or a local copy "
               "is still needed: `python -m diagnostics provision-clip --checkpoint CKPT --hf-cache` makes that copy "
               "from this file, offline.") if family in ("sd1", "sdxl") else f"{base}."
    return verdict(Status.OK, summary, evidence=evidence)


def rule_clip_position_ids(facts: CheckpointFacts, transformers_version: Optional[str]) -> Finding:
    te = facts.text_encoder or {}
    detail = facts.position_ids_detail or {}
    status = facts.position_ids
    evidence = {"position_ids": status, "detail": detail, "transformers": transformers_version}
    if not te.get("present"):
        return verdict(Status.SKIP, "No CLIP text encoder in the checkpoint.", evidence=evidence)
    if status == "absent":
        return verdict(Status.OK,
                       "position_ids are absent, which is fine: CLIPTextModel creates them itself (and transformers "
                       ">= 4.31 does not read them from checkpoints).", evidence=evidence)
    if status == "ok":
        return verdict(Status.OK, f"{detail.get('key')}: int64 0..76, as expected.", evidence=evidence)
    if status == "unreadable":
        return verdict(Status.WARN, f"{detail.get('key')} could not be read ({detail.get('dtype')}).",
                       evidence=evidence, cause="Stored in an unusual layout.", fix="")
    bad = detail.get("bad_values") or []
    shown = ", ".join(f"[{b['index']}] = {b['value']!r}" for b in bad[:4])
    problems = "; ".join(detail.get("problems") or [])
    used = transformers_version is not None and version_at_least(transformers_version, "4.31") is False
    ignored = transformers_version is not None and version_at_least(transformers_version, "4.31") is True
    wrong = detail.get("wrong_after_cast") or []
    effect = (f" Cast to int64 on load, indices {wrong} point at the wrong position embedding." if wrong else "")
    fix = ("Overwrite them with the right ids before saving or loading: "
           f"`sd['{detail.get('key')}'] = torch.arange(77, dtype=torch.int64)[None]` (or delete the key).")
    summary = f"{detail.get('key')} is broken: {problems}" + (f" ({shown})" if shown else "") + "."
    if ignored:
        return verdict(Status.INFO,
                       summary + f" transformers {transformers_version} ignores position_ids from checkpoints, so this "
                       "is harmless here, but it shows the file is a merge.", evidence=evidence,
                       cause="Weighted merges average position_ids like weights and turn the int64 ids into floats.",
                       fix=fix)
    return verdict(Status.WARN, summary + effect, evidence=evidence,
                   cause="Weighted merges average position_ids like weights and turn the int64 ids into floats "
                         "(e.g. 76 -> 75.9975, cast back to 75)."
                         + (f" transformers {transformers_version} loads them." if used else ""),
                   fix=fix, docs=["https://github.com/AUTOMATIC1111/stable-diffusion-webui/issues/7450"])


def rule_nonfinite(facts: CheckpointFacts) -> Finding:
    deep = facts.deep
    if not deep:
        return verdict(Status.SKIP, "Tensor data was not scanned: run `python -m diagnostics inspect CKPT --deep` "
                       "(reads the whole file once).")
    if not deep.get("ran"):
        return verdict(Status.SKIP, f"The deep scan did not run: {deep.get('reason')}.")
    bad = deep.get("nonfinite") or []
    evidence = {"nonfinite": bad, "count": deep.get("nonfinite_count"), "bytes_read": deep.get("bytes_read"),
                "seconds": deep.get("seconds"), "skipped": deep.get("skipped")}
    if not bad:
        return verdict(Status.OK,
                       f"No NaN or Inf in {deep.get('tensors_scanned')} tensors ({fmt_bytes(deep.get('bytes_read'))} "
                       f"scanned{_rate(deep)}).", evidence=evidence)
    used = [b for b in bad if b.get("component") != "ema"]
    shown = ", ".join(f"{b['name']} ({b['nan']} NaN, {b['inf']} Inf)" for b in (used or bad)[:4])
    if not used:
        return verdict(Status.WARN,
                       f"{len(bad)} EMA tensors hold NaN/Inf: {shown}; they matter only under ema_scope().",
                       evidence=evidence, cause="The EMA diverged during training or was damaged.",
                       fix="Keep `use_ema: False`, or prune the EMA.")
    return verdict(Status.FAIL,
                   f"{deep.get('nonfinite_count')} tensors hold NaN/Inf: {shown}. The model will produce NaN (black) "
                   "images (\"A tensor with all NaNs was produced\").", evidence=evidence,
                   cause="Damaged bytes or a broken merge/fine-tune wrote non-finite weights.",
                   fix="Download the file again and compare `inspect --hash` with the publisher's sha256; if it "
                       "matches, the model itself is broken: use another checkpoint.")


def _rate(deep) -> str:
    seconds, done = deep.get("seconds"), deep.get("bytes_read")
    return f" at {fmt_bytes(done / seconds)}/s" if seconds and done else ""


def rule_dtype(facts: CheckpointFacts) -> Finding:
    comps = facts.components or {}
    evidence = {name: {"bytes": c.get("bytes"), "bytes_by_dtype": c.get("bytes_by_dtype"), "dtypes": c.get("dtypes")}
                for name, c in comps.items() if c.get("present")}
    evidence["tensor_bytes_total"] = facts.tensor_bytes_total
    parts = [f"{name} {fmt_bytes(c['bytes'])} {dtype_text(c)}" for name, c in comps.items()
             if c.get("present") and name in ("unet", "vae", "text_encoder", "ema")]
    summary = f"{fmt_bytes(facts.tensor_bytes_total)} of tensors: " + ", ".join(parts)
    unet = comps.get("unet") or {}
    floats = [d for d in (unet.get("dtypes") or {}) if d.startswith(("float", "bfloat"))]
    if len(floats) > 1:
        return verdict(Status.WARN,
                       summary + f"; the UNet mixes {', '.join(sorted(floats))} tensors.", evidence=evidence,
                       cause="A merge or partial conversion left tensors in different precisions.",
                       fix="Usually harmless (ldm casts on load); convert the whole file to one dtype for a clean artefact.")
    ema_bytes = (comps.get("ema") or {}).get("bytes") or 0
    if ema_bytes and facts.tensor_bytes_total:
        summary += f"; the EMA is {100 * ema_bytes / facts.tensor_bytes_total:.0f}% of it"
    return verdict(Status.INFO if ema_bytes else Status.OK, summary + ".", evidence=evidence,
                   fix="For inference only, a pruned fp16 copy (no EMA) is about a quarter of a full fp32 file."
                   if ema_bytes else "")


def rule_hash(facts: CheckpointFacts) -> Finding:
    h = facts.hash
    if not h:
        return verdict(Status.SKIP, "Not hashed: run `python -m diagnostics inspect CKPT --hash` (reads the whole "
                       "file once; cached afterwards).")
    if h.get("error"):
        return verdict(Status.WARN, f"Hashing failed: {h['error']}.", evidence=h, blocking=False)
    return verdict(Status.INFO,
                   f"sha256 {h['sha256']} (AutoV2 {h['autov2']}, legacy A1111 hash {h['legacy']})"
                   + (" [cached]" if h.get("cached") else "") + ".",
                   evidence=h, fix="Compare with the sha256 on the model's download page.")
