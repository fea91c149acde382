"""The cache.* and tokenizer.functional rules: pure functions from facts to findings.

The verdict is about loading, not about the network: a missing file is blocking only when the
loaders cannot fetch it (offline mode, Hub unreachable, refused), and a dead network is not a
failure when everything is cached. Each failing finding carries the command that fixes it
(`fixes`).
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

from ...clip_files import PROBE_IDS, PROBE_TEXT, VOCAB_SIZE
from ...findings import Finding, Status, verdict
from ...probes.cache.facts import OfflineState
from ...probes.hub.facts import HubFacts
from ...probes.needed_models import NeededModels
from ...util import fmt_bytes, version_at_least
from .fixes import (Versions, download_cli, download_command, download_size, fenced, files_to_fetch, model_fix,
                    network_ok_for, offline_var, shell_quote, why_unreachable)

HUB_DOCS = "https://huggingface.co/docs/huggingface_hub/guides/manage-cache"
OFFLINE_DOCS = "https://huggingface.co/docs/transformers/installation#offline-mode"
DISK_MARGIN = 100 * 1024 * 1024  # bytes kept free beyond the download
EVIDENCE_FILE_KEYS = ("state", "path", "size", "problem", "cached_endpoint")
TOKENIZER_EVIDENCE_KEYS = (
    "ref", "forced_offline", "timeout", "returncode", "timed_out", "transformers", "class", "vocab_size", "len",
    "ids", "error_type", "error", "seconds", "stderr_tail", "cwd", "name_or_path")


def rule_needed_models(needed_models: NeededModels) -> Finding:
    models = needed_models.models
    listing = [{"ref": m.ref, "kind": m.kind, "loader": m.loader, "via": m.via,
                "files": [n for g in m.groups for n in g["names"]], "path": m.path} for m in models]
    evidence = {"config": needed_models.config, "parser": needed_models.parser, "models": listing}
    names = ", ".join(f"{m.ref} ({m.loader}, {m.via})" for m in models)
    if needed_models.config_error:
        return verdict(Status.WARN, f"The config {needed_models.config} could not be read ({needed_models.config_error}); assumed {names}.",
                       evidence=evidence, cause="The yaml is unreadable or not valid YAML.",
                       fix=f"Check the file: `python -c \"import yaml,sys; yaml.safe_load(open(sys.argv[1]))\" {shell_quote(needed_models.config)}`")
    if not models:
        return verdict(Status.OK, f"The config {needed_models.config} needs no Hugging Face model.",
                       evidence=evidence)
    if needed_models.assumed_default:
        return verdict(Status.INFO, f"No config given: assuming {names}. Pass --config to check what your yaml really loads.",
                       evidence=evidence)
    return verdict(Status.INFO, f"Needed: {names}.", evidence=evidence)


def rule_location(locations: Dict[str, Any]) -> Finding:
    loader_dir, hub_dir = locations["transformers"], locations["hub"]
    evidence = {
        "transformers_cache": loader_dir["path"], "transformers_decided_by": loader_dir["decided_by"], "layout": loader_dir["layout"],
        "rule": loader_dir["rule"], "hub_cache": hub_dir["path"], "hub_decided_by": hub_dir["decided_by"],
        "hub_source": hub_dir.get("source"), "variables_set": locations.get("set_vars", {}),
        "transformers": locations.get("transformers_version"), "huggingface_hub": locations.get("huggingface_hub_version"),
    }
    if hub_dir.get("mismatch"):
        evidence["computed_hub_cache"] = hub_dir["mismatch"]
    summary = f"transformers reads {loader_dir['path']} ({loader_dir['layout']} layout, decided by {loader_dir['decided_by']})"
    if os.path.normpath(loader_dir["path"]) != os.path.normpath(hub_dir["path"]):
        summary += f"; huggingface_hub (hf download, open_clip) uses {hub_dir['path']}"
    if loader_dir["ignored"]:
        ignored = ", ".join(f"{var}={locations['set_vars'].get(var, '')}" for var in loader_dir["ignored"])
        version = locations.get("transformers_version") or "this version"
        return verdict(Status.WARN, summary + f". Set but ignored by transformers {version}: {ignored}.",
                       evidence=evidence,
                       cause=f"{loader_dir['rule'].rstrip('.')}. Files placed in the directory named by an ignored variable are "
                             "invisible to from_pretrained.",
                       fix=_location_fix(loader_dir, locations), docs=[HUB_DOCS])
    if hub_dir.get("mismatch"):
        return verdict(Status.WARN, summary + f" (huggingface_hub computes {hub_dir['path']}, the rules here gave {hub_dir['mismatch']}).",
                       evidence=evidence, cause="The installed huggingface_hub resolves its variables differently.",
                       fix="Set HF_HUB_CACHE explicitly to the directory you mean.")
    return verdict(Status.OK, summary + ".", evidence=evidence)


def _location_fix(loader_dir: Dict[str, Any], locations: Dict[str, Any]) -> str:
    values = locations.get("set_vars", {})
    fixes = []
    for var in loader_dir["ignored"]:
        value = values.get(var)
        if loader_dir["layout"] == "hub" and "HF_HUB_CACHE" not in loader_dir["ignored"] and var in (
                "TRANSFORMERS_CACHE", "PYTORCH_TRANSFORMERS_CACHE", "PYTORCH_PRETRAINED_BERT_CACHE"):
            fixes.append(f"`export HF_HUB_CACHE={shell_quote(value)}` (and `unset {var}`)")
        elif var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE") and loader_dir["layout"] == "hub":
            fixes.append(f"`export TRANSFORMERS_CACHE={shell_quote(value)}`")
        elif loader_dir["layout"] == "legacy":
            fixes.append(f"`export TRANSFORMERS_CACHE={shell_quote(value)}` - note that transformers < 4.22 keeps a flat cache, "
                         "not the models--org--name layout; a local `version:` directory works with every version")
        else:
            fixes.append(f"`unset {var}`")
    return "; ".join(fixes)


def rule_offline_flag(offline: OfflineState, incomplete: List[str], versions: Versions,
                      hub: Optional[HubFacts]) -> Finding:
    evidence = {"HF_HUB_OFFLINE": offline.hf_hub_offline, "TRANSFORMERS_OFFLINE": offline.transformers_offline,
                "effective": offline.effective, "honoured": offline.honoured, "notes": offline.notes,
                "not_cached": incomplete}
    var = offline_var(versions)
    transformers_version = versions.get("transformers")
    if offline.effective and incomplete:
        degrade = ("from_pretrained raises OSError" if not transformers_version or
                   version_at_least(transformers_version, "5") is False else
                   "CLIPTokenizer returns a 2-token tokenizer without raising and CLIPTextModel raises OSError")
        return verdict(Status.FAIL, f"Offline mode is on, but {', '.join(incomplete)} is not fully cached: {degrade}.",
                       evidence=evidence,
                       cause="With offline mode the loaders only read the cache; nothing is downloaded.",
                       fix="Download the files first (see cache.model-missing for the exact command), or allow "
                           "downloads for the first start: `unset HF_HUB_OFFLINE TRANSFORMERS_OFFLINE`.",
                       docs=[OFFLINE_DOCS])
    if offline.notes and not offline.effective:
        return verdict(Status.WARN, "Offline variables are set but not honoured: " + "; ".join(offline.notes) + ".",
                       evidence=evidence, cause="Each transformers/huggingface_hub version reads its own variables.",
                       fix=f"`export {var}`" + (" and `unset HF_HUB_OFFLINE`" if offline.hf_hub_offline and
                                                  var != "HF_HUB_OFFLINE=1" else "")
                       + ("; `unset HF_HUB_OFFLINE` (a value like 0 hides TRANSFORMERS_OFFLINE)"
                          if var == "HF_HUB_OFFLINE=1" else ""),
                       docs=[OFFLINE_DOCS])
    if offline.effective:
        summary = "Offline mode is on and every needed file is cached: no start-up waits on the Hub."
        if offline.notes:
            summary += " Note: " + "; ".join(offline.notes) + "."
        return verdict(Status.OK, summary, evidence=evidence)
    if incomplete:
        return verdict(Status.OK, "Offline mode is off, so missing files can be downloaded at start-up (cache.model-missing "
                       "says whether that will work).", evidence=evidence)
    down = hub is not None and hub.skipped is None and not hub.reachable
    if down:
        return verdict(Status.WARN, "Everything needed is cached but offline mode is off and the Hub is unreachable: each "
                       "from_pretrained still asks the Hub first and waits for the error (up to "
                       "HF_HUB_ETAG_TIMEOUT, 10 s, per file when packets are dropped).",
                       evidence=evidence, cause="huggingface_hub checks for newer revisions before using the cache.",
                       fix=f"Start with `{var}`.", docs=[OFFLINE_DOCS])
    return verdict(Status.INFO, f"Everything needed is cached; `{var}` would skip the Hub round trips at start-up and keep a "
                   "network outage from delaying it.", evidence=evidence, fix=f"`export {var}`")


def rule_model_missing(model: Dict[str, Any], resolution: Dict[str, Any], offline: OfflineState,
                       hub: HubFacts, versions: Versions, locations: Dict[str, Any],
                       config: Optional[str], cwd: str, code_root: Optional[str]) -> Finding:
    code, title = "cache.model-missing", f"Files of {model['ref']} on this machine"
    evidence: Dict[str, Any] = {
        "model": model["ref"], "kind": model["kind"], "loader": model["loader"], "via": model["via"],
        "where": resolution.get("where"), "layout": resolution.get("layout"),
        "files": {name: {key: value for key, value in state.items() if key in EVIDENCE_FILE_KEYS}
                  for name, state in resolution.get("files", {}).items()},
        "missing": resolution.get("missing", []),
    }
    if model["kind"] == "unknown":
        return Finding(code, Status.WARN, title, f"Cannot tell which files {model['ref']} needs: {model.get('note')}.",
                       evidence=evidence, blocking=False,
                       fix="Run the model once on a machine with network and check `hf cache ls`, or pass the "
                           "weights file path as `version:`.")
    hub_files = hub.files_of(model["ref"])
    if resolution["complete"] or (not resolution["missing"]):
        where = model["path"] if model["kind"] == "local" else resolution["where"]
        corrupt = f" ({', '.join(resolution['corrupt'])} present but unreadable: see cache.incomplete)" \
            if resolution["corrupt"] else ""
        return Finding(code, Status.OK, title,
                       f"Every file {model['loader']} needs for {model['ref']} resolves offline from {where}{corrupt}.",
                       evidence=evidence)
    missing = ", ".join(resolution["missing"])
    are = "are" if len(resolution["missing"]) > 1 else "is"
    other = [state for state in resolution["files"].values() if state.get("state") == "other-endpoint"]
    net_ok = network_ok_for(hub, model, resolution)
    fix = model_fix(model, resolution, versions, hub_files, locations, bool(net_ok), config, cwd, code_root,
                    offline_on=offline.effective)
    if model["kind"] == "local":
        shadow = (f" `{model['ref']}` is not read from the cache because a directory of that name exists in the "
                  f"working directory ({model['path']}); transformers treats it as a local path."
                  if model.get("shadowed") else "")
        return Finding(code, Status.FAIL, title,
                       f"{model['path']} lacks {missing}: {model['loader']} will fail to load it.{shadow}",
                       evidence=evidence,
                       cause="A local model directory must hold every file the loader reads; transformers never "
                             "falls back to the cache or the Hub for a path.",
                       fix=fix + ("\nOr rename the directory so the id resolves through the cache: "
                                  f"`mv {shell_quote(model['path'])} {shell_quote(model['path'] + '.bak')}`" if model.get("shadowed") else ""))
    evidence["download_files"] = files_to_fetch(model, hub_files)
    if other:
        evidence["cached_via_endpoint"] = other[0].get("cached_endpoint")
    if offline.effective:
        return Finding(code, Status.FAIL, title,
                       f"{missing} of {model['ref']} {are} not in {resolution['where']} and offline mode is on: "
                       "loading will fail.",
                       evidence=evidence, cause="Offline mode (cache.offline-flag) forbids the download.", fix=fix,
                       docs=[HUB_DOCS])
    if net_ok:
        size = download_size(model, hub_files, resolution)
        return Finding(code, Status.WARN, title,
                       f"{missing} of {model['ref']} {are} not cached; the first start downloads "
                       f"({fmt_bytes(size) if size else 'size unknown'}) from {hub.endpoint.display if hub.endpoint else None}.",
                       evidence=evidence, blocking=False,
                       cause="Nothing is wrong yet, but the start-up depends on the Hub being reachable then.",
                       fix=fix, docs=[HUB_DOCS])
    why = why_unreachable(hub)
    cause = "A file the loader reads is missing from the cache, and the download that would fetch it fails."
    if other:
        cause += (f" It is cached, but through the endpoint {other[0]['cached_endpoint']}: transformers "
                  f"{versions.get('transformers')} keys its flat cache on the full URL, so a different HF_ENDPOINT "
                  "cannot see it.")
        fix = ("Use the endpoint the files were cached through:\n"
               f"{fenced('export HF_ENDPOINT=' + shell_quote(other[0]['cached_endpoint']))}\nOr fetch them again:\n"
               + fix)
    return Finding(code, Status.FAIL, title,
                   f"{missing} of {model['ref']} {are} not in {resolution['where']} and the Hub cannot be reached "
                   f"({why}): {model['loader']} will fail to load.",
                   evidence=evidence, cause=cause, fix=fix, docs=[HUB_DOCS])


def rule_incomplete(scan: Dict[str, Any], models: List[Dict[str, Any]], resolutions: Dict[str, Dict[str, Any]],
                    can_redownload: Dict[str, bool], versions: Versions) -> Finding:
    needed_repos = {model["repo_id"]: model for model in models if model.get("repo_id")}
    corrupt = []
    for model in models:
        resolution = resolutions.get(model["ref"]) or {}
        for name, state in resolution.get("files", {}).items():
            if state["state"] in ("corrupt", "broken-link"):
                corrupt.append({"model": model["ref"], "file": name, "state": state["state"], "path": state.get("path"),
                                "problem": state.get("problem") or "symlink to a missing blob"})
    incomplete = scan.get("incomplete", [])
    warnings = scan.get("warnings", [])
    relevant_incomplete = [entry for entry in incomplete if entry.get("repo") in needed_repos or entry.get("repo") is None]
    relevant_warnings = [warning for warning in warnings if any(repo.replace("/", "--") in warning
                                                                  for repo in needed_repos)]
    evidence = {"cache": scan.get("path"), "tool": scan.get("tool"), "corrupt": corrupt,
                "incomplete": incomplete, "warnings": warnings, "scan_error": scan.get("error")}
    if not scan.get("exists"):
        return verdict(Status.OK, f"The cache directory {scan.get('path')} does not exist yet: nothing "
                                               "half-downloaded.", evidence=evidence)
    commands, by_hand = [], []
    for broken in corrupt:
        repo = next((model.get("repo_id") for model in models if model["ref"] == broken["model"]), None)
        if repo:
            commands.append(download_command(repo, [broken["file"]], versions, cache_dir=None, force=True))
        elif broken.get("path"):
            by_hand.append(f"Replace {broken['path']} with an intact copy.")
    for partial in incomplete:
        commands.append(f"rm -f {shell_quote(partial['path'])}")
    if any("broken symlink" in warning or "missing commit" in warning for warning in warnings) and download_cli(versions) == "hf download":
        commands.append("hf cache ls --show-warnings  # then re-download or `hf cache rm` the repos it lists")
    fixes = ([_incomplete_intro(bool(corrupt), bool(incomplete)) + "\n" + fenced("\n".join(commands))]
             if commands else []) + by_hand
    if corrupt:
        blocking = any(not can_redownload.get(broken["model"], False) for broken in corrupt)
        listing = "; ".join(f"{broken['model']}/{broken['file']}: {broken['problem']}" for broken in corrupt)
        return verdict(Status.FAIL if blocking else Status.WARN, f"Cached files the loader will read are broken: {listing}.",
                       evidence=evidence, blocking=blocking,
                       cause="An interrupted or proxied download left a truncated/HTML file, or a blob was deleted "
                             "under its snapshot link; huggingface_hub checks structure, not "
                             "content.",
                       fix="\n".join(fixes), docs=[HUB_DOCS])
    if relevant_incomplete or relevant_warnings:
        return verdict(Status.WARN, f"{len(relevant_incomplete)} interrupted download(s) and {len(relevant_warnings)} scan "
                       "warning(s) in repos this deployment needs.",
                       evidence=evidence, blocking=False,
                       cause="A download was interrupted (Ctrl-C, disk full, network cut); the next online start "
                             "downloads the file again, an offline start cannot.",
                       fix="\n".join(fixes), docs=[HUB_DOCS])
    if incomplete or warnings:
        return verdict(Status.INFO, f"{len(incomplete)} interrupted download(s) and {len(warnings)} scan warning(s), none in a "
                       "repo this deployment needs.", evidence=evidence, fix="\n".join(fixes))
    if scan.get("error"):
        return verdict(Status.WARN, f"The cache could not be scanned: {scan['error']}.", evidence=evidence,
                       blocking=False)
    return verdict(Status.OK, f"No interrupted download or broken entry in {scan.get('path')}.",
                   evidence=evidence)


def _incomplete_intro(broken: bool, partial: bool) -> str:
    what = [part for part, wanted in (("download the broken files again", broken),
                                      ("remove the interrupted downloads", partial)) if wanted] or ["check the cache"]
    text = " and ".join(what)
    return text[0].upper() + text[1:] + ":"


def rule_not_writable(writable: Dict[str, Dict[str, Any]], to_download: List[str]) -> Finding:
    evidence = {"paths": writable, "to_download": to_download}
    bad = {path: facts for path, facts in writable.items() if not facts["writable"]}
    if not bad:
        return verdict(Status.OK, "Writable: " + ", ".join(writable) + ".", evidence=evidence)
    path, facts = next(iter(bad.items()))
    why = facts.get("error") or "not writable"
    if not to_download:
        return verdict(Status.INFO, f"{path} is not writable ({why}), but everything needed is cached: loading only reads it.",
                       evidence=evidence,
                       fix="Nothing to do for this deployment; downloads of other models would need "
                           "`export HF_HOME=<writable directory>`.")
    return verdict(Status.FAIL, f"{path} is not writable ({why}) and {', '.join(to_download)} must still be downloaded into it.",
                   evidence=evidence,
                   cause="The download needs to create lock files and blobs in the cache; on a read-only cache it "
                         "fails with `OSError: [Errno 30] Read-only file system: '...lock'`.",
                   fix=f"Use a writable cache: `export HF_HOME=$HOME/.cache/huggingface` (then download there), or "
                       f"make it writable: `sudo chown -R $(id -u):$(id -g) {shell_quote(facts['checked'])}`; "
                       "or download on a machine with write access and mount the cache read-only with "
                       "`HF_HUB_OFFLINE=1`.",
                   docs=[HUB_DOCS])


def rule_disk_space(free: Dict[str, Optional[int]], needs: Dict[str, Optional[int]]) -> Finding:
    """`needs`: cache path -> bytes to download there (None when a size is unknown)."""
    evidence = {"free": {path: fmt_bytes(size) for path, size in free.items()},
                "to_download": {path: fmt_bytes(size) if size is not None else "unknown" for path, size in needs.items()}}
    todo = {path: need for path, need in needs.items() if need != 0}
    if not todo:
        return verdict(Status.OK, "Nothing to download; "
                       + ", ".join(f"{fmt_bytes(size)} free at {path}" for path, size in free.items()) + ".",
                       evidence=evidence)
    for path, need in todo.items():
        have = free.get(path)
        if need is None or have is None:
            return verdict(Status.INFO, f"{fmt_bytes(have)} free at {path}; the download size is unknown (the Hub did not answer).",
                           evidence=evidence)
        if have < need:
            return verdict(Status.FAIL, f"{fmt_bytes(have)} free at {path}, but the download needs {fmt_bytes(need)}.",
                           evidence=evidence, cause="The download fails when the disk fills up, leaving an "
                                                    "*.incomplete blob behind.",
                           fix="Free space (`hf cache ls` / `hf cache rm` old models), or point the cache at a larger "
                               "disk: `export HF_HOME=/path/on/bigger/disk`.", docs=[HUB_DOCS])
        if have < need * 1.1 + DISK_MARGIN:
            return verdict(Status.WARN, f"Only {fmt_bytes(have)} free at {path} for a {fmt_bytes(need)} download.",
                           evidence=evidence, blocking=False, fix="Free some space before the first start.")
    return verdict(Status.OK, "; ".join(f"{fmt_bytes(free.get(path))} free at {path} for {fmt_bytes(need)} "
                                                     "to download" for path, need in todo.items()) + ".", evidence=evidence)


def rule_shadowing(shadows: List[Dict[str, Any]], versions: Versions) -> Finding:
    evidence = {"found": shadows}
    if not shadows:
        return verdict(Status.OK, "No directory named like a needed model id in the working directory "
                                               "or the code root.", evidence=evidence)
    transformers_version = versions.get("transformers")
    effect = ("CLIPTokenizer silently returns a 2-token tokenizer"
              if transformers_version and version_at_least(transformers_version, "5")
              else "from_pretrained raises \"Can't load tokenizer ... make sure you don't have a local directory "
                   "with the same name\"")
    for shadow in shadows:
        if shadow["base"] == "working directory" and shadow["is_dir"] and not shadow["complete"]:
            return verdict(Status.FAIL, f"./{shadow['model']} exists in the working directory ({shadow['path']}) and lacks "
                           f"{', '.join(shadow['missing'])}: transformers loads it instead of the cache or the Hub, and "
                           f"{effect}.",
                           evidence=evidence,
                           cause="from_pretrained checks `os.path.isdir(id)` relative to the working directory "
                                 "before it looks at the cache.",
                           fix=f"`mv {shell_quote(shadow['path'])} {shell_quote(shadow['path'] + '.bak')}` (or remove it), or make it complete: "
                               + download_command(shadow["model"], shadow["missing"], versions, local_dir=shadow["path"]))
    for shadow in shadows:
        if shadow["base"] == "code root" and shadow["is_dir"] and not shadow["complete"]:
            return verdict(Status.WARN, f"{shadow['path']} is named like {shadow['model']} and lacks {', '.join(shadow['missing'])}: a start from "
                           f"the code root ({shadow['base_path']}) will load it instead of the cache, and {effect}.",
                           evidence=evidence, blocking=False,
                           cause="from_pretrained treats the id as a path relative to the working directory.",
                           fix=f"`mv {shell_quote(shadow['path'])} {shell_quote(shadow['path'] + '.bak')}`")
    shadow = shadows[0]
    return verdict(Status.INFO, f"{shadow['path']} is named like {shadow['model']} and holds every needed file: transformers uses it instead "
                   "of the cache when started from " + shadow["base_path"] + ".",
                   evidence=evidence,
                   fix="Fine as it is; to make it explicit, put the absolute path in the yaml `version:`.")


def rule_tokenizer_functional(facts: Optional[Dict[str, Any]], model: Optional[Dict[str, Any]], fix: str,
                              versions: Versions) -> Finding:
    if model is None:
        return verdict(Status.SKIP, "No needed model is a CLIP tokenizer loaded by transformers (e.g. SD 2.x uses "
                                 "open_clip's bundled tokenizer).")
    if not versions.get("transformers"):
        return verdict(Status.SKIP, "transformers is not installed (see env.transformers-missing).")
    assert facts is not None
    evidence = {key: value for key, value in facts.items() if key in TOKENIZER_EVIDENCE_KEYS}
    evidence["expected"] = {"vocab_size": VOCAB_SIZE, "ids": PROBE_IDS, "text": PROBE_TEXT}
    how = " (run offline because the Hub is unreachable)" if facts.get("forced_offline") else ""
    ref = model["ref"]
    if facts.get("timed_out"):
        return verdict(Status.FAIL, f"CLIPTokenizer.from_pretrained({ref!r}) did not finish within {facts['timeout']:g} s{how}.",
                       evidence=evidence,
                       cause="huggingface_hub retries an unreachable Hub with back-off for minutes.",
                       fix=fix)
    if not facts.get("ran"):
        return verdict(Status.ERROR, f"The tokenizer check could not run: {facts.get('error')}.",
                       evidence=evidence, blocking=False)
    if facts.get("error_type"):
        return verdict(Status.FAIL, f"CLIPTokenizer.from_pretrained({ref!r}) raised {facts['error_type']}{how}: "
                       f"{(facts.get('error') or '').splitlines()[0][:300]}",
                       evidence=evidence,
                       cause="The tokenizer files do not resolve (see cache.model-missing, hub.*, cache.shadowing-dir).",
                       fix=fix)
    encodes_like_clip = facts.get("vocab_size") == VOCAB_SIZE and facts.get("ids") == PROBE_IDS
    if not encodes_like_clip:
        return verdict(Status.FAIL, f"CLIPTokenizer.from_pretrained({ref!r}) returned a tokenizer with vocabulary "
                       f"{facts.get('vocab_size')} (expected {VOCAB_SIZE}) that encodes {PROBE_TEXT!r} as "
                       f"{facts.get('ids')} (expected {PROBE_IDS}){how}: prompts would be ignored.",
                       evidence=evidence,
                       cause="transformers 5 builds a placeholder 2-token tokenizer instead of raising when vocab.json "
                             "and merges.txt do not resolve; or the files are not CLIP's.",
                       fix=fix)
    return verdict(Status.OK, f"{facts.get('class')} from {ref!r}: vocabulary {facts['vocab_size']}, {PROBE_TEXT!r} -> "
                   f"{facts['ids']}{how}.", evidence=evidence)
