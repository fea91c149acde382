"""Will every Hugging Face model the config needs load on this machine? (cache.* and tokenizer.functional)

The verdict is about loading, not about the network: a missing file is blocking only when the
loaders cannot fetch it (offline mode, Hub unreachable, refused), and a dead network is not a
failure when everything is cached. Each failing finding carries the command that fixes it: the
`hf download` line with only the files the text encoder needs, the offline variable this
transformers honours, or the yaml change to a local `version:` directory (the seed's fix).
"""

from __future__ import annotations

import os
import shlex
from typing import Any, Dict, List, Mapping, Optional

from ..clip_files import PROBE_IDS, PROBE_TEXT, VOCAB_SIZE
from ..context import DEFAULT_CLIP_ID
from ..findings import Finding, Status, skip
from ..probes.cache import probe_cache
from ..probes.environment import installed_versions
from ..probes.hub import probe_hub
from ..probes.needed_models import KNOWN_SIZES, probe_needed_models
from ..probes.tokenizer import run_tokenizer_check
from ..registry import Check
from ..util import fmt_bytes, version_at_least

Versions = Mapping[str, Optional[str]]
HUB_DOCS = "https://huggingface.co/docs/huggingface_hub/guides/manage-cache"
OFFLINE_DOCS = "https://huggingface.co/docs/transformers/installation#offline-mode"
DISK_MARGIN = 100 * 1024 * 1024  # bytes kept free beyond the download


# -- fix commands and network verdicts (also used by rules/hub.py) --------------------------------------------------

def q(text: str) -> str:
    return shlex.quote(str(text))


def offline_var(versions: Versions) -> str:
    """The variable that puts the installed transformers in offline mode."""
    tv = versions.get("transformers")
    if tv and version_at_least(tv, "4.22") is False:
        return "TRANSFORMERS_OFFLINE=1"
    return "HF_HUB_OFFLINE=1"


def download_cli(versions: Versions) -> Optional[str]:
    hub = versions.get("huggingface_hub")
    if hub and version_at_least(hub, "0.34"):
        return "hf download"
    if hub and version_at_least(hub, "0.17"):
        return "huggingface-cli download"
    return None


def files_to_fetch(model: Dict[str, Any], hub_files: List[Dict[str, Any]], resolution: Optional[Dict[str, Any]] = None,
                   only_missing: bool = False) -> List[str]:
    """The exact files to download: the preferred name of every group (one weights format only),
    minus files the Hub says do not exist, minus what is cached when `only_missing`."""
    absent = {f["file"] for f in hub_files if f.get("model") == model["ref"] and f.get("outcome") == "file-not-found"}
    satisfied = set()
    if only_missing and resolution:
        satisfied = {g["purpose"] for g in resolution["groups"] if g["satisfied"]}
    names = []
    for group in model["groups"]:
        if group["purpose"] in satisfied:
            continue
        candidates = [n for n in group["names"] if n not in absent]
        if candidates:
            names.append(candidates[0])
    return names


def local_dir_for(model: Dict[str, Any], cwd: str, code_root: Optional[str]) -> str:
    base = code_root or cwd
    name = (model.get("repo_id") or model["ref"]).replace("/", "--")
    return os.path.join(base, "models", name)


def download_command(repo_id: str, files: List[str], versions: Versions, cache_dir: Optional[str] = None,
                     local_dir: Optional[str] = None, force: bool = False, online: bool = False) -> str:
    """One shell command that downloads `files` of `repo_id`. With a huggingface_hub too old for a
    download CLI (the original SD environment has 0.10), a throw-away venv does it: upgrading
    huggingface_hub in place would break transformers 4.19."""
    cli = download_cli(versions)
    args = [repo_id] + files
    if local_dir:
        args += ["--local-dir", local_dir]
    elif cache_dir:
        args += ["--cache-dir", cache_dir]
    if force:
        args.append("--force-download")
    tail = " ".join(q(a) for a in args)
    # `hf download` honours HF_HUB_OFFLINE too: lift it for this one command.
    prefix = "HF_HUB_OFFLINE=0 " if online else ""
    if cli:
        return f"{prefix}{cli} {tail}"
    return (f"python3 -m venv /tmp/hf-download && /tmp/hf-download/bin/pip install -q huggingface_hub "
            f"&& {prefix}/tmp/hf-download/bin/hf download {tail}")


def yaml_change(model: Dict[str, Any], config: Optional[str], local_dir: str) -> str:
    key = model.get("config_key") or "model.params.cond_stage_config.params.version"
    where = config or "your inference yaml (e.g. configs/stable-diffusion/v1-inference.yaml)"
    parts = key.split(".")
    lines = []
    for depth, part in enumerate(parts[:-1]):
        lines.append("  " * depth + part + ":")
    lines.append("  " * (len(parts) - 1) + f"{parts[-1]}: {local_dir}")
    return f"in {where} set `{key}: {local_dir}`:\n" + "\n".join(lines)


