"""Checkpoint rules: the facts of `probes.checkpoint` turned into `ckpt.*` findings.

Each rule is a pure function of the checkpoint facts (plus, where the verdict depends on them, the
installed torch / transformers versions and the environment), so the tests feed them hand-made
facts. Rules that need a readable checkpoint return `skip` when none was given or it could not be
read; the reason points at `ckpt.format` / `ckpt.corrupt`, which say why.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

from ..findings import Finding, Status, skip
from ..probes.checkpoint import probe_checkpoint
from ..probes.environment import installed_versions
from ..registry import Check
from ..util import fmt_bytes, version_at_least

NO_CHECKPOINT = "No checkpoint given: pass --checkpoint PATH (or set LDM_DIAG_CHECKPOINT)."
UNREADABLE = "The checkpoint could not be read; ckpt.format and ckpt.corrupt say why."
DOWNLOAD_FIX = ("Download it again and compare its size with the source's: `ls -l {path}` against the model page (or the "
                "`size` line of its git-lfs pointer); `hf download <repo> <file>` (`huggingface-cli download` before "
                "huggingface_hub 1.0) resumes and verifies Hub downloads.")
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


# ------------------------------------------------------------------ shared pieces

def _params(n: Optional[int]) -> str:
    if not n:
        return "0"
    if n >= 1e9:
        return f"{n / 1e9:.2f} B"
    if n >= 1e6:
        return f"{n / 1e6:.1f} M"
    if n >= 1e3:
        return f"{n / 1e3:.1f} k"
    return str(n)


def _not_ready(facts: Dict[str, Any], code: str, title: str) -> Optional[Finding]:
    if not facts or not facts.get("path"):
        return skip(code, title, NO_CHECKPOINT)
    if not facts.get("analysed"):
        return skip(code, title, UNREADABLE, path=facts.get("path"))
    return None


def _dtype_text(comp: Dict[str, Any]) -> str:
    dtypes = comp.get("dtypes") or {}
    return "/".join(sorted(dtypes, key=lambda d: -dtypes[d])) or "-"


def _problems(facts: Dict[str, Any], code: str) -> List[Dict[str, Any]]:
    return [p for p in facts.get("problems") or [] if p.get("code") == code]


# cause, fix for each kind of bad input (the probe names the kind; here is what a person does about it)
def _explain(kind: str, p: Dict[str, Any], path: str) -> Dict[str, str]:
    download = DOWNLOAD_FIX.format(path=path)
    table = {
        "not-found": ("The path does not exist.", f"Check the path: `ls -l {path}`."),
        "dangling-symlink": (f"The symbolic link points to {p.get('target')}, which is gone (moved, or a cache was cleaned).",
                             f"Point the link at the real file: `ln -sfn /path/to/model.ckpt {path}`."),
        "symlink-loop": ("Symbolic links point at each other, so the path never reaches a file "
                         f"(chain: {' -> '.join(str(c) for c in p.get('chain') or [])}).",
                         f"Find the real file and re-link: `ls -l {path}`, then `ln -sfn /path/to/model.ckpt {path}`."),
        "permission-denied": ("This user may not read the file (or list its folder).",
                              f"`ls -l {path}` shows the owner; `chmod a+r {path}` (and `chmod a+x` on its folders), "
                              "or run as the owning user."),
        "not-regular-file": ("The path is a device, pipe or socket.", "Pass the checkpoint file itself."),
        "os-error": ("The operating system refused to open the file.", f"`ls -l {path}`; copy it to a local disk."),
        "directory": ("A folder was given where a checkpoint file is expected"
                      + (" (it holds data.pkl: an unzipped torch checkpoint, which torch.load cannot read)"
                         if p.get("unzipped_torch") else "") + ".",
                      "Pass the file inside it" + (f", e.g. {p['candidates'][0]}" if p.get("candidates") else "")
                      + "; a diffusers folder needs model_index.json."),
        "lfs-pointer": ("The repository was cloned without git-lfs, so this is the ~130-byte pointer, not the weights"
                        + (f" (expected {p.get('expected_size')} bytes, sha256 {p.get('oid')})" if p.get("oid") else "")
                        + ".",
                        "In the clone: `git lfs install && git lfs pull` (or download the file itself: "
                        "`hf download <repo> <file>`)."),
        "html": ("The download URL answered with a web page (login, licence to accept, 404 or rate limit) and it was "
                 "saved under the checkpoint's name.",
                 "Accept the model's licence on its page if it has one, then download with a token: `hf download <repo> "
                 "<file>` or `curl -L -H \"Authorization: Bearer $HF_TOKEN\" -o FILE URL`."),
        "text": ("The file holds text, not weights (an error message, a config or a pointer).",
                 f"Look at it (`head -c 300 {path}`) and download the checkpoint itself."),
        "archive": ("The file is another kind of archive.", "Extract it, or download the .ckpt / .safetensors itself."),
        "unknown": ("Neither zip, pickle nor safetensors: a wrong file, or bytes damaged from the start.", download),
        "zip-not-torch": ("A zip archive, but not torch.save's layout (no <root>/data.pkl).",
                          "If it is a download bundle, unzip it and pass the .ckpt or .safetensors inside."),
        "torchscript": ("A TorchScript archive (torch.jit.save): code plus constants, not a state dict. ldm cannot "
                        "load it, and torch.load(weights_only=True) refuses TorchScript.",
                        "Use the original .ckpt / .safetensors release of the model."),
        "legacy-tar": ("torch's oldest format (before 0.4): a tar archive of pickles. torch.load(weights_only=False) still "
                       "unpickles it; weights_only=True refuses it.",
                       "Load it only if ckpt.unsafe-pickle passes, in a disposable environment, and re-save it "
                       "(`torch.save(obj, 'model.ckpt')`), or get a current release of the model."),
        "diffusers-no-weights": ("model_index.json is there but no component folder has weights.",
                                 "Download the weights too (`hf download <repo>` fetches the whole folder)."),
        "empty": ("The file is 0 bytes: a download or copy that never wrote anything (disk full, interrupted, "
                  "or a placeholder).", download),
        "truncated-zip": ("The zip's central directory, written last, is missing: the file was cut short "
                          "(interrupted download or copy, full disk).", download),
        "zip-error": ("The zip structure is damaged.", download),
        "zip-too-many-members": ("Far more zip members than any checkpoint has.", download),
        "zip-local-header": ("A zip member's header is damaged.", download),
        "zip-member-truncated": ("A zip member ends past the end of the file: cut short.", download),
        "zip-member-unreadable": ("A zip member cannot be read (compressed or encrypted in a way torch does not use).",
                                  download),
        "missing-storage": ("data.pkl refers to tensor storages that are not in the file.", download),
        "storage-too-small": ("Storage records are smaller than data.pkl says.", download),
        "bad-storage-reference": ("data.pkl refers to something that is not a torch storage.", download),
        "tensor-outside-storage": ("A tensor reaches past the end of its storage.", download),
        "impossible-shape": ("Tensor shapes need more bytes than the whole file holds: the header or data.pkl is "
                             "damaged.", download),
        "pickle-error": ("The pickle inside is incomplete or damaged: torch.load fails with UnpicklingError / EOFError.",
                         download),
        "pickle-too-large": ("The pickle is hundreds of MB, far more than a weights index; it may hide other data.",
                             "Do not load it; get the safetensors release of the model."),
        "legacy-truncated": ("The file ends inside its data: cut short.", download),
        "read-error": ("The disk or network file system returned an I/O error while reading.",
                       "Check `dmesg` for disk errors; copy the file to a local disk and try again."),
        "safetensors-too-short": ("Shorter than the 8-byte header length: cut short.", download),
        "header-too-large": ("The first 8 bytes give an absurd header length: not a safetensors file, or its start is "
                             "damaged (safetensors raises HeaderTooLarge).", download),
        "header-beyond-file": ("The header length points past the end of the file: cut short "
                               "(safetensors raises MetadataIncompleteBuffer).", download),
        "header-not-json": ("The header is not valid JSON (safetensors raises InvalidHeaderDeserialization).", download),
        "header-not-object": ("The header is not a JSON object.", download),
        "duplicate-keys": (f"The header names {p.get('key')!r} twice, which safetensors forbids.",
                           "Re-save it with `safetensors.torch.save_file`, or download it again."),
        "bad-entry": ("Header entries have unknown dtypes, bad shapes or bad offsets.", download),
        "too-many-entries": ("Millions of header entries: not a model.", download),
        "size-mismatch": ("Tensors' byte ranges do not match dtype x shape (safetensors raises TensorInvalidInfo).",
                          download),
        "offsets-not-contiguous": ("Tensor byte ranges overlap or leave holes (safetensors raises InvalidOffset).",
                                   download),
        "data-truncated": (f"The header describes more data than the file holds: {p.get('missing_bytes')} bytes are "
                           "missing at the end (an interrupted download).", download),
        "trailing-bytes": ("Bytes follow the last tensor; safetensors refuses such files (MetadataIncompleteBuffer).",
                           "Download it again, or re-save it with `safetensors.torch.save_file`."),
        "bad-metadata": ("__metadata__ must map strings to strings.", "Re-save it with `safetensors.torch.save_file`."),
    }
    cause, fix = table.get(kind, ("The file is not a usable checkpoint.", download))
    return {"cause": cause, "fix": fix}


# ------------------------------------------------------------------ rules

def rule_format(facts: Dict[str, Any]) -> Finding:
    code, title = "ckpt.format", "Checkpoint file format"
    if not facts or not facts.get("path"):
        return skip(code, title, NO_CHECKPOINT)
    path = facts["path"]
    bad = _problems(facts, code)
    evidence = {"path": path, "format": facts.get("format"), "content": facts.get("content"),
                "size_bytes": facts.get("size_bytes")}
    if bad:
        first = bad[0]
        how = _explain(first["kind"], first, path)
        evidence.update({"problem": first["kind"], "problems": bad})
        return Finding(code, Status.FAIL, title, f"{path}: {first['message']}.", evidence=evidence,
                       cause=how["cause"], fix=how["fix"])
    fmt = facts.get("format")
    if fmt == "unknown" or not facts.get("analysed"):
        return skip(code, title, f"{path}: the content could not be analysed; ckpt.corrupt says why.", **evidence)
    size = fmt_bytes(facts.get("size_bytes")) if facts.get("size_bytes") is not None else "folder"
    names = {"safetensors": "safetensors", "torch-zip": "torch zip checkpoint", "torch-legacy":
             "legacy (pre-1.6) torch checkpoint", "pickle": "plain pickle", "diffusers-dir": "diffusers folder"}
    container = facts.get("container") or {}
    summary = f"{names.get(fmt, fmt)}, {size}, {facts.get('tensors_total', 0)} tensors"
    if fmt == "torch-zip" and container.get("root"):
        summary += f" (zip root {container['root']!r})"
    training = facts.get("training") or {}
    sd_path = training.get("state_dict_path")
    if fmt in ("torch-zip", "torch-legacy", "pickle") and facts.get("tensors_total") and sd_path == [] \
            and training.get("top_level_keys") is not None:
        return Finding(
            code, Status.WARN, title,
            summary + "; the tensors are not under a 'state_dict' key, so ldm's "
            "`load_model_from_config` (`pl_sd[\"state_dict\"]`) raises KeyError: 'state_dict'.",
            evidence=evidence,
            cause="A bare state dict (torch.save(model.state_dict())) rather than a Lightning checkpoint.",
            fix="Load it with `sd = torch.load(path, map_location='cpu')` and pass `sd` itself to "
                "`model.load_state_dict(sd, strict=False)` (sdkit and A1111 do this), or wrap it once: "
                "`torch.save({'state_dict': sd}, 'model.ckpt')`.")
    if fmt == "safetensors":
        return Finding(
            code, Status.INFO, title,
            summary + "; the CompVis/Stability scripts read checkpoints with torch.load, which cannot open safetensors.",
            evidence=evidence,
            fix="Load it with `from safetensors.torch import load_file; sd = load_file(path)` and call "
                "`model.load_state_dict(sd, strict=False)` instead of `torch.load(path)['state_dict']`.")
    if fmt == "diffusers-dir":
        return Finding(code, Status.INFO, title,
                       summary + "; ldm cannot load the diffusers layout (it needs one LDM state dict).",
                       evidence=evidence,
                       fix="Use the single-file .ckpt / .safetensors release, or diffusers' "
                           "`scripts/convert_diffusers_to_original_stable_diffusion.py`.")
    return Finding(code, Status.OK, title, summary + ".", evidence=evidence)


_FAIL_ANOMALIES = {"crc-mismatch": "a member's CRC does not match its bytes",
                   "duplicate-members": "member names appear twice (torch compares names case-insensitively)",
                   "multiple-data-pkl": "more than one data.pkl",
                   "local-name-mismatch": "a member's local and central names differ",
                   "local-size-mismatch": "a member's local and central sizes differ",
                   "local-method-mismatch": "a member's local and central compression methods differ",
                   "overlapping-members": "members overlap",
                   "hidden-bytes": "bytes outside every member (data only some zip readers see)",
                   "pickle-in-member": "a pickle where torch expects raw bytes or text",
                   "disguised-pickle": "a pickle whose first bytes pass for another format",
                   "encrypted-members": "encrypted members"}


def rule_corrupt(facts: Dict[str, Any]) -> Finding:
    code, title = "ckpt.corrupt", "Checkpoint file integrity"
    if not facts or not facts.get("path"):
        return skip(code, title, NO_CHECKPOINT)
    path = facts["path"]
    bad = _problems(facts, code)
    container = facts.get("container") or {}
    anomalies = list(container.get("anomalies") or [])
    evidence: Dict[str, Any] = {"path": path, "format": facts.get("format"), "size_bytes": facts.get("size_bytes")}
    failing = [p for p in bad if p.get("severity") != "warn"]
    if failing:
        first = failing[0]
        how = _explain(first["kind"], first, path)
        evidence.update({"problem": first["kind"], "problems": bad})
        more = f" (+{len(failing) - 1} more problems)" if len(failing) > 1 else ""
        return Finding(code, Status.FAIL, title, f"{path}: {first['message']}{more}.", evidence=evidence,
                       cause=how["cause"], fix=how["fix"])
    if _problems(facts, "ckpt.format") and not facts.get("analysed"):
        return skip(code, title, "Not a checkpoint file; ckpt.format says what it is.", **evidence)
    severe = [a for a in anomalies if a.get("kind") in _FAIL_ANOMALIES]
    if severe:
        evidence["anomalies"] = anomalies
        what = "; ".join(_FAIL_ANOMALIES[a["kind"]] for a in severe)
        return Finding(code, Status.FAIL, title,
                       f"The container is inconsistent: {what}. Readers disagree on such files, which is how "
                       "scanners get bypassed.", evidence=evidence,
                       cause="The archive was damaged or deliberately crafted; torch.save never writes this.",
                       fix="Do not load it; download the checkpoint again from its original publisher.")
    pickle_anomalies = (facts.get("pickle") or {}).get("anomalies") or []
    notes = [p for p in bad if p.get("severity") == "warn"] + [a for a in anomalies if a.get("kind") not in _FAIL_ANOMALIES]
    if notes or pickle_anomalies:
        evidence.update({"anomalies": notes, "pickle_anomalies": pickle_anomalies})
        kinds = sorted({a.get("kind") for a in notes + pickle_anomalies})
        return Finding(code, Status.WARN, title,
                       f"Readable, with structural oddities torch.save does not produce: {', '.join(kinds)}.",
                       evidence=evidence,
                       cause="Written or edited by another tool.",
                       fix="Usually harmless; if the file misbehaves, get a fresh copy from its publisher.")
    fmt = facts.get("format")
    if fmt == "safetensors":
        summary = (f"Header valid ({fmt_bytes(container.get('header_bytes'))}); {facts.get('tensors_total')} tensors "
                   f"cover the {fmt_bytes(container.get('data_bytes'))} data buffer exactly.")
    elif fmt == "torch-zip":
        summary = (f"Zip intact: data.pkl reads to its end and all {container.get('storages')} storage records "
                   "it refers to are present, with the sizes it states.")
    elif fmt == "torch-legacy":
        summary = f"All {container.get('storages')} storages present with the sizes the file states."
    else:
        summary = "Structure intact."
    return Finding(code, Status.OK, title, summary, evidence=evidence)


def rule_unsafe_pickle(facts: Dict[str, Any]) -> Finding:
    code, title = "ckpt.unsafe-pickle", "Checkpoint code safety (pickle globals)"
    not_ready = _not_ready(facts, code, title)
    pickle = facts.get("pickle") if facts else None
    if facts and facts.get("format") == "safetensors" and facts.get("analysed") and pickle is None:
        return Finding(code, Status.OK, title, "safetensors holds only a JSON header and raw tensor bytes: no code.",
                       evidence={"format": "safetensors"})
    if pickle is None:
        if facts and facts.get("format") == "diffusers-dir" and facts.get("analysed"):
            return Finding(code, Status.OK, title, "The folder's weights are safetensors: no code.",
                           evidence={"format": "diffusers-dir"})
        return not_ready or skip(code, title, "No pickle to check.")
    evidence = {"unsafe_globals": pickle.get("unsafe_globals"), "dangerous_globals": pickle.get("dangerous_globals"),
                "called": pickle.get("unsafe_called"), "where": pickle.get("where"), "globals": pickle.get("globals"),
                "protocol": pickle.get("protocol"), "members": pickle.get("members")}
    unsafe = pickle.get("unsafe_globals") or []
    if unsafe:
        dangerous = pickle.get("dangerous_globals") or []
        first = (pickle.get("where") or {}).get(unsafe[0], {})
        where = f" ({first.get('member')}, byte {first.get('pos')})" if first else ""
        return Finding(
            code, Status.FAIL, title,
            f"The pickle names {len(unsafe)} global(s) outside what LDM checkpoints use: {', '.join(unsafe[:8])}"
            f"{where}. Loading it with torch.load(weights_only=False) or pickle would "
            + ("run them: this file executes code." if dangerous else "import and call them."),
            evidence=evidence, blocking=True,
            cause="A pickle can import and call any Python function while it loads. Weights need only torch's rebuild "
                  "functions, storages, OrderedDict, numpy scalars and Lightning's ModelCheckpoint; "
                  + (f"{', '.join(dangerous[:4])} can run commands or code on this machine."
                     if dangerous else "these names are not among them."),
            fix="Do not load this file (nothing was run: it was read without unpickling). Get a safetensors release "
                "from the model's original publisher; if you must convert it, do so in a disposable container without "
                "network access or credentials.",
            docs=["https://docs.python.org/3/library/pickle.html#restricting-globals"])
    if pickle.get("verified") is False:
        return Finding(code, Status.WARN, title,
                       "The pickle could not be read to its end; the part that was read names only allowlisted "
                       "globals, so its safety is unverified.", evidence=evidence,
                       cause="A damaged or truncated pickle (see ckpt.corrupt).",
                       fix="Get an intact copy before loading it.")
    return Finding(code, Status.OK, title,
                   f"Only allowlisted globals ({len(pickle.get('globals') or [])}): "
                   + ", ".join((pickle.get("globals") or [])[:6]) + ("..." if len(pickle.get("globals") or []) > 6 else "")
                   + ".", evidence=evidence)


def rule_weights_only(facts: Dict[str, Any], torch_version: Optional[str], environ: Mapping[str, str]) -> Finding:
    code, title = "ckpt.weights-only-refused", "torch.load(weights_only=True) on this checkpoint"
    if facts and facts.get("format") == "safetensors" and facts.get("analysed") and facts.get("weights_only") is None:
        return Finding(code, Status.OK, title, "safetensors does not go through torch.load.",
                       evidence={"format": "safetensors"})
    not_ready = _not_ready(facts, code, title)
    verdict = facts.get("weights_only") if facts else None
    if verdict is None:
        return not_ready or skip(code, title, "No pickle in this checkpoint.")
    evidence = {"torch": torch_version, "reasons": verdict.get("reasons"), "refused_globals": verdict.get("globals"),
                "opcodes": verdict.get("opcodes")}
    if not verdict.get("refused"):
        return Finding(code, Status.OK, title,
                       "torch.load(weights_only=True), the default since torch 2.6, accepts it: every global is allowed.",
                       evidence=evidence)
    unsafe = bool(facts.get("unsafe_globals"))
    globals_ = verdict.get("globals") or []
    if unsafe:
        fix = "Do not load it or allowlist anything: it names code (see ckpt.unsafe-pickle)."
    else:
        names = ", ".join(globals_)
        fix = ("Convert it once to safetensors (ckpt.unsafe-pickle found only allowlisted globals, so loading this file "
               "is safe): `python -c \"import torch; from safetensors.torch import save_file; "
               "sd = torch.load('model.ckpt', map_location='cpu', weights_only=False); sd = sd.get('state_dict', sd); "
               "save_file({k: v.contiguous() for k, v in sd.items() if hasattr(v, 'contiguous')}, "
               "'model.safetensors')\"`" + (f"; or allowlist before torch.load: "
                                            f"`torch.serialization.add_safe_globals([{names}])`"
                                            if verdict.get("add_safe_globals_enough") else "") + ".")
    forced = str(environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "")).lower() in ("1", "true", "yes", "on")
    first_reason = (verdict.get("reasons") or ["refused"])[0]
    if torch_version is None:
        return Finding(code, Status.WARN, title,
                       f"torch >= 2.6 would refuse it by default ({first_reason}); torch is not installed here to tell "
                       "which applies.", evidence=evidence,
                       cause="torch 2.6 changed torch.load's default to weights_only=True.", fix=fix)
    if not version_at_least(torch_version, "2.6"):
        return Finding(code, Status.WARN, title,
                       f"Loads with torch {torch_version}, but torch >= 2.6 refuses it by default: {first_reason}.",
                       evidence=evidence,
                       cause="torch 2.6 changed torch.load's default to weights_only=True; upgrading torch breaks ldm's "
                             "`torch.load(ckpt, map_location='cpu')`.", fix=fix)
    if forced:
        return Finding(code, Status.INFO, title,
                       f"torch {torch_version} would refuse it ({first_reason}), but TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is "
                       "set, so torch.load unpickles it without restrictions.", evidence=evidence, fix=fix)
    return Finding(
        code, Status.FAIL, title,
        f"torch {torch_version} refuses it: ldm's `torch.load(ckpt, map_location='cpu')` raises "
        f"\"Weights only load failed ... {first_reason}\".",
        evidence=evidence,
        cause="torch >= 2.6 loads with weights_only=True unless told otherwise; this checkpoint pickles "
              + (", ".join(globals_[:4]) if globals_ else "constructs") + ", which that loader does not allow.",
        fix=fix, docs=["https://pytorch.org/docs/stable/notes/serialization.html#weights-only"])


def rule_components(facts: Dict[str, Any]) -> Finding:
    code, title = "ckpt.components", "Checkpoint components"
    not_ready = _not_ready(facts, code, title)
    if not_ready:
        return not_ready
    comps = facts.get("components") or {}
    training = facts.get("training") or {}
    evidence = {"components": comps, "unknown_keys": facts.get("unknown_keys"),
                "unknown_keys_count": facts.get("unknown_keys_count"), "training": training,
                "tensors_total": facts.get("tensors_total"), "parameters_total": facts.get("parameters_total")}
    if not facts.get("tensors_total"):
        return Finding(code, Status.FAIL, title, "The file holds no tensors.", evidence=evidence,
                       cause="An empty state dict, or an object that is not a model.",
                       fix="Check that this is the model file (a LoRA, embedding or config has a different layout).")
    labels = {"unet": "UNet", "vae": "VAE", "text_encoder": "text encoder", "ema": "EMA"}
    parts = []
    for name in ("unet", "vae", "text_encoder", "ema"):
        c = comps.get(name) or {}
        if c.get("present"):
            label = labels[name]
            if name == "text_encoder" and c.get("kind"):
                label += f" ({c['kind']})"
            parts.append(f"{label} {c['tensors']} tensors / {_params(c['parameters'])} params {_dtype_text(c)}")
    extra = [n for n in comps if n not in labels and n not in ("schedule", "unknown") and comps[n].get("present")]
    summary = "; ".join(parts)
    if extra:
        summary += "; also " + ", ".join(f"{n} ({comps[n]['tensors']})" for n in extra)
    dead = (training.get("optimizer_states") or {}).get("bytes") or 0
    other = sum(v.get("bytes", 0) for v in (training.get("other_tensors") or {}).values())
    unet, vae = comps.get("unet") or {}, comps.get("vae") or {}
    if not unet.get("present"):
        return Finding(code, Status.FAIL, title,
                       f"No UNet (model.diffusion_model.*): {summary or 'no known component'}.", evidence=evidence,
                       cause="This is not a full LDM checkpoint: a VAE, text encoder, LoRA or EMA-only export.",
                       fix="Use the full model checkpoint; a VAE or text encoder file is loaded on top of one.")
    if not vae.get("present"):
        return Finding(code, Status.FAIL, title,
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
    if facts.get("unknown_keys_count"):
        notes.append(f"{facts['unknown_keys_count']} keys of no known component (e.g. "
                     f"{', '.join((facts.get('unknown_keys') or [])[:3])})")
    if notes:
        return Finding(code, Status.INFO, title, summary + "; " + "; ".join(notes) + ".", evidence=evidence,
                       fix="Optional: keep only `state_dict` for deployment (smaller, loads faster)." if dead else "")
    return Finding(code, Status.OK, title, summary + ".", evidence=evidence)


def rule_family(facts: Dict[str, Any]) -> Finding:
    code, title = "ckpt.family", "Model family and variant"
    not_ready = _not_ready(facts, code, title)
    if not_ready:
        return not_ready
    family, variant = facts.get("family", "unknown"), facts.get("variant", "unknown")
    unet = facts.get("unet") or {}
    ev_family = facts.get("family_evidence") or {}
    evidence = {"family": family, "variant": variant, "unet_in_channels": facts.get("unet_in_channels"),
                "unet": unet, "family_evidence": ev_family, "text_encoder": facts.get("text_encoder")}
    if family == "unknown":
        return Finding(code, Status.WARN, title,
                       f"Could not tell the family from the UNet: cross-attention width {unet.get('context_dim')}, "
                       f"label_emb {unet.get('adm_in_channels')}.", evidence=evidence,
                       cause="Not an SD 1.x / 2.x / XL UNet, or the UNet keys are missing.",
                       fix="Check the model card for the config it needs.")
    where = (f"UNet input {facts.get('unet_in_channels')} channels, cross-attention {unet.get('context_dim')}"
             + (", linear proj_in" if unet.get("linear_proj_in") else "")
             + (f", label_emb {unet.get('adm_in_channels')}" if unet.get("adm_in_channels") else ""))
    if ev_family.get("source") == "text_encoder":
        where = f"from the text encoder only ({facts.get('text_encoder', {}).get('kind')}); no UNet shapes"
    note = f"; {ev_family['note']}" if ev_family.get("note") else ""
    if variant == "unknown":
        return Finding(code, Status.WARN, title,
                       f"{FAMILY_NAMES[family]} with a {facts.get('unet_in_channels')}-channel UNet input ({where}{note}): "
                       "not txt2img (4), inpainting (9), depth (5) or instruct-pix2pix (8).", evidence=evidence,
                       cause="An uncommon variant (e.g. an upscaler) or a damaged input conv.",
                       fix="Use the config from the model's card; its unet_config.in_channels must equal "
                           f"{facts.get('unet_in_channels')}.")
    config = CONFIGS.get((family, variant))
    evidence["config"] = config
    return Finding(code, Status.OK, title,
                   f"{FAMILY_NAMES[family]} {variant} ({where}{note})" + (f"; config: {config}" if config else "") + ".",
                   evidence=evidence)


def _te_loaded_by(style: Optional[str], transformers_version: Optional[str]) -> Optional[bool]:
    """Does ldm's load_state_dict(strict=False) pick up CLIP keys of this style with this transformers?"""
    if style not in ("text_model", "flat") or not transformers_version:
        return None
    v5 = version_at_least(transformers_version, "5")
    if v5 is None:
        return None
    # transformers 5 removed CLIPTextModel.text_model: the module's keys are flat (embeddings.*, encoder.*).
    return (style == "flat") if v5 else (style == "text_model")


