"""Will every Hugging Face model the config needs load on this machine? (cache.* and tokenizer.functional)

The wiring: which facts each check reads and how they reach the rules (`verdicts`); the commands
in the fixes are built in `fixes`.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from ...context import DEFAULT_CLIP_ID
from ...findings import Finding, Status
from ...probes.cache import CacheFacts, probe_cache
from ...probes.environment import installed_versions
from ...probes.hub import HubFacts, probe_hub
from ...probes.needed_models import probe_needed_models
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


def _facts(ctx):
    needed = ctx.fact("needed_models", probe_needed_models)
    cache: CacheFacts = ctx.fact("cache", probe_cache)
    return needed, cache


def _incomplete_refs(needed, cache: CacheFacts) -> List[str]:
    resolutions = cache.resolutions()
    return [model["ref"] for model in needed["models"]
            if model["kind"] != "unknown" and resolutions[model["ref"]]["missing"]]


def _hub(ctx) -> HubFacts:
    return ctx.fact("hub", probe_hub)


def check_location(cache: CacheFacts) -> Finding:
    return rule_location(cache.locations)


def check_offline_flag(ctx):
    needed, cache = _facts(ctx)
    incomplete = _incomplete_refs(needed, cache)
    hub = _hub(ctx) if not cache.offline.effective and not incomplete else None
    return [rule_offline_flag(cache.offline, incomplete, installed_versions(ctx), hub)]


def provision_hint(ctx, model: Dict[str, Any]) -> str:
    """When the checkpoint already holds CLIP ViT-L/14's text encoder, the first fix is to use it:
    no download at all (`provision-clip`), rather than fetching the model from the Hub."""
    checkpoint = ctx.options.checkpoint
    if not checkpoint or model.get("repo_id") != DEFAULT_CLIP_ID:
        return ""
    from ...probes.checkpoint import probe_checkpoint

    text_encoder = (ctx.fact("checkpoint", probe_checkpoint) or {}).get("text_encoder") or {}
    if not text_encoder.get("present") or "clip-l" not in str(text_encoder.get("kind") or ""):
        return ""
    return f"{PROVISION_TEXT}\n{fenced(provision_command(str(checkpoint)))}\nOtherwise:"


def _with_hint(ctx, model: Dict[str, Any], finding: Finding) -> Finding:
    if finding.status in (Status.FAIL, Status.WARN) and finding.fix:
        hint = provision_hint(ctx, model)
        if hint:
            return finding.with_fix_prefix(hint)
    return finding


def model_fixes(ctx) -> Dict[str, str]:
    """ref -> the fix commands of cache.model-missing (shared with tokenizer.functional)."""
    needed, cache = _facts(ctx)
    hub = _hub(ctx)
    resolutions = cache.resolutions()
    fixes = {}
    for model in needed["models"]:
        if model["kind"] == "unknown":
            continue
        resolution = resolutions[model["ref"]]
        fix = model_fix(model, resolution, installed_versions(ctx), hub.files_of(model["ref"]), cache.locations,
                        bool(network_ok_for(hub, model, resolution)), ctx.options.config, str(ctx.cwd),
                        ctx.options.code_root, offline_on=cache.offline.effective)
        hint = provision_hint(ctx, model)
        fixes[model["ref"]] = f"{hint}\n{fix}" if hint else fix
    return fixes


def check_model_missing(ctx):
    needed, cache = _facts(ctx)
    resolutions = cache.resolutions()
    any_missing = any(resolutions[model["ref"]]["missing"] for model in needed["models"])
    hub = _hub(ctx) if any_missing else NOT_PROBED
    return [_with_hint(ctx, model, rule_model_missing(model, resolutions[model["ref"]], cache.offline, hub,
                                                      installed_versions(ctx), cache.locations, ctx.options.config,
                                                      str(ctx.cwd), ctx.options.code_root))
            for model in needed["models"]]


def check_incomplete(ctx):
    needed, cache = _facts(ctx)
    resolutions = cache.resolutions()
    hub: Optional[HubFacts] = None
    can_redownload = {}
    for model in needed["models"]:
        states = resolutions[model["ref"]].get("files", {}).values()
        if any(state["state"] in ("corrupt", "broken-link") for state in states):
            hub = hub or _hub(ctx)
            can_redownload[model["ref"]] = not cache.offline.effective and hub.reachable and model["kind"] == "hub"
    return [rule_incomplete(cache.scan, needed["models"], resolutions, can_redownload, installed_versions(ctx))]


def check_not_writable(cache: CacheFacts, hub_downloads: List[str]) -> Finding:
    return rule_not_writable(cache.writable, hub_downloads)


def check_disk_space(ctx):
    needed, cache = _facts(ctx)
    resolutions = cache.resolutions()
    to_fetch = [model for model in needed["models"] if model["kind"] == "hub" and resolutions[model["ref"]]["missing"]]
    hub = _hub(ctx) if to_fetch else HubFacts()
    needs: Dict[str, Optional[int]] = {path: 0 for path in cache.disk_free}
    for model in to_fetch:
        resolution = resolutions[model["ref"]]
        size = download_size(model, hub.files_of(model["ref"]), resolution)
        current = needs.get(resolution["where"], 0)
        needs[resolution["where"]] = None if size is None or current is None else current + size
    return [rule_disk_space({path: cache.disk_free.get(path) for path in needs}, needs)]


def check_shadowing(cache: CacheFacts, versions) -> Finding:
    return rule_shadowing(cache.shadow, versions)


def _tokenizer_runs_offline(ctx, model: Dict[str, Any], cache: CacheFacts) -> bool:
    """Online only when the Hub answers for this model; otherwise huggingface_hub retries for minutes
    (missing files) or waits a timeout per file (cached files, dropped packets)."""
    if cache.offline.effective or model["kind"] != "hub":
        return False
    hub = _hub(ctx)
    resolution = cache.resolutions()[model["ref"]]
    if resolution["complete"]:
        return hub.skipped is None and not hub.reachable
    return not network_ok_for(hub, model, resolution)


def check_tokenizer(ctx):
    needed, cache = _facts(ctx)
    versions = installed_versions(ctx)
    models = [model for model in needed["models"] if model.get("tokenizer_check") == "clip"]
    if not models or not versions.get("transformers"):
        return [rule_tokenizer_functional(None, models[0] if models else None, "", versions)]
    findings = []
    fixes = model_fixes(ctx)
    for model in models:
        force_offline = _tokenizer_runs_offline(ctx, model, cache)
        facts = ctx.fact(f"tokenizer:{model['ref']}",
                         lambda c, ref=model["ref"], offline=force_offline:
                         run_tokenizer_check(c, ref, offline, c.options.timeout))
        findings.append(rule_tokenizer_functional(facts, model, fixes.get(model["ref"], ""), versions))
    return findings


MODELS_NEEDED = Precondition("the config needs a Hugging Face model", ("needed_models",),
                             lambda needed_models: None if needed_models["models"]
                             else "The config needs no Hugging Face model.")

# The checks that read ctx probe the Hub only when their decision depends on it (lazily, through
# `_hub`): a run where everything is cached and offline makes no network call.
CHECKS: List[Check] = [
    Check("cache.needed-models", "Hugging Face models the deployment needs", rule_needed_models,
          reads=("needed_models",)),
    Check("cache.location", "Hugging Face cache location", check_location, reads=("cache",)),
    Check("cache.offline-flag", "Offline mode", check_offline_flag, reads=("ctx",)),
    Check("cache.model-missing", "Needed model files on this machine", check_model_missing, reads=("ctx",),
          requires=(MODELS_NEEDED,)),
    Check("cache.incomplete", "Interrupted downloads and broken cache entries", check_incomplete, reads=("ctx",)),
    Check("cache.not-writable", "Write access to the cache directory", check_not_writable, reads=("cache", "hub_downloads")),
    Check("cache.disk-space", "Free disk space for downloads", check_disk_space, reads=("ctx",)),
    Check("cache.shadowing-dir", "Directory named like a model id", check_shadowing, reads=("cache", "versions")),
    Check("tokenizer.functional", "CLIP tokenizer: loading and encoding", check_tokenizer, reads=("ctx",)),
]