def model_fix(model: Dict[str, Any], resolution: Dict[str, Any], versions: Versions, hub_files: List[Dict[str, Any]],
              locations: Dict[str, Any], network_ok: bool, config: Optional[str], cwd: str,
              code_root: Optional[str], offline_on: bool = False) -> str:
    """Commands that make `model` load: fetch into the cache the loader reads (when this machine can
    reach the Hub), or fetch into a directory and point the config at it (air-gapped machines)."""
    files = files_to_fetch(model, hub_files)
    steps = []
    if model["kind"] == "local":
        target = model["path"]
        repo = model.get("repo_id") or _default_repo_for(model)
        if repo:
            steps.append(f"fill the directory: {download_command(repo, files, versions, local_dir=target)}")
        else:
            steps.append(f"put the missing files into {target}")
        return "\n".join(steps)
    repo = model["repo_id"]
    layout = resolution.get("layout")
    cache_dir = resolution.get("where")
    hub_default = locations["hub"]["path"]
    local_dir = local_dir_for(model, cwd, code_root)
    fetch_here = None
    if layout == "hub":
        fetch_here = download_command(repo, files, versions,
                                      cache_dir=cache_dir if cache_dir and os.path.normpath(cache_dir) !=
                                      os.path.normpath(hub_default) else None, online=offline_on)
    elif layout == "legacy":
        # The flat cache can only be filled by transformers itself (file names hash the URL and ETag).
        fetch_here = (("TRANSFORMERS_OFFLINE=0 " if offline_on else "") + "python -c " +
                      q("from transformers import CLIPTokenizer, CLIPTextModel; "
                        f"CLIPTokenizer.from_pretrained('{repo}'); CLIPTextModel.from_pretrained('{repo}')")
                      if model.get("tokenizer_check") else None)
    offline = offline_var(versions)
    local_steps = (f"{download_command(repo, files, versions, local_dir=local_dir)} (on any machine with network; "
                   f"copy the folder here), then {yaml_change(model, config, local_dir)}")
    if model.get("loader") == "--model-id":
        local_steps = (f"{download_command(repo, files, versions, local_dir=local_dir)} (on any machine with network; "
                       f"copy the folder here), then load `{local_dir}` instead of `{repo}` in your code")
    if model.get("cache_user") == "huggingface_hub" and model.get("openclip"):
        weights = files[0] if files else "open_clip_pytorch_model.bin"
        local_steps = (f"{download_command(repo, [weights], versions, local_dir=local_dir)}, then set "
                       f"`{model.get('config_key')}: {os.path.join(local_dir, weights)}` in "
                       f"{config or 'the yaml'} (open_clip accepts a file path as `pretrained`)")
    if fetch_here and network_ok:
        steps.append(f"1. {fetch_here}")
        steps.append(f"2. then start with `{offline}` so nothing waits for the Hub again")
        steps.append(f"Air-gapped alternative: {local_steps}")
    elif fetch_here:
        steps.append(f"1. {local_steps}")
        steps.append(f"2. start with `{offline}`")
        steps.append(f"Or, once this machine reaches the Hub: {fetch_here}")
    else:
        steps.append(f"1. {local_steps}")
        steps.append(f"2. start with `{offline}`")
    return "\n".join(steps)


def _default_repo_for(model: Dict[str, Any]) -> Optional[str]:
    from ..context import DEFAULT_CLIP_ID

    return DEFAULT_CLIP_ID if model.get("tokenizer_check") == "clip" else None


def hub_files_for(hub: Dict[str, Any], ref: str) -> List[Dict[str, Any]]:
    return [f for f in hub.get("files", []) if f.get("model") == ref]


def network_ok_for(hub: Dict[str, Any], model: Dict[str, Any], resolution: Dict[str, Any]) -> Optional[bool]:
    """Whether the Hub answers for every missing required file of `model` (None: not probed)."""
    if "skipped" in hub:
        return None
    files = {f["file"]: f for f in hub_files_for(hub, model["ref"])}
    if not files:
        return False
    for group in resolution["groups"]:
        if not group["required"] or group["satisfied"]:
            continue
        if not any(files.get(n, {}).get("outcome") in ("ok", "redirect") for n in group["names"]):
            return False
    return True


def why_unreachable(hub: Dict[str, Any]) -> str:
    """One phrase naming the failing step of the network probe, with its finding code."""
    if "skipped" in hub:
        return hub["skipped"]
    endpoint = hub.get("endpoint", {})
    if not endpoint.get("valid"):
        return f"HF_ENDPOINT is not a usable URL (hub.endpoint: {endpoint.get('error')})"
    proxy = hub.get("proxy", {})
    for step, code in (("dns", "hub.dns"), ("connect", "hub.connect"), ("tunnel", "hub.proxy"), ("tls", "hub.tls")):
        facts = hub.get(step, {})
        if facts.get("status") in ("fail", "timeout"):
            if facts.get("target") == "proxy" or step == "tunnel":
                return (f"the proxy {proxy.get('display')} from {proxy.get('variable')} fails "
                        f"(hub.proxy: {facts.get('error')})")
            return f"{step} failed for {endpoint.get('host')} ({code}: {facts.get('error')})"
    bad = [f for f in hub.get("files", []) if f.get("required") and f.get("outcome") not in ("ok", "redirect")]
    if bad:
        f = bad[0]
        if f.get("status_code"):
            return f"the Hub answered HTTP {f['status_code']} for {f['file']} (hub.http-status: {f['outcome']})"
        return f"no usable answer for {f['file']}: {f.get('error') or f['outcome']} (hub.http-status: {f['outcome']})"
    if proxy.get("variable") and not proxy.get("bypassed_by"):
        return f"through the proxy in {proxy['variable']}"
    return "the Hub did not answer"


# -- rules ---------------------------------------------------------------------------------------