def rule_clip_missing(facts: Dict[str, Any], transformers_version: Optional[str]) -> Finding:
    code, title = "ckpt.clip-missing", "CLIP text encoder in the checkpoint"
    not_ready = _not_ready(facts, code, title)
    if not_ready:
        return not_ready
    te = facts.get("text_encoder") or {}
    comp = (facts.get("components") or {}).get("text_encoder") or {}
    family = facts.get("family")
    hub = {"sd1": "openai/clip-vit-large-patch14", "sd2": "laion/CLIP-ViT-H-14-laion2B-s32B-b79K (open_clip)",
           "sdxl": "openai/clip-vit-large-patch14 and laion/CLIP-ViT-bigG-14-laion2B-39B-b160k"}.get(family,
                                                                                                  "the text encoder")
    evidence = {"text_encoder": te, "tensors": comp.get("tensors"), "parameters": comp.get("parameters"),
                "transformers": transformers_version, "hub_model": hub}
    if not te.get("present"):
        return Finding(code, Status.WARN, title,
                       f"No text encoder weights in the file: the model takes them from the Hub ({hub}) when it is "
                       "built, so deployment needs network access or a local copy.",
                       evidence=evidence,
                       cause="A pruned or UNet+VAE-only checkpoint.",
                       fix="Put the text encoder in the Hugging Face cache before deploying: "
                           "`hf download openai/clip-vit-large-patch14` (on a machine with network, then copy "
                           "~/.cache/huggingface), and set HF_HUB_OFFLINE=1; the cache.* checks verify it.")
    prefixes = ", ".join(te.get("prefixes") or [])
    loaded = _te_loaded_by(te.get("key_style"), transformers_version)
    base = (f"The file carries the {te.get('kind')} text encoder ({comp.get('tensors')} tensors / "
            f"{_params(comp.get('parameters'))} params under {prefixes})")
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
        return Finding(code, Status.WARN, title, f"{base}, but {why}.", evidence=evidence,
                       cause="The key names in the file and the module names of the installed transformers differ.",
                       fix=fix)
    summary = (f"{base}; they replace the Hub weights at load, but FrozenCLIPEmbedder still calls "
               f"from_pretrained({hub.split(' ')[0]!r}) for the tokenizer and architecture, so the Hub or a local copy "
               "is still needed: `python -m diagnostics provision-clip --checkpoint CKPT --hf-cache` makes that copy "
               "from this file, offline.") if family in ("sd1", "sdxl") else f"{base}."
    return Finding(code, Status.OK, title, summary, evidence=evidence)


