"""ckpt.format, ckpt.corrupt, ckpt.unsafe-pickle, ckpt.weights-only-refused: what the file is, whether its
structure is intact, and whether loading it would run code or be refused by torch's safe loader."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

from ...findings import Finding, Status, verdict
from ...probes.checkpoint.facts import CheckpointFacts
from ...probes.checkpoint.records import Problem
from ...util import fmt_bytes, version_at_least
from .common import listing

def rule_format(facts: CheckpointFacts) -> Finding:
    code = "ckpt.format"
    path = facts.path
    bad = facts.problems_for(code)
    evidence = {"path": path, "format": facts.format, "content": facts.content,
                "size_bytes": facts.size_bytes}
    if bad:
        return _problem_verdict(bad[0], bad, evidence, path)
    fmt = facts.format
    if fmt == "unknown" or not facts.analysed:
        return verdict(Status.SKIP, f"{path}: the content could not be analysed; ckpt.corrupt says why.",
                       evidence=evidence)
    size = fmt_bytes(facts.size_bytes) if facts.size_bytes is not None else "folder"
    names = {"safetensors": "safetensors", "torch-zip": "torch zip checkpoint", "torch-legacy":
             "legacy (pre-1.6) torch checkpoint", "pickle": "plain pickle", "diffusers-dir": "diffusers folder"}
    container = facts.container or {}
    summary = f"{names.get(fmt, fmt)}, {size}, {facts.tensors_total} tensors"
    if fmt == "torch-zip" and container.get("root"):
        summary += f" (zip root {container['root']!r})"
    training = facts.training or {}
    sd_path = training.get("state_dict_path")
    if fmt in ("torch-zip", "torch-legacy", "pickle") and facts.tensors_total and sd_path == [] \
            and training.get("top_level_keys") is not None:
        return verdict(Status.WARN,
            summary + "; the tensors are not under a 'state_dict' key, so ldm's "
            "`load_model_from_config` (`pl_sd[\"state_dict\"]`) raises KeyError: 'state_dict'.",
            evidence=evidence,
            cause="A bare state dict (torch.save(model.state_dict())) rather than a Lightning checkpoint.",
            fix="Load it with `sd = torch.load(path, map_location='cpu')` and pass `sd` itself to "
                "`model.load_state_dict(sd, strict=False)` (sdkit and A1111 do this), or wrap it once: "
                "`torch.save({'state_dict': sd}, 'model.ckpt')`.")
    if fmt == "safetensors":
        return verdict(Status.INFO,
            summary + "; the CompVis/Stability scripts read checkpoints with torch.load, which cannot open safetensors.",
            evidence=evidence,
            fix="Load it with `from safetensors.torch import load_file; sd = load_file(path)` and call "
                "`model.load_state_dict(sd, strict=False)` instead of `torch.load(path)['state_dict']`.")
    if fmt == "diffusers-dir":
        return verdict(Status.INFO,
                       summary + "; ldm cannot load the diffusers layout (it needs one LDM state dict).",
                       evidence=evidence,
                       fix="Use the single-file .ckpt / .safetensors release, or diffusers' "
                           "`scripts/convert_diffusers_to_original_stable_diffusion.py`.")
    return verdict(Status.OK, summary + ".", evidence=evidence)


def _problem_verdict(first: Problem, found: List[Problem], evidence: Dict[str, Any], path: str,
                     more: str = "") -> Finding:
    """The fail finding for problem `first`, with cause and fix from the problem table."""
    cause, fix = first.row.explain(first.evidence, path)
    evidence.update({"problem": first.kind, "problems": [p.to_dict() for p in found]})
    return verdict(Status.FAIL, f"{path}: {first.message}{more}.", evidence=evidence, cause=cause, fix=fix)


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


def rule_corrupt(facts: CheckpointFacts) -> Finding:
    code = "ckpt.corrupt"
    path = facts.path
    bad = facts.problems_for(code)
    container = facts.container or {}
    anomalies = list(container.get("anomalies") or [])
    evidence: Dict[str, Any] = {"path": path, "format": facts.format, "size_bytes": facts.size_bytes}
    failing = [p for p in bad if p.severity != "warn"]
    if failing:
        more = f" (+{len(failing) - 1} more problems)" if len(failing) > 1 else ""
        return _problem_verdict(failing[0], bad, evidence, path, more)
    if facts.problems_for("ckpt.format") and not facts.analysed:
        return verdict(Status.SKIP, "Not a checkpoint file; ckpt.format says what it is.", evidence=evidence)
    severe = [a for a in anomalies if a.get("kind") in _FAIL_ANOMALIES]
    if severe:
        evidence["anomalies"] = anomalies
        what = "; ".join(_FAIL_ANOMALIES[a["kind"]] for a in severe)
        return verdict(Status.FAIL,
                       f"The container is inconsistent: {what}. Readers disagree on such files, which is how "
                       "scanners get bypassed.", evidence=evidence,
                       cause="The archive was damaged or deliberately crafted; torch.save never writes this.",
                       fix="Do not load it; download the checkpoint again from its original publisher.")
    pickle_anomalies = (facts.pickle or {}).get("anomalies") or []
    notes = [p.to_dict() for p in bad if p.severity == "warn"] + [a for a in anomalies if a.get("kind") not in _FAIL_ANOMALIES]
    if notes or pickle_anomalies:
        evidence.update({"anomalies": notes, "pickle_anomalies": pickle_anomalies})
        kinds = sorted({a.get("kind") for a in notes + pickle_anomalies})
        return verdict(Status.WARN,
                       f"Readable, with structural oddities torch.save does not produce: {', '.join(kinds)}.",
                       evidence=evidence,
                       cause="Written or edited by another tool.",
                       fix="Usually harmless; if the file misbehaves, get a fresh copy from its publisher.")
    fmt = facts.format
    if fmt == "safetensors":
        summary = (f"Header valid ({fmt_bytes(container.get('header_bytes'))}); {facts.tensors_total} tensors "
                   f"cover the {fmt_bytes(container.get('data_bytes'))} data buffer exactly.")
    elif fmt == "torch-zip":
        summary = (f"Zip intact: data.pkl reads to its end and all {container.get('storages')} storage records "
                   "it refers to are present, with the sizes it states.")
    elif fmt == "torch-legacy":
        summary = f"All {container.get('storages')} storages present with the sizes the file states."
    else:
        summary = "Structure intact."
    return verdict(Status.OK, summary, evidence=evidence)


def rule_unsafe_pickle(facts: CheckpointFacts) -> Finding:
    code = "ckpt.unsafe-pickle"
    pickle = facts.pickle
    if facts.format == "safetensors" and pickle is None:
        return verdict(Status.OK, "safetensors holds only a JSON header and raw tensor bytes: no code.",
                       evidence={"format": "safetensors"})
    if pickle is None:
        if facts.format == "diffusers-dir":
            return verdict(Status.OK, "The folder's weights are safetensors: no code.",
                           evidence={"format": "diffusers-dir"})
        return verdict(Status.SKIP, "No pickle to check.")
    evidence = {"unsafe_globals": pickle.get("unsafe_globals"), "dangerous_globals": pickle.get("dangerous_globals"),
                "called": pickle.get("unsafe_called"), "where": pickle.get("where"), "globals": pickle.get("globals"),
                "protocol": pickle.get("protocol"), "members": pickle.get("members")}
    unsafe = pickle.get("unsafe_globals") or []
    if unsafe:
        dangerous = pickle.get("dangerous_globals") or []
        first = (pickle.get("where") or {}).get(unsafe[0], {})
        where = f" ({first.get('member')}, byte {first.get('pos')})" if first else ""
        return verdict(Status.FAIL,
            f"The pickle names {len(unsafe)} global(s) outside what LDM checkpoints use: {listing(unsafe, 8)}"
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
        return verdict(Status.WARN,
                       "The pickle could not be read to its end; the part that was read names only allowlisted "
                       "globals, so its safety is unverified.", evidence=evidence,
                       cause="A damaged or truncated pickle (see ckpt.corrupt).",
                       fix="Get an intact copy before loading it.")
    names = pickle.get("globals") or []
    return verdict(Status.OK, f"Only allowlisted globals ({len(names)}): {listing(names, 6)}.",
                   evidence=evidence)


def rule_weights_only(facts: CheckpointFacts, torch_version: Optional[str], environ: Mapping[str, str]) -> Finding:
    code = "ckpt.weights-only-refused"
    if facts.format == "safetensors" and facts.weights_only is None:
        return verdict(Status.OK, "safetensors does not go through torch.load.",
                       evidence={"format": "safetensors"})
    refusal = facts.weights_only
    if refusal is None:
        return verdict(Status.SKIP, "No pickle in this checkpoint.")
    evidence = {"torch": torch_version, "reasons": refusal.get("reasons"), "refused_globals": refusal.get("globals"),
                "opcodes": refusal.get("opcodes")}
    if not refusal.get("refused"):
        return verdict(Status.OK,
                       "torch.load(weights_only=True), the default since torch 2.6, accepts it: every global is allowed.",
                       evidence=evidence)
    unsafe = bool(facts.unsafe_globals)
    globals_ = refusal.get("globals") or []
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
                                            if refusal.get("add_safe_globals_enough") else "") + ".")
    forced = str(environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "")).lower() in ("1", "true", "yes", "on")
    first_reason = (refusal.get("reasons") or ["refused"])[0]
    if torch_version is None:
        return verdict(Status.WARN,
                       f"torch >= 2.6 would refuse it by default ({first_reason}); torch is not installed here to tell "
                       "which applies.", evidence=evidence,
                       cause="torch 2.6 changed torch.load's default to weights_only=True.", fix=fix)
    if not version_at_least(torch_version, "2.6"):
        return verdict(Status.WARN,
                       f"Loads with torch {torch_version}, but torch >= 2.6 refuses it by default: {first_reason}.",
                       evidence=evidence,
                       cause="torch 2.6 changed torch.load's default to weights_only=True; upgrading torch breaks ldm's "
                             "`torch.load(ckpt, map_location='cpu')`.", fix=fix)
    if forced:
        return verdict(Status.INFO,
                       f"torch {torch_version} would refuse it ({first_reason}), but TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is "
                       "set, so torch.load unpickles it without restrictions.", evidence=evidence, fix=fix)
    return verdict(Status.FAIL,
        f"torch {torch_version} refuses it: ldm's `torch.load(ckpt, map_location='cpu')` raises "
        f"\"Weights only load failed ... {first_reason}\".",
        evidence=evidence,
        cause="torch >= 2.6 loads with weights_only=True unless told otherwise; this checkpoint pickles "
              + (", ".join(globals_[:4]) if globals_ else "constructs") + ", which that loader does not allow.",
        fix=fix, docs=["https://pytorch.org/docs/stable/notes/serialization.html#weights-only"])