def rule_needed_models(needed: Dict[str, Any]) -> Finding:
    code, title = "cache.needed-models", "Hugging Face models the deployment needs"
    models = needed["models"]
    listing = [{"ref": m["ref"], "kind": m["kind"], "loader": m["loader"], "via": m["via"],
                "files": [n for g in m["groups"] for n in g["names"]], "path": m.get("path")} for m in models]
    evidence = {"config": needed.get("config"), "parser": needed.get("parser"), "models": listing}
    names = ", ".join(f"{m['ref']} ({m['loader']}, {m['via']})" for m in models)
    if needed.get("config_error"):
        return Finding(code, Status.WARN, title,
                       f"The config {needed['config']} could not be read ({needed['config_error']}); assumed {names}.",
                       evidence=evidence, cause="The yaml is unreadable or not valid YAML.",
                       fix=f"Check the file: `python -c \"import yaml,sys; yaml.safe_load(open(sys.argv[1]))\" {q(needed['config'])}`")
    if not models:
        return Finding(code, Status.OK, title, f"The config {needed['config']} needs no Hugging Face model.",
                       evidence=evidence)
    if needed.get("assumed_default"):
        return Finding(code, Status.INFO, title,
                       f"No config given: assuming {names}. Pass --config to check what your yaml really loads.",
                       evidence=evidence)
    return Finding(code, Status.INFO, title, f"Needed: {names}.", evidence=evidence)


def rule_location(locations: Dict[str, Any]) -> Finding:
    code, title = "cache.location", "Hugging Face cache location"
    tr, hub = locations["transformers"], locations["hub"]
    evidence = {
        "transformers_cache": tr["path"], "transformers_decided_by": tr["decided_by"], "layout": tr["layout"],
        "rule": tr["rule"], "hub_cache": hub["path"], "hub_decided_by": hub["decided_by"],
        "hub_source": hub.get("source"), "variables_set": locations.get("set_vars", {}),
        "transformers": locations.get("transformers_version"), "huggingface_hub": locations.get("huggingface_hub_version"),
    }
    if hub.get("mismatch"):
        evidence["computed_hub_cache"] = hub["mismatch"]
    summary = f"transformers reads {tr['path']} ({tr['layout']} layout, decided by {tr['decided_by']})"
    if os.path.normpath(tr["path"]) != os.path.normpath(hub["path"]):
        summary += f"; huggingface_hub (hf download, open_clip) uses {hub['path']}"
    if tr["ignored"]:
        ignored = ", ".join(f"{v}={locations['set_vars'].get(v, '')}" for v in tr["ignored"])
        tv = locations.get("transformers_version") or "this version"
        return Finding(code, Status.WARN, title,
                       summary + f". Set but ignored by transformers {tv}: {ignored}.",
                       evidence=evidence,
                       cause=f"{tr['rule']}. Files placed in the directory named by an ignored variable are "
                             "invisible to from_pretrained (knowledge base K01 g).",
                       fix=_location_fix(tr, locations), docs=[HUB_DOCS])
    if hub.get("mismatch"):
        return Finding(code, Status.WARN, title,
                       summary + f" (huggingface_hub computes {hub['path']}, the rules here gave {hub['mismatch']}).",
                       evidence=evidence, cause="The installed huggingface_hub resolves its variables differently.",
                       fix="Set HF_HUB_CACHE explicitly to the directory you mean.")
    return Finding(code, Status.OK, title, summary + ".", evidence=evidence)


def _location_fix(tr: Dict[str, Any], locations: Dict[str, Any]) -> str:
    values = locations.get("set_vars", {})
    fixes = []
    for var in tr["ignored"]:
        value = values.get(var)
        if tr["layout"] == "hub" and "HF_HUB_CACHE" not in tr["ignored"] and var in (
                "TRANSFORMERS_CACHE", "PYTORCH_TRANSFORMERS_CACHE", "PYTORCH_PRETRAINED_BERT_CACHE"):
            fixes.append(f"`export HF_HUB_CACHE={q(value)}` (and `unset {var}`)")
        elif var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE") and tr["layout"] == "hub":
            fixes.append(f"`export TRANSFORMERS_CACHE={q(value)}`")
        elif tr["layout"] == "legacy":
            fixes.append(f"`export TRANSFORMERS_CACHE={q(value)}` - note that transformers < 4.22 keeps a flat cache, "
                         "not the models--org--name layout; a local `version:` directory works with every version")
        else:
            fixes.append(f"`unset {var}`")
    return "; ".join(fixes)