def rule_clip_position_ids(facts: Dict[str, Any], transformers_version: Optional[str]) -> Finding:
    code, title = "ckpt.clip-position-ids", "CLIP position_ids"
    not_ready = _not_ready(facts, code, title)
    if not_ready:
        return not_ready
    te = facts.get("text_encoder") or {}
    detail = facts.get("position_ids_detail") or {}
    status = facts.get("position_ids")
    evidence = {"position_ids": status, "detail": detail, "transformers": transformers_version}
    if not te.get("present"):
        return skip(code, title, "No CLIP text encoder in the checkpoint.", **evidence)
    if status == "absent":
        return Finding(code, Status.OK, title,
                       "position_ids are absent, which is fine: CLIPTextModel creates them itself (and transformers "
                       ">= 4.31 does not read them from checkpoints).", evidence=evidence)
    if status == "ok":
        return Finding(code, Status.OK, title, f"{detail.get('key')}: int64 0..76, as expected.", evidence=evidence)
    if status == "unreadable":
        return Finding(code, Status.WARN, title, f"{detail.get('key')} could not be read ({detail.get('dtype')}).",
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
        return Finding(code, Status.INFO, title,
                       summary + f" transformers {transformers_version} ignores position_ids from checkpoints, so this "
                       "is harmless here, but it shows the file is a merge.", evidence=evidence,
                       cause="Weighted merges average position_ids like weights and turn the int64 ids into floats.",
                       fix=fix)
    return Finding(code, Status.WARN, title, summary + effect, evidence=evidence,
                   cause="Weighted merges average position_ids like weights and turn the int64 ids into floats "
                         "(e.g. 76 -> 75.9975, cast back to 75)."
                         + (f" transformers {transformers_version} loads them." if used else ""),
                   fix=fix, docs=["https://github.com/AUTOMATIC1111/stable-diffusion-webui/issues/7450"])


def _ema_skip(facts: Dict[str, Any], code: str, title: str) -> Optional[Finding]:
    not_ready = _not_ready(facts, code, title)
    if not_ready:
        return not_ready
    if not (facts.get("ema") or {}).get("present"):
        return skip(code, title, "No EMA weights in the checkpoint (see ckpt.ema-absent).")
    return None


def rule_ema_absent(facts: Dict[str, Any]) -> Finding:
    code, title = "ckpt.ema-absent", "EMA weights present"
    not_ready = _not_ready(facts, code, title)
    if not_ready:
        return not_ready
    ema = facts.get("ema") or {}
    unet = (facts.get("components") or {}).get("unet") or {}
    evidence = {"ema": {k: ema.get(k) for k in ("present", "tensors", "num_updates", "decay", "twins")},
                "unet_tensors": unet.get("tensors")}
    if ema.get("present"):
        return Finding(code, Status.OK, title,
                       f"EMA present: {ema.get('tensors')} model_ema.* tensors (num_updates {ema.get('num_updates')}, "
                       f"decay {ema.get('decay')}).", evidence=evidence)
    if not unet.get("present"):
        return skip(code, title, "No UNet, so no EMA expected.", **evidence)
    expected = (unet.get("tensors") or 0) + 2
    return Finding(
        code, Status.INFO, title,
        f"No EMA weights (a pruned file). A config with `use_ema: True` (LatentDiffusion's default, e.g. "
        f"v1-inpainting-inference.yaml) builds LitEma anyway and load_state_dict(strict=False) reports {expected} "
        "missing model_ema.* keys: expected with this file, and harmless unless sampling runs under ema_scope().",
        evidence=evidence,
        cause="EMA weights are dropped when a checkpoint is pruned for inference.",
        fix="Set `model.params.use_ema: False` in the config to build no EMA and silence the missing keys.")


def rule_ema_incomplete(facts: Dict[str, Any]) -> Finding:
    code, title = "ckpt.ema-incomplete", "EMA covers the whole UNet"
    not_skip = _ema_skip(facts, code, title)
    if not_skip:
        return not_skip
    ema = facts["ema"]
    evidence = {k: ema.get(k) for k in ("twins", "missing", "missing_count", "extra", "extra_count", "tensors")}
    if not ema.get("unet_present", True):
        return Finding(code, Status.WARN, title,
                       f"EMA-only file: {ema.get('tensors')} model_ema.* tensors and no UNet; ldm loads UNet weights "
                       "from model.diffusion_model.*, which are missing.", evidence=evidence,
                       cause="The EMA was exported without converting its names back to UNet keys.",
                       fix="Convert the EMA names to UNet keys (model_ema.diffusion_modelX -> model.diffusion_model.X "
                           "with the dots restored), or use the model's regular release.")
    if ema.get("missing_count"):
        missing = ema.get("missing") or []
        return Finding(code, Status.WARN, title,
                       f"{ema['missing_count']} of {ema['twins'] + ema['missing_count']} UNet tensors have no EMA twin "
                       f"(e.g. {', '.join(missing[:3])}); under ema_scope() those stay at their random initial values.",
                       evidence=evidence,
                       cause="The EMA was saved from a different UNet definition, or a converter dropped keys.",
                       fix="Set `model.params.use_ema: False` to use the live weights, or re-export the EMA.")
    extra = f"; {ema['extra_count']} EMA tensors match no UNet key" if ema.get("extra_count") else ""
    return Finding(code, Status.OK if not extra else Status.INFO, title,
                   f"All {ema.get('twins')} UNet tensors have an EMA twin{extra}.", evidence=evidence)


def rule_ema_shape_mismatch(facts: Dict[str, Any]) -> Finding:
    code, title = "ckpt.ema-shape-mismatch", "EMA shapes match the UNet"
    not_skip = _ema_skip(facts, code, title)
    if not_skip:
        return not_skip
    ema = facts["ema"]
    mismatches = ema.get("shape_mismatches") or []
    evidence = {"shape_mismatches": mismatches, "count": ema.get("shape_mismatch_count")}
    if not mismatches:
        return Finding(code, Status.OK, title, f"All {ema.get('twins')} EMA twins have their UNet tensor's shape.",
                       evidence=evidence)
    m = mismatches[0]
    return Finding(
        code, Status.FAIL, title,
        f"{ema.get('shape_mismatch_count')} EMA tensors differ in shape from the UNet: {m['ema_key']} "
        f"{m['ema_shape']} vs {m['key']} {m['model_shape']}. With use_ema: True, load_state_dict raises "
        f"\"size mismatch for {m['ema_key']}\" (strict=False does not skip size mismatches).",
        evidence=evidence,
        cause="The EMA belongs to another model: e.g. a txt2img EMA (4-channel input) left in an inpainting "
              "(9-channel) conversion.",
        fix="Set `model.params.use_ema: False` in the config (the EMA keys are then ignored), or drop them: "
            "`sd = {k: v for k, v in sd.items() if not k.startswith('model_ema.')}`.")


def rule_ema_untrained(facts: Dict[str, Any]) -> Finding:
    code, title = "ckpt.ema-untrained", "EMA actually trained"
    not_skip = _ema_skip(facts, code, title)
    if not_skip:
        return not_skip
    ema = facts["ema"]
    evidence = {"num_updates": ema.get("num_updates"), "decay": ema.get("decay"),
                "identical_to_model": ema.get("identical_to_model"), "difference": ema.get("difference")}
    ema_bytes = ((facts.get("components") or {}).get("ema") or {}).get("bytes")
    if ema.get("num_updates") == 0:
        return Finding(code, Status.WARN, title,
                       "model_ema.num_updates is 0: the EMA was never updated and holds the weights from the start of "
                       "training, not the trained model.", evidence=evidence,
                       cause="Training ran with EMA disabled, or the EMA was reset before saving.",
                       fix="Do not sample under ema_scope(); set `model.params.use_ema: False`, and prune the EMA "
                           f"({fmt_bytes(ema_bytes)}).")
    if ema.get("identical_to_model") is True:
        return Finding(code, Status.WARN, title,
                       f"The EMA is identical to the live UNet weights (--deep compared all "
                       f"{(ema.get('difference') or {}).get('pairs')} pairs): it carries no information.",
                       evidence=evidence,
                       cause="The EMA was copied from the model (LitEma at step 0, or a converter that duplicated it).",
                       fix=f"Prune it: {fmt_bytes(ema_bytes)} of dead weight.")
    if ema.get("identical_to_model") is False:
        diff = ema.get("difference") or {}
        rel = diff.get("relative_l2")
        return Finding(code, Status.OK, title,
                       f"The EMA differs from the live weights (relative L2 {rel:.3g}, max |diff| "
                       f"{diff.get('max_abs_diff'):.3g}); num_updates {ema.get('num_updates')}." if rel is not None else
                       f"The EMA differs from the live weights; num_updates {ema.get('num_updates')}.",
                       evidence=evidence)
    return Finding(code, Status.OK, title,
                   f"num_updates {ema.get('num_updates')}, decay {ema.get('decay')} (run `inspect --deep` to compare the "
                   "EMA with the live weights).", evidence=evidence)


def rule_nonfinite(facts: Dict[str, Any]) -> Finding:
    code, title = "ckpt.nonfinite", "NaN / Inf weights"
    not_ready = _not_ready(facts, code, title)
    if not_ready:
        return not_ready
    deep = facts.get("deep")
    if not deep:
        return skip(code, title, "Tensor data was not scanned: run `python -m diagnostics inspect CKPT --deep` "
                                 "(reads the whole file once).")
    if not deep.get("ran"):
        return skip(code, title, f"The deep scan did not run: {deep.get('reason')}.")
    bad = deep.get("nonfinite") or []
    evidence = {"nonfinite": bad, "count": deep.get("nonfinite_count"), "bytes_read": deep.get("bytes_read"),
                "seconds": deep.get("seconds"), "skipped": deep.get("skipped")}
    if not bad:
        return Finding(code, Status.OK, title,
                       f"No NaN or Inf in {deep.get('tensors_scanned')} tensors ({fmt_bytes(deep.get('bytes_read'))} "
                       f"scanned at {deep.get('read_rate_mb_s')} MB/s).", evidence=evidence)
    used = [b for b in bad if b.get("component") != "ema"]
    shown = ", ".join(f"{b['name']} ({b['nan']} NaN, {b['inf']} Inf)" for b in (used or bad)[:4])
    if not used:
        return Finding(code, Status.WARN, title,
                       f"{len(bad)} EMA tensors hold NaN/Inf: {shown}; they matter only under ema_scope().",
                       evidence=evidence, cause="The EMA diverged during training or was damaged.",
                       fix="Keep `use_ema: False`, or prune the EMA.")
    return Finding(code, Status.FAIL, title,
                   f"{deep.get('nonfinite_count')} tensors hold NaN/Inf: {shown}. The model will produce NaN (black) "
                   "images (\"A tensor with all NaNs was produced\").", evidence=evidence,
                   cause="Damaged bytes or a broken merge/fine-tune wrote non-finite weights.",
                   fix="Download the file again and compare `inspect --hash` with the publisher's sha256; if it "
                       "matches, the model itself is broken: use another checkpoint.")


def rule_dtype(facts: Dict[str, Any]) -> Finding:
    code, title = "ckpt.dtype", "Tensor dtypes and sizes"
    not_ready = _not_ready(facts, code, title)
    if not_ready:
        return not_ready
    comps = facts.get("components") or {}
    evidence = {name: {"bytes": c.get("bytes"), "bytes_by_dtype": c.get("bytes_by_dtype"), "dtypes": c.get("dtypes")}
                for name, c in comps.items() if c.get("present")}
    evidence["tensor_bytes_total"] = facts.get("tensor_bytes_total")
    parts = [f"{name} {fmt_bytes(c['bytes'])} {_dtype_text(c)}" for name, c in comps.items()
             if c.get("present") and name in ("unet", "vae", "text_encoder", "ema")]
    summary = f"{fmt_bytes(facts.get('tensor_bytes_total'))} of tensors: " + ", ".join(parts)
    unet = comps.get("unet") or {}
    floats = [d for d in (unet.get("dtypes") or {}) if d.startswith(("float", "bfloat"))]
    if len(floats) > 1:
        return Finding(code, Status.WARN, title,
                       summary + f"; the UNet mixes {', '.join(sorted(floats))} tensors.", evidence=evidence,
                       cause="A merge or partial conversion left tensors in different precisions.",
                       fix="Usually harmless (ldm casts on load); convert the whole file to one dtype for a clean artefact.")
    ema_bytes = (comps.get("ema") or {}).get("bytes") or 0
    if ema_bytes and facts.get("tensor_bytes_total"):
        summary += f"; the EMA is {100 * ema_bytes / facts['tensor_bytes_total']:.0f}% of it"
    return Finding(code, Status.INFO if ema_bytes else Status.OK, title, summary + ".", evidence=evidence,
                   fix="For inference only, a pruned fp16 copy (no EMA) is about a quarter of a full fp32 file."
                   if ema_bytes else "")


def rule_hash(facts: Dict[str, Any]) -> Finding:
    code, title = "ckpt.hash", "Checkpoint hashes"
    if not facts or not facts.get("path"):
        return skip(code, title, NO_CHECKPOINT)
    h = facts.get("hash")
    if not h:
        return skip(code, title, "Not hashed: run `python -m diagnostics inspect CKPT --hash` (reads the whole file "
                                 "once; cached afterwards).")
    if h.get("error"):
        return Finding(code, Status.WARN, title, f"Hashing failed: {h['error']}.", evidence=h, blocking=False)
    return Finding(code, Status.INFO, title,
                   f"sha256 {h['sha256']} (AutoV2 {h['autov2']}, legacy A1111 hash {h['legacy']})"
                   + (" [cached]" if h.get("cached") else "") + ".",
                   evidence=h, fix="Compare with the sha256 on the model's download page.")


# ------------------------------------------------------------------ wiring

def all_rules(facts: Dict[str, Any], versions: Mapping[str, Optional[str]], environ: Mapping[str, str]) -> List[Finding]:
    """Every ckpt.* finding for one set of facts, in report order (what `inspect` prints)."""
    tv, trv = versions.get("torch"), versions.get("transformers")
    return [
        rule_format(facts), rule_corrupt(facts), rule_unsafe_pickle(facts), rule_weights_only(facts, tv, environ),
        rule_components(facts), rule_family(facts), rule_clip_missing(facts, trv), rule_clip_position_ids(facts, trv),
        rule_ema_absent(facts), rule_ema_incomplete(facts), rule_ema_shape_mismatch(facts), rule_ema_untrained(facts),
        rule_nonfinite(facts), rule_dtype(facts), rule_hash(facts),
    ]


def _facts(ctx) -> Dict[str, Any]:
    return ctx.fact("checkpoint", probe_checkpoint)


_versions = installed_versions


CHECKS: List[Check] = [
    Check("ckpt.format", "Checkpoint file format", lambda ctx: [rule_format(_facts(ctx))], reads=("ctx",)),
    Check("ckpt.corrupt", "Checkpoint file integrity", lambda ctx: [rule_corrupt(_facts(ctx))], reads=("ctx",)),
    Check("ckpt.unsafe-pickle", "Checkpoint code safety (pickle globals)", lambda ctx: [rule_unsafe_pickle(_facts(ctx))], reads=("ctx",)),
    Check("ckpt.weights-only-refused", "torch.load(weights_only=True) on this checkpoint",
          lambda ctx: [rule_weights_only(_facts(ctx), _versions(ctx).get("torch"), ctx.environ)], reads=("ctx",)),
    Check("ckpt.components", "Checkpoint components", lambda ctx: [rule_components(_facts(ctx))], reads=("ctx",)),
    Check("ckpt.family", "Model family and variant", lambda ctx: [rule_family(_facts(ctx))], reads=("ctx",)),
    Check("ckpt.clip-missing", "CLIP text encoder in the checkpoint",
          lambda ctx: [rule_clip_missing(_facts(ctx), _versions(ctx).get("transformers"))], reads=("ctx",)),
    Check("ckpt.clip-position-ids", "CLIP position_ids",
          lambda ctx: [rule_clip_position_ids(_facts(ctx), _versions(ctx).get("transformers"))], reads=("ctx",)),
    Check("ckpt.ema-absent", "EMA weights present", lambda ctx: [rule_ema_absent(_facts(ctx))], reads=("ctx",)),
    Check("ckpt.ema-incomplete", "EMA covers the whole UNet", lambda ctx: [rule_ema_incomplete(_facts(ctx))], reads=("ctx",)),
    Check("ckpt.ema-shape-mismatch", "EMA shapes match the UNet", lambda ctx: [rule_ema_shape_mismatch(_facts(ctx))], reads=("ctx",)),
    Check("ckpt.ema-untrained", "EMA actually trained", lambda ctx: [rule_ema_untrained(_facts(ctx))], reads=("ctx",)),
    Check("ckpt.nonfinite", "NaN / Inf weights", lambda ctx: [rule_nonfinite(_facts(ctx))], reads=("ctx",)),
    Check("ckpt.dtype", "Tensor dtypes and sizes", lambda ctx: [rule_dtype(_facts(ctx))], reads=("ctx",)),
    Check("ckpt.hash", "Checkpoint hashes", lambda ctx: [rule_hash(_facts(ctx))], reads=("ctx",)),
]
