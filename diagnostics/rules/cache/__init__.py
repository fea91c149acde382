"""Will every Hugging Face model the config needs load on this machine? (cache.* and tokenizer.functional)

The wiring: which facts each check reads and how they reach the rules (`verdicts`); the commands
in the fixes are built in `fixes`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

from ...context import DEFAULT_CLIP_ID, Options
from ...findings import Finding, Status
from ...probes.cache import CacheFacts
from ...probes.hub import HubFacts
from ...probes.needed_models import NeededModel, NeededModels
from ...probes.tokenizer import run_tokenizer_check
from ...registry import Check, Precondition
from .fixes import (PROVISION_PLACEHOLDER, PROVISION_TEXT, Versions, download_cli, download_command, download_size,
                    fenced, files_to_fetch, local_dir_for, model_fix, network_ok_for, offline_var, provision_command,
                    shell_quote, why_unreachable, yaml_change, yaml_lines)
from .verdicts import (DISK_MARGIN, HUB_DOCS, OFFLINE_DOCS, rule_disk_space, rule_incomplete, rule_location,
                       rule_model_missing, rule_needed_models, rule_not_writable, rule_offline_flag, rule_shadowing,
                       rule_tokenizer_functional)

__all__ = [
    "CHECKS", "DISK_MARGIN", "HUB_DOCS", "OFFLINE_DOCS", "PROVISION_PLACEHOLDER", "PROVISION_TEXT", "Versions",
    "download_cli", "download_command", "fenced", "provision_command", "yaml_lines",
    "download_size", "files_to_fetch", "local_dir_for", "model_fix", "model_fixes", "network_ok_for", "offline_var",
    "provision_hint", "rule_disk_space", "rule_incomplete", "rule_location", "rule_model_missing",
    "rule_needed_models", "rule_not_writable", "rule_offline_flag", "rule_shadowing", "rule_tokenizer_functional",
    "shell_quote", "why_unreachable", "yaml_change",
]

NOT_PROBED = HubFacts(skipped="not needed")

# The Hub network probe (`hub`) is gathered on demand: these checks call it only when their decision
# depends on it, so a run where everything is cached, or offline, makes no network call.
Hub = Callable[[], HubFacts]


def _incomplete_refs(needed: NeededModels, cache: CacheFacts) -> List[str]:
    resolutions = cache.resolutions()
    return [model.ref for model in needed.models if model.kind != "unknown" and resolutions[model.ref]["missing"]]


def check_location(cache: CacheFacts) -> Finding:
    return rule_location(cache.locations)


def check_offline_flag(needed_models: NeededModels, cache: CacheFacts, versions: Versions, hub: Hub) -> Finding:
    incomplete = _incomplete_refs(needed_models, cache)
    network = hub() if not cache.offline.effective and not incomplete else None
    return rule_offline_flag(cache.offline, incomplete, versions, network)


def provision_hint(checkpoint_path: Optional[str], checkpoint: Callable[[], Any], model: Mapping[str, Any]) -> str:
    """When the checkpoint already holds CLIP ViT-L/14's text encoder, the first fix is to use it:
    no download at all (`provision-clip`), rather than fetching the model from the Hub.
    `checkpoint` gives the checkpoint facts; it is called only for CLIP ViT-L/14 with a --checkpoint."""
    if not checkpoint_path or model.get("repo_id") != DEFAULT_CLIP_ID:
        return ""
    text_encoder = (checkpoint() or {}).get("text_encoder") or {}
    if not text_encoder.get("present") or "clip-l" not in str(text_encoder.get("kind") or ""):
        return ""
    return f"{PROVISION_TEXT}\n{fenced(provision_command(str(checkpoint_path)))}\nOtherwise:"


def _with_hint(options: Options, checkpoint: Callable[[], Any], model: NeededModel, finding: Finding) -> Finding:
    if finding.status in (Status.FAIL, Status.WARN) and finding.fix:
        hint = provision_hint(options.checkpoint, checkpoint, model)
        if hint:
            return finding.with_fix_prefix(hint)
    return finding


def model_fixes(needed_models: NeededModels, cache: CacheFacts, versions: Versions, options: Options, cwd: Path,
                hub: HubFacts, checkpoint: Callable[[], Any]) -> Dict[str, str]:
    """ref -> the fix commands of cache.model-missing (shared with tokenizer.functional)."""
    resolutions = cache.resolutions()
    fixes = {}
    for model in needed_models.models:
        if model.kind == "unknown":
            continue
        resolution = resolutions[model.ref]
        fix = model_fix(model, resolution, versions, hub.files_of(model.ref), cache.locations,
                        bool(network_ok_for(hub, model, resolution)), options.config, str(cwd), options.code_root,
                        offline_on=cache.offline.effective)
        hint = provision_hint(options.checkpoint, checkpoint, model)
        fixes[model.ref] = f"{hint}\n{fix}" if hint else fix
    return fixes


def check_model_missing(needed_models: NeededModels, cache: CacheFacts, versions: Versions, options: Options,
                        cwd: Path, hub: Hub, checkpoint: Callable[[], Any]) -> List[Finding]:
    resolutions = cache.resolutions()
    any_missing = any(resolutions[model.ref]["missing"] for model in needed_models.models)
    network = hub() if any_missing else NOT_PROBED
    return [_with_hint(options, checkpoint, model,
                       rule_model_missing(model, resolutions[model.ref], cache.offline, network, versions,
                                          cache.locations, options.config, str(cwd), options.code_root))
            for model in needed_models.models]


def check_incomplete(needed_models: NeededModels, cache: CacheFacts, versions: Versions, hub: Hub) -> Finding:
    resolutions = cache.resolutions()
    can_redownload = {}
    for model in needed_models.models:
        states = resolutions[model.ref].get("files", {}).values()
        if any(state["state"] in ("corrupt", "broken-link") for state in states):
            can_redownload[model.ref] = not cache.offline.effective and hub().reachable and model.kind == "hub"
    return rule_incomplete(cache.scan, list(needed_models.models), resolutions, can_redownload, versions)


def check_not_writable(cache: CacheFacts, hub_downloads: List[str]) -> Finding:
    return rule_not_writable(cache.writable, hub_downloads)


def check_disk_space(needed_models: NeededModels, cache: CacheFacts, hub: Hub) -> Finding:
    resolutions = cache.resolutions()
    to_fetch = [model for model in needed_models.models if model.kind == "hub" and resolutions[model.ref]["missing"]]
    network = hub() if to_fetch else HubFacts()
    needs: Dict[str, Optional[int]] = {path: 0 for path in cache.disk_free}
    for model in to_fetch:
        resolution = resolutions[model.ref]
        size = download_size(model, network.files_of(model.ref), resolution)
        current = needs.get(resolution["where"], 0)
        needs[resolution["where"]] = None if size is None or current is None else current + size
    return rule_disk_space({path: cache.disk_free.get(path) for path in needs}, needs)


def check_shadowing(cache: CacheFacts, versions) -> Finding:
    return rule_shadowing(cache.shadow, versions)


def _tokenizer_runs_offline(model: NeededModel, cache: CacheFacts, hub: Hub) -> bool:
    """Online only when the Hub answers for this model; otherwise huggingface_hub retries for minutes
    (missing files) or waits a timeout per file (cached files, dropped packets)."""
    if cache.offline.effective or model.kind != "hub":
        return False
    network = hub()
    resolution = cache.resolutions()[model.ref]
    if resolution["complete"]:
        return network.skipped is None and not network.reachable
    return not network_ok_for(network, model, resolution)


def _clip_tokenizer_models(needed: NeededModels) -> List[NeededModel]:
    return [model for model in needed.models if model.tokenizer_check == "clip"]


def tokenizer_results(ctx) -> Dict[str, Dict[str, Any]]:
    """The `tokenizer` fact: ref -> the CLIP tokenizer of each needed CLIP model, loaded in a child
    process (`run_tokenizer_check`), offline where the Hub would not answer for it."""
    from ...facts import get_fact

    cache: CacheFacts = get_fact(ctx, "cache")
    results = {}
    for model in _clip_tokenizer_models(get_fact(ctx, "needed_models")):
        offline = _tokenizer_runs_offline(model, cache, lambda: get_fact(ctx, "hub"))
        results[model.ref] = run_tokenizer_check(ctx, model.ref, offline, ctx.options.timeout)
    return results


def check_tokenizer(needed_models: NeededModels, cache: CacheFacts, versions: Versions, options: Options, cwd: Path,
                    hub: Hub, checkpoint: Callable[[], Any], tokenizer: Callable[[], Dict[str, Any]]) -> List[Finding]:
    models = _clip_tokenizer_models(needed_models)
    if not models or not versions.get("transformers"):
        return [rule_tokenizer_functional(None, models[0] if models else None, "", versions)]
    fixes = model_fixes(needed_models, cache, versions, options, cwd, hub(), checkpoint)
    loaded = tokenizer()
    return [rule_tokenizer_functional(loaded[model.ref], model, fixes.get(model.ref, ""), versions)
            for model in models]


MODELS_NEEDED = Precondition("the config needs a Hugging Face model", ("needed_models",),
                             lambda needed_models: None if needed_models.models
                             else "The config needs no Hugging Face model.")

_MODELS = ("needed_models", "cache", "versions")
_FIX_FACTS = ("options", "cwd")  # where the fixes point: the config, the code root, the working directory
CHECKS: List[Check] = [
    Check("cache.needed-models", "Hugging Face models the deployment needs", rule_needed_models,
          reads=("needed_models",)),
    Check("cache.location", "Hugging Face cache location", check_location, reads=("cache",)),
    Check("cache.offline-flag", "Offline mode", check_offline_flag, reads=_MODELS, on_demand=("hub",)),
    Check("cache.model-missing", "Needed model files on this machine", check_model_missing,
          reads=_MODELS + _FIX_FACTS, on_demand=("hub", "checkpoint"), requires=(MODELS_NEEDED,)),
    Check("cache.incomplete", "Interrupted downloads and broken cache entries", check_incomplete, reads=_MODELS,
          on_demand=("hub",)),
    Check("cache.not-writable", "Write access to the cache directory", check_not_writable, reads=("cache", "hub_downloads")),
    Check("cache.disk-space", "Free disk space for downloads", check_disk_space, reads=("needed_models", "cache"),
          on_demand=("hub",)),
    Check("cache.shadowing-dir", "Directory named like a model id", check_shadowing, reads=("cache", "versions")),
    Check("tokenizer.functional", "CLIP tokenizer: loading and encoding", check_tokenizer,
          reads=_MODELS + _FIX_FACTS, on_demand=("hub", "checkpoint", "tokenizer")),
]