def rule_offline_flag(offline: Dict[str, Any], incomplete: List[str], versions: Versions,
                      hub: Optional[Dict[str, Any]]) -> Finding:
    code, title = "cache.offline-flag", "Offline mode"
    evidence = {"HF_HUB_OFFLINE": offline.get("HF_HUB_OFFLINE"), "TRANSFORMERS_OFFLINE": offline.get("TRANSFORMERS_OFFLINE"),
                "effective": offline["effective"], "honoured": offline["honoured"], "notes": offline["notes"],
                "not_cached": incomplete}
    var = offline_var(versions)
    tv = versions.get("transformers")
    if offline["effective"] and incomplete:
        degrade = ("from_pretrained raises OSError" if not tv or version_at_least(tv, "5") is False else
                   "CLIPTokenizer returns a 2-token tokenizer without raising and CLIPTextModel raises OSError")
        return Finding(code, Status.FAIL, title,
                       f"Offline mode is on, but {', '.join(incomplete)} is not fully cached: {degrade}.",
                       evidence=evidence,
                       cause="With offline mode the loaders only read the cache; nothing is downloaded.",
                       fix="Download the files first (see cache.model-missing for the exact command), or allow "
                           "downloads for the first start: `unset HF_HUB_OFFLINE TRANSFORMERS_OFFLINE`.",
                       docs=[OFFLINE_DOCS])
    if offline["notes"] and not offline["effective"]:
        return Finding(code, Status.WARN, title,
                       "Offline variables are set but not honoured: " + "; ".join(offline["notes"]) + ".",
                       evidence=evidence, cause="Each transformers/huggingface_hub version reads its own variables "
                                                "(knowledge base 1.5).",
                       fix=f"`export {var}`" + (" and `unset HF_HUB_OFFLINE`" if offline.get("HF_HUB_OFFLINE") and
                                                  var != "HF_HUB_OFFLINE=1" else "")
                       + ("; `unset HF_HUB_OFFLINE` (a value like 0 hides TRANSFORMERS_OFFLINE)"
                          if var == "HF_HUB_OFFLINE=1" else ""),
                       docs=[OFFLINE_DOCS])
    if offline["effective"]:
        summary = "Offline mode is on and every needed file is cached: no start-up waits on the Hub."
        if offline["notes"]:
            summary += " Note: " + "; ".join(offline["notes"]) + "."
        return Finding(code, Status.OK, title, summary, evidence=evidence)
    if incomplete:
        return Finding(code, Status.OK, title,
                       "Offline mode is off, so missing files can be downloaded at start-up (cache.model-missing "
                       "says whether that will work).", evidence=evidence)
    down = hub is not None and "skipped" not in hub and not hub.get("reachable")
    if down:
        return Finding(code, Status.WARN, title,
                       "Everything needed is cached but offline mode is off and the Hub is unreachable: each "
                       "from_pretrained still asks the Hub first and waits for the error (up to "
                       "HF_HUB_ETAG_TIMEOUT, 10 s, per file when packets are dropped).",
                       evidence=evidence, cause="huggingface_hub checks for newer revisions before using the cache.",
                       fix=f"Start with `{var}`.", docs=[OFFLINE_DOCS])
    return Finding(code, Status.INFO, title,
                   f"Everything needed is cached; `{var}` would skip the Hub round trips at start-up and keep a "
                   "network outage from delaying it.", evidence=evidence, fix=f"`export {var}`")


def rule_model_missing(model: Dict[str, Any], resolution: Dict[str, Any], offline: Dict[str, Any],
                       hub: Dict[str, Any], versions: Versions, locations: Dict[str, Any],
                       config: Optional[str], cwd: str, code_root: Optional[str]) -> Finding:
    code, title = "cache.model-missing", f"{model['ref']} resolves offline"
    evidence: Dict[str, Any] = {
        "model": model["ref"], "kind": model["kind"], "loader": model["loader"], "via": model["via"],
        "where": resolution.get("where"), "layout": resolution.get("layout"),
        "files": {n: {k: v for k, v in s.items() if k in ("state", "path", "size", "problem", "cached_endpoint")}
                  for n, s in resolution.get("files", {}).items()},
        "missing": resolution.get("missing", []),
    }
    if model["kind"] == "unknown":
        return Finding(code, Status.WARN, title, f"Cannot tell which files {model['ref']} needs: {model.get('note')}.",
                       evidence=evidence, blocking=False,
                       fix="Run the model once on a machine with network and check `hf cache ls`, or pass the "
                           "weights file path as `version:`.")
    hub_files = hub_files_for(hub, model["ref"])
    if resolution["complete"] or (not resolution["missing"]):
        where = model["path"] if model["kind"] == "local" else resolution["where"]
        corrupt = f" ({', '.join(resolution['corrupt'])} present but unreadable: see cache.incomplete)" \
            if resolution["corrupt"] else ""
        return Finding(code, Status.OK, title,
                       f"Every file {model['loader']} needs for {model['ref']} resolves offline from {where}{corrupt}.",
                       evidence=evidence)
    missing = ", ".join(resolution["missing"])
    are = "are" if len(resolution["missing"]) > 1 else "is"
    other = [s for s in resolution["files"].values() if s.get("state") == "other-endpoint"]
    net_ok = network_ok_for(hub, model, resolution)
    fix = model_fix(model, resolution, versions, hub_files, locations, bool(net_ok), config, cwd, code_root,
                    offline_on=offline["effective"])
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
                                  f"`mv {q(model['path'])} {q(model['path'] + '.bak')}`" if model.get("shadowed") else ""))
    evidence["download_files"] = files_to_fetch(model, hub_files)
    if other:
        evidence["cached_via_endpoint"] = other[0].get("cached_endpoint")
    if offline["effective"]:
        return Finding(code, Status.FAIL, title,
                       f"{missing} of {model['ref']} {are} not in {resolution['where']} and offline mode is on: "
                       "loading will fail.",
                       evidence=evidence, cause="Offline mode (cache.offline-flag) forbids the download.", fix=fix,
                       docs=[HUB_DOCS])
    if net_ok:
        size = _download_size(model, hub_files, resolution)
        return Finding(code, Status.WARN, title,
                       f"{missing} of {model['ref']} {are} not cached; the first start downloads "
                       f"({fmt_bytes(size) if size else 'size unknown'}) from {hub.get('endpoint', {}).get('display')}.",
                       evidence=evidence, blocking=False,
                       cause="Nothing is wrong yet, but the start-up depends on the Hub being reachable then.",
                       fix=fix, docs=[HUB_DOCS])
    why = why_unreachable(hub)
    cause = f"The file is not cached and cannot be downloaded: {why}."
    if other:
        cause += (f" It is cached, but through the endpoint {other[0]['cached_endpoint']}: transformers "
                  f"{versions.get('transformers')} keys its flat cache on the full URL, so a different HF_ENDPOINT "
                  "cannot see it (knowledge base K01 d).")
        fix = f"`export HF_ENDPOINT={q(other[0]['cached_endpoint'])}`\n" + fix
    return Finding(code, Status.FAIL, title,
                   f"{missing} of {model['ref']} {are} not in {resolution['where']} and the Hub cannot be reached "
                   f"({why}): {model['loader']} will fail to load.",
                   evidence=evidence, cause=cause, fix=fix, docs=[HUB_DOCS])


def _download_size(model: Dict[str, Any], hub_files: List[Dict[str, Any]], resolution: Dict[str, Any]) -> Optional[int]:
    names = files_to_fetch(model, hub_files, resolution, only_missing=True)
    sizes = {f["file"]: f.get("size") for f in hub_files}
    known = KNOWN_SIZES.get(model.get("repo_id") or "", {})
    total = 0
    for name in names:
        size = sizes.get(name) or known.get(name)
        if size is None:
            return None
        total += size
    return total


def rule_incomplete(scan: Dict[str, Any], models: List[Dict[str, Any]], resolutions: Dict[str, Dict[str, Any]],
                    can_redownload: Dict[str, bool], versions: Versions) -> Finding:
    code, title = "cache.incomplete", "Interrupted downloads and broken cache entries"
    needed_repos = {m["repo_id"]: m for m in models if m.get("repo_id")}
    corrupt = []
    for m in models:
        res = resolutions.get(m["ref"]) or {}
        for name, state in res.get("files", {}).items():
            if state["state"] in ("corrupt", "broken-link"):
                corrupt.append({"model": m["ref"], "file": name, "state": state["state"], "path": state.get("path"),
                                "problem": state.get("problem") or "symlink to a missing blob"})
    incomplete = scan.get("incomplete", [])
    warnings = scan.get("warnings", [])
    relevant_incomplete = [i for i in incomplete if i.get("repo") in needed_repos or i.get("repo") is None]
    relevant_warnings = [w for w in warnings if any(r.replace("/", "--") in w for r in needed_repos)]
    evidence = {"cache": scan.get("path"), "tool": scan.get("tool"), "corrupt": corrupt,
                "incomplete": incomplete, "warnings": warnings, "scan_error": scan.get("error")}
    if not scan.get("exists"):
        return Finding(code, Status.OK, title, f"The cache directory {scan.get('path')} does not exist yet: nothing "
                                               "half-downloaded.", evidence=evidence)
    fixes = []
    for c in corrupt:
        repo = next((m.get("repo_id") for m in models if m["ref"] == c["model"]), None)
        if repo:
            fixes.append(download_command(repo, [c["file"]], versions, cache_dir=None, force=True))
        elif c.get("path"):
            fixes.append(f"replace {q(c['path'])}")
    for inc in incomplete:
        fixes.append(f"rm -f {q(inc['path'])}")
    if any("broken symlink" in w or "missing commit" in w for w in warnings) and download_cli(versions) == "hf download":
        fixes.append("hf cache ls --show-warnings  # then re-download or `hf cache rm` the repos it lists")
    if corrupt:
        blocking = any(not can_redownload.get(c["model"], False) for c in corrupt)
        listing = "; ".join(f"{c['model']}/{c['file']}: {c['problem']}" for c in corrupt)
        return Finding(code, Status.FAIL if blocking else Status.WARN, title,
                       f"Cached files the loader will read are broken: {listing}.",
                       evidence=evidence, blocking=blocking,
                       cause="An interrupted or proxied download left a truncated/HTML file, or a blob was deleted "
                             "under its snapshot link (knowledge base K01 j); huggingface_hub checks structure, not "
                             "content.",
                       fix="\n".join(fixes), docs=[HUB_DOCS])
    if relevant_incomplete or relevant_warnings:
        return Finding(code, Status.WARN, title,
                       f"{len(relevant_incomplete)} interrupted download(s) and {len(relevant_warnings)} scan "
                       "warning(s) in repos this deployment needs.",
                       evidence=evidence, blocking=False,
                       cause="A download was interrupted (Ctrl-C, disk full, network cut); the next online start "
                             "downloads the file again, an offline start cannot.",
                       fix="\n".join(fixes), docs=[HUB_DOCS])
    if incomplete or warnings:
        return Finding(code, Status.INFO, title,
                       f"{len(incomplete)} interrupted download(s) and {len(warnings)} scan warning(s), none in a "
                       "repo this deployment needs.", evidence=evidence, fix="\n".join(fixes))
    if scan.get("error"):
        return Finding(code, Status.WARN, title, f"The cache could not be scanned: {scan['error']}.", evidence=evidence,
                       blocking=False)
    return Finding(code, Status.OK, title, f"No interrupted download or broken entry in {scan.get('path')}.",
                   evidence=evidence)


def rule_not_writable(writable: Dict[str, Dict[str, Any]], to_download: List[str]) -> Finding:
    code, title = "cache.not-writable", "Cache directory is writable"
    evidence = {"paths": writable, "to_download": to_download}
    bad = {p: w for p, w in writable.items() if not w["writable"]}
    if not bad:
        return Finding(code, Status.OK, title, "Writable: " + ", ".join(writable) + ".", evidence=evidence)
    path, facts = next(iter(bad.items()))
    why = facts.get("error") or "not writable"
    if not to_download:
        return Finding(code, Status.INFO, title,
                       f"{path} is not writable ({why}), but everything needed is cached: loading only reads it.",
                       evidence=evidence,
                       fix="Nothing to do for this deployment; downloads of other models would need "
                           "`export HF_HOME=<writable directory>`.")
    return Finding(code, Status.FAIL, title,
                   f"{path} is not writable ({why}) and {', '.join(to_download)} must still be downloaded into it.",
                   evidence=evidence,
                   cause="The download needs to create lock files and blobs in the cache; on a read-only cache it "
                         "fails with `OSError: [Errno 30] Read-only file system: '...lock'` (knowledge base K01 i).",
                   fix=f"Use a writable cache: `export HF_HOME=$HOME/.cache/huggingface` (then download there), or "
                       f"make it writable: `sudo chown -R $(id -u):$(id -g) {q(facts['checked'])}`; "
                       "or download on a machine with write access and mount the cache read-only with "
                       "`HF_HUB_OFFLINE=1`.",
                   docs=[HUB_DOCS])


def rule_disk_space(free: Dict[str, Optional[int]], needs: Dict[str, Optional[int]]) -> Finding:
    """`needs`: cache path -> bytes to download there (None when a size is unknown)."""
    code, title = "cache.disk-space", "Free disk space for downloads"
    evidence = {"free": {p: fmt_bytes(v) for p, v in free.items()}, "to_download": {p: fmt_bytes(v) if v is not None
                                                                                   else "unknown" for p, v in needs.items()}}
    todo = {p: n for p, n in needs.items() if n != 0}
    if not todo:
        return Finding(code, Status.OK, title, "Nothing to download; "
                       + ", ".join(f"{fmt_bytes(v)} free at {p}" for p, v in free.items()) + ".", evidence=evidence)
    for path, need in todo.items():
        have = free.get(path)
        if need is None or have is None:
            return Finding(code, Status.INFO, title,
                           f"{fmt_bytes(have)} free at {path}; the download size is unknown (the Hub did not answer).",
                           evidence=evidence)
        if have < need:
            return Finding(code, Status.FAIL, title,
                           f"{fmt_bytes(have)} free at {path}, but the download needs {fmt_bytes(need)}.",
                           evidence=evidence, cause="The download fails when the disk fills up, leaving an "
                                                    "*.incomplete blob behind.",
                           fix="Free space (`hf cache ls` / `hf cache rm` old models), or point the cache at a larger "
                               "disk: `export HF_HOME=/path/on/bigger/disk`.", docs=[HUB_DOCS])
        if have < need * 1.1 + DISK_MARGIN:
            return Finding(code, Status.WARN, title,
                           f"Only {fmt_bytes(have)} free at {path} for a {fmt_bytes(need)} download.",
                           evidence=evidence, blocking=False, fix="Free some space before the first start.")
    return Finding(code, Status.OK, title, "; ".join(f"{fmt_bytes(free.get(p))} free at {p} for {fmt_bytes(n)} to "
                                                     "download" for p, n in todo.items()) + ".", evidence=evidence)


def rule_shadowing(shadows: List[Dict[str, Any]], versions: Versions) -> Finding:
    code, title = "cache.shadowing-dir", "Directory named like a model id"
    evidence = {"found": shadows}
    if not shadows:
        return Finding(code, Status.OK, title, "No directory named like a needed model id in the working directory "
                                               "or the code root.", evidence=evidence)
    tv = versions.get("transformers")
    effect = ("CLIPTokenizer silently returns a 2-token tokenizer" if tv and version_at_least(tv, "5")
              else "from_pretrained raises \"Can't load tokenizer ... make sure you don't have a local directory "
                   "with the same name\"")
    for s in shadows:
        if s["base"] == "working directory" and s["is_dir"] and not s["complete"]:
            return Finding(code, Status.FAIL, title,
                           f"./{s['model']} exists in the working directory ({s['path']}) and lacks "
                           f"{', '.join(s['missing'])}: transformers loads it instead of the cache or the Hub, and "
                           f"{effect}.",
                           evidence=evidence,
                           cause="from_pretrained checks `os.path.isdir(id)` relative to the working directory "
                                 "before it looks at the cache (knowledge base K01 c).",
                           fix=f"`mv {q(s['path'])} {q(s['path'] + '.bak')}` (or remove it), or make it complete: "
                               + download_command(s["model"], s["missing"], versions, local_dir=s["path"]))
    for s in shadows:
        if s["base"] == "code root" and s["is_dir"] and not s["complete"]:
            return Finding(code, Status.WARN, title,
                           f"{s['path']} is named like {s['model']} and lacks {', '.join(s['missing'])}: a start from "
                           f"the code root ({s['base_path']}) will load it instead of the cache, and {effect}.",
                           evidence=evidence, blocking=False,
                           cause="from_pretrained treats the id as a path relative to the working directory.",
                           fix=f"`mv {q(s['path'])} {q(s['path'] + '.bak')}`")
    s = shadows[0]
    return Finding(code, Status.INFO, title,
                   f"{s['path']} is named like {s['model']} and holds every needed file: transformers uses it instead "
                   "of the cache when started from " + s["base_path"] + ".",
                   evidence=evidence,
                   fix="Fine as it is; to make it explicit, put the absolute path in the yaml `version:`.")


def rule_tokenizer_functional(facts: Optional[Dict[str, Any]], model: Optional[Dict[str, Any]], fix: str,
                              versions: Versions) -> Finding:
    code, title = "tokenizer.functional", "CLIP tokenizer loads and encodes correctly"
    if model is None:
        return skip(code, title, "No needed model is a CLIP tokenizer loaded by transformers (e.g. SD 2.x uses "
                                 "open_clip's bundled tokenizer).")
    if not versions.get("transformers"):
        return skip(code, title, "transformers is not installed (see env.transformers-missing).")
    assert facts is not None
    evidence = {k: v for k, v in facts.items() if k in (
        "ref", "forced_offline", "timeout", "returncode", "timed_out", "transformers", "class", "vocab_size", "len",
        "ids", "error_type", "error", "seconds", "stderr_tail", "cwd", "name_or_path")}
    evidence["expected"] = {"vocab_size": VOCAB_SIZE, "ids": PROBE_IDS, "text": PROBE_TEXT}
    how = " (run offline because the Hub is unreachable)" if facts.get("forced_offline") else ""
    ref = model["ref"]
    if facts.get("timed_out"):
        return Finding(code, Status.FAIL, title,
                       f"CLIPTokenizer.from_pretrained({ref!r}) did not finish within {facts['timeout']:g} s{how}.",
                       evidence=evidence,
                       cause="huggingface_hub retries an unreachable Hub with back-off for minutes (knowledge base K29).",
                       fix=fix)
    if not facts.get("ran"):
        return Finding(code, Status.ERROR, title, f"The tokenizer check could not run: {facts.get('error')}.",
                       evidence=evidence, blocking=False)
    if facts.get("error_type"):
        return Finding(code, Status.FAIL, title,
                       f"CLIPTokenizer.from_pretrained({ref!r}) raised {facts['error_type']}{how}: "
                       f"{(facts.get('error') or '').splitlines()[0][:300]}",
                       evidence=evidence,
                       cause="The tokenizer files do not resolve (see cache.model-missing, hub.*, cache.shadowing-dir).",
                       fix=fix)
    ok = facts.get("vocab_size") == VOCAB_SIZE and facts.get("ids") == PROBE_IDS
    if not ok:
        return Finding(code, Status.FAIL, title,
                       f"CLIPTokenizer.from_pretrained({ref!r}) returned a tokenizer with vocabulary "
                       f"{facts.get('vocab_size')} (expected {VOCAB_SIZE}) that encodes {PROBE_TEXT!r} as "
                       f"{facts.get('ids')} (expected {PROBE_IDS}){how}: prompts would be ignored.",
                       evidence=evidence,
                       cause="transformers 5 builds a placeholder 2-token tokenizer instead of raising when vocab.json "
                             "and merges.txt do not resolve (knowledge base finding 4); or the files are not CLIP's.",
                       fix=fix)
    return Finding(code, Status.OK, title,
                   f"{facts.get('class')} from {ref!r}: vocabulary {facts['vocab_size']}, {PROBE_TEXT!r} -> "
                   f"{facts['ids']}{how}.", evidence=evidence)


# -- wiring --------------------------------------------------------------------------------------

_versions = installed_versions


def _facts(ctx):
    needed = ctx.fact("needed_models", probe_needed_models)
    cache = ctx.fact("cache", probe_cache)
    return needed, cache


def _resolutions(cache) -> Dict[str, Dict[str, Any]]:
    return {m["ref"]: m["resolution"] for m in cache["models"]}


def _incomplete_refs(needed, cache) -> List[str]:
    res = _resolutions(cache)
    return [m["ref"] for m in needed["models"] if m["kind"] != "unknown" and res[m["ref"]]["missing"]]


def _hub_if_needed(ctx) -> Dict[str, Any]:
    return ctx.fact("hub", probe_hub)


def check_needed_models(ctx):
    return [rule_needed_models(ctx.fact("needed_models", probe_needed_models))]


def check_location(ctx):
    return [rule_location(ctx.fact("cache", probe_cache)["locations"])]


def check_offline_flag(ctx):
    needed, cache = _facts(ctx)
    incomplete = _incomplete_refs(needed, cache)
    hub = _hub_if_needed(ctx) if not cache["offline"]["effective"] and not incomplete else None
    return [rule_offline_flag(cache["offline"], incomplete, _versions(ctx), hub)]


def provision_hint(ctx, model: Dict[str, Any]) -> str:
    """When the checkpoint already holds CLIP ViT-L/14's text encoder, the first fix is to use it:
    no download at all (`provision-clip`), rather than fetching the model from the Hub."""
    checkpoint = ctx.options.checkpoint
    if not checkpoint or model.get("repo_id") != DEFAULT_CLIP_ID:
        return ""
    from ..probes.checkpoint import probe_checkpoint

    te = (ctx.fact("checkpoint", probe_checkpoint) or {}).get("text_encoder") or {}
    if not te.get("present") or "clip-l" not in str(te.get("kind") or ""):
        return ""
    return (f"0. No download needed: the checkpoint holds this text encoder. "
            f"`python -m diagnostics provision-clip --checkpoint {checkpoint} --hf-cache`, then start with "
            f"`HF_HUB_OFFLINE=1`. Otherwise:")


def _with_hint(ctx, model: Dict[str, Any], finding: Finding) -> Finding:
    if finding.status in (Status.FAIL, Status.WARN) and finding.fix:
        hint = provision_hint(ctx, model)
        if hint:
            return finding.with_fix_prefix(hint)
    return finding


def model_fixes(ctx) -> Dict[str, str]:
    """ref -> the fix commands of cache.model-missing (shared with tokenizer.functional)."""
    needed, cache = _facts(ctx)
    hub = _hub_if_needed(ctx)
    res = _resolutions(cache)
    fixes = {}
    for m in needed["models"]:
        if m["kind"] == "unknown":
            continue
        net_ok = network_ok_for(hub, m, res[m["ref"]])
        fix = model_fix(m, res[m["ref"]], _versions(ctx), hub_files_for(hub, m["ref"]), cache["locations"],
                        bool(net_ok), ctx.options.config, str(ctx.cwd), ctx.options.code_root,
                        offline_on=cache["offline"]["effective"])
        hint = provision_hint(ctx, m)
        fixes[m["ref"]] = f"{hint}\n{fix}" if hint else fix
    return fixes


def check_model_missing(ctx):
    needed, cache = _facts(ctx)
    if not needed["models"]:
        return [skip("cache.model-missing", "Needed models resolve offline", "The config needs no Hugging Face model.")]
    res = _resolutions(cache)
    hub = _hub_if_needed(ctx) if any(res[m["ref"]]["missing"] for m in needed["models"]) else {"skipped": "not needed"}
    return [_with_hint(ctx, m, rule_model_missing(m, res[m["ref"]], cache["offline"], hub, _versions(ctx),
                                                  cache["locations"], ctx.options.config, str(ctx.cwd),
                                                  ctx.options.code_root)) for m in needed["models"]]


def check_incomplete(ctx):
    needed, cache = _facts(ctx)
    res = _resolutions(cache)
    hub = None
    can = {}
    for m in needed["models"]:
        broken = any(s["state"] in ("corrupt", "broken-link") for s in res[m["ref"]].get("files", {}).values())
        if broken:
            hub = hub or _hub_if_needed(ctx)
            can[m["ref"]] = not cache["offline"]["effective"] and bool(
                hub.get("reachable")) and m["kind"] == "hub"
    return [rule_incomplete(cache["scan"], needed["models"], res, can, _versions(ctx))]


def check_not_writable(ctx):
    needed, cache = _facts(ctx)
    return [rule_not_writable(cache["writable"], [r for r in _incomplete_refs(needed, cache)
                                                  if next(m for m in needed["models"] if m["ref"] == r)["kind"] == "hub"])]


def check_disk_space(ctx):
    needed, cache = _facts(ctx)
    res = _resolutions(cache)
    to_fetch = [m for m in needed["models"] if m["kind"] == "hub" and res[m["ref"]]["missing"]]
    hub = _hub_if_needed(ctx) if to_fetch else {"files": []}
    needs: Dict[str, Optional[int]] = {p: 0 for p in cache["disk_free"]}
    for m in to_fetch:
        where = res[m["ref"]]["where"]
        size = _download_size(m, hub_files_for(hub, m["ref"]), res[m["ref"]])
        current = needs.get(where, 0)
        needs[where] = None if size is None or current is None else current + size
    return [rule_disk_space({p: cache["disk_free"].get(p) for p in needs}, needs)]


def check_shadowing(ctx):
    return [rule_shadowing(ctx.fact("cache", probe_cache)["shadow"], _versions(ctx))]


def check_tokenizer(ctx):
    needed, cache = _facts(ctx)
    versions = _versions(ctx)
    models = [m for m in needed["models"] if m.get("tokenizer_check") == "clip"]
    if not models or not versions.get("transformers"):
        return [rule_tokenizer_functional(None, models[0] if models else None, "", versions)]
    findings = []
    fixes = model_fixes(ctx)
    for m in models:
        res = _resolutions(cache)[m["ref"]]
        offline = cache["offline"]["effective"]
        force = False
        if not offline and m["kind"] == "hub":
            hub = _hub_if_needed(ctx)
            # Online only when the Hub answers for this model; otherwise huggingface_hub retries for
            # minutes (missing files) or waits a timeout per file (cached files, dropped packets).
            if res["complete"]:
                force = "skipped" not in hub and not hub.get("reachable", False)
            else:
                force = not network_ok_for(hub, m, res)
        facts = ctx.fact(f"tokenizer:{m['ref']}",
                         lambda c, m=m, force=force: run_tokenizer_check(c, m["ref"], force, c.options.timeout))
        findings.append(rule_tokenizer_functional(facts, m, fixes.get(m["ref"], ""), versions))
    return findings


CHECKS: List[Check] = [
    Check("cache.needed-models", "Hugging Face models the deployment needs", check_needed_models, reads=("ctx",)),
    Check("cache.location", "Hugging Face cache location", check_location, reads=("ctx",)),
    Check("cache.offline-flag", "Offline mode", check_offline_flag, reads=("ctx",)),
    Check("cache.model-missing", "Needed models resolve offline", check_model_missing, reads=("ctx",)),
    Check("cache.incomplete", "Interrupted downloads and broken cache entries", check_incomplete, reads=("ctx",)),
    Check("cache.not-writable", "Cache directory is writable", check_not_writable, reads=("ctx",)),
    Check("cache.disk-space", "Free disk space for downloads", check_disk_space, reads=("ctx",)),
    Check("cache.shadowing-dir", "Directory named like a model id", check_shadowing, reads=("ctx",)),
    Check("tokenizer.functional", "CLIP tokenizer loads and encodes correctly", check_tokenizer, reads=("ctx",)),
]
