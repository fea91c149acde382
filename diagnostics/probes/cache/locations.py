"""Where the cache is, as the installed loaders compute it from the environment (the one resolver).

Where the cache is depends on the environment *and* on the installed versions (knowledge base 1.4,
1.5, K01 g/h): transformers 4.19-4.21 read a flat legacy cache (`$HF_HOME/transformers`, files named
`sha256(url)`), 4.22-4.35 honour `TRANSFORMERS_CACHE` and `HUGGINGFACE_HUB_CACHE` but not
`HF_HUB_CACHE`, 4.36-4.x add the hub's own chain behind `TRANSFORMERS_CACHE`, and 5.x read only
huggingface_hub's constants. Everything is computed from the injected environment (so a report can
be made for another environment, and tests are hermetic); `hub_constants` asks huggingface_hub
itself, in a child process that gets the same environment.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ...util import version_at_least
from .facts import HubCacheDir, OfflineState

TRUE_VALUES = {"1", "ON", "YES", "TRUE"}  # huggingface_hub/transformers ENV_VARS_TRUE_VALUES
DEFAULT_ENDPOINT = "https://huggingface.co"
STAGING_ENDPOINT = "https://hub-ci.huggingface.co"
CONSTANTS_TIMEOUT = 15.0

# Variables that decide cache locations, offline mode and the endpoint.
CACHE_VARS = (
    "HF_HOME", "XDG_CACHE_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE",
    "PYTORCH_TRANSFORMERS_CACHE", "PYTORCH_PRETRAINED_BERT_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
    "HF_ENDPOINT", "HUGGINGFACE_CO_RESOLVE_ENDPOINT", "HUGGINGFACE_CO_STAGING",
)
TRANSFORMERS_OWN_VARS = ("TRANSFORMERS_CACHE", "PYTORCH_TRANSFORMERS_CACHE", "PYTORCH_PRETRAINED_BERT_CACHE")
HUB_CACHE_VARS = ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")


# -- reading the injected environment, never os.environ ------------------------------------------

def is_true(value: Optional[str]) -> bool:
    return value is not None and value.upper() in TRUE_VALUES


def expand(path: str, environ: Mapping[str, str]) -> str:
    """os.path.expanduser + expandvars against `environ` (not the harness's own environment)."""
    if path.startswith("~"):
        home = environ.get("HOME") or os.path.expanduser("~")
        rest = path[1:]
        if not rest or rest[0] in "/\\":
            path = home + rest

    def variable_value(match) -> str:
        name = match.group(1) or match.group(2)
        return environ.get(name, match.group(0))

    return re.sub(r"\$(?:(\w+)|\{([^}]*)\})", variable_value, path)


def hf_home(environ: Mapping[str, str]) -> Tuple[str, str]:
    """(HF_HOME, the variable that decided it), as huggingface_hub.constants computes it."""
    if environ.get("HF_HOME"):
        return expand(environ["HF_HOME"], environ), "HF_HOME"
    if environ.get("XDG_CACHE_HOME"):
        return expand(os.path.join(environ["XDG_CACHE_HOME"], "huggingface"), environ), "XDG_CACHE_HOME"
    return expand(os.path.join("~", ".cache", "huggingface"), environ), "default (~/.cache/huggingface)"


def hub_cache(environ: Mapping[str, str]) -> HubCacheDir:
    """huggingface_hub's HF_HUB_CACHE: HF_HUB_CACHE > HUGGINGFACE_HUB_CACHE > $HF_HOME/hub."""
    home, home_by = hf_home(environ)
    if environ.get("HF_HUB_CACHE"):
        return HubCacheDir(expand(environ["HF_HUB_CACHE"], environ), "HF_HUB_CACHE", home)
    if environ.get("HUGGINGFACE_HUB_CACHE"):
        return HubCacheDir(expand(environ["HUGGINGFACE_HUB_CACHE"], environ), "HUGGINGFACE_HUB_CACHE (legacy name)",
                           home)
    return HubCacheDir(os.path.join(home, "hub"), f"{home_by} + /hub", home)


def hub_cache_dir(environ: Mapping[str, str]) -> str:
    """Where huggingface_hub (and transformers >= 4.22 by default) look for cached repos."""
    return hub_cache(environ).path


def _first_set(environ: Mapping[str, str], names: Sequence[str]) -> Optional[str]:
    return next((name for name in names if environ.get(name)), None)


def transformers_cache(environ: Mapping[str, str], transformers_version: Optional[str]) -> Dict[str, Any]:
    """The directory `from_pretrained` of the installed transformers reads, its layout, and the
    cache variables that are set but ignored by this version."""
    hub = hub_cache(environ)
    home, home_by = hf_home(environ)
    set_vars = [name for name in TRANSFORMERS_OWN_VARS + HUB_CACHE_VARS if environ.get(name)]
    version = transformers_version
    layout = "hub"
    if version and version_at_least(version, "4.22") is False:
        layout, rule = "legacy", "transformers < 4.22: flat cache, TRANSFORMERS_CACHE > PYTORCH_TRANSFORMERS_CACHE > " \
                                 "PYTORCH_PRETRAINED_BERT_CACHE > $HF_HOME/transformers"
        order: Sequence[str] = TRANSFORMERS_OWN_VARS
        fallback = (os.path.join(home, "transformers"), f"{home_by} + /transformers")
        honoured = set(order)
    elif version and version_at_least(version, "4.36") is False:
        rule = "transformers 4.22-4.35: TRANSFORMERS_CACHE > HUGGINGFACE_HUB_CACHE > " \
               "PYTORCH_TRANSFORMERS_CACHE > PYTORCH_PRETRAINED_BERT_CACHE > $HF_HOME/hub"
        order = ("TRANSFORMERS_CACHE", "HUGGINGFACE_HUB_CACHE", "PYTORCH_TRANSFORMERS_CACHE",
                 "PYTORCH_PRETRAINED_BERT_CACHE")
        fallback = (os.path.join(home, "hub"), f"{home_by} + /hub")
        honoured = set(order)
    elif version and version_at_least(version, "5") is False:
        rule = "transformers 4.36-4.x: TRANSFORMERS_CACHE > PYTORCH_TRANSFORMERS_CACHE > " \
               "PYTORCH_PRETRAINED_BERT_CACHE > HF_HUB_CACHE > HUGGINGFACE_HUB_CACHE > $HF_HOME/hub"
        order = TRANSFORMERS_OWN_VARS
        fallback = (hub.path, hub.decided_by)
        honoured = set(TRANSFORMERS_OWN_VARS) | set(HUB_CACHE_VARS)
    else:
        rule = ("transformers 5.x: huggingface_hub's HF_HUB_CACHE > HUGGINGFACE_HUB_CACHE > $HF_HOME/hub; "
                "TRANSFORMERS_CACHE is no longer read") if version else "huggingface_hub's HF_HUB_CACHE chain"
        order = ()
        fallback = (hub.path, hub.decided_by)
        honoured = set(HUB_CACHE_VARS)
    chosen = _first_set(environ, order)
    path, decided = (expand(environ[chosen], environ), chosen) if chosen else fallback
    ignored = [name for name in set_vars if name not in honoured]
    # A variable lower in the chain than the one that decided is shadowed, not ignored.
    return {"path": path, "decided_by": decided, "layout": layout, "rule": rule, "ignored": sorted(ignored),
            "set": set_vars}


def offline_state(environ: Mapping[str, str], transformers_version: Optional[str]) -> OfflineState:
    """Whether the loaders will stay off the network, per installed version (knowledge base 1.5)."""
    hub_raw, transformers_raw = environ.get("HF_HUB_OFFLINE"), environ.get("TRANSFORMERS_OFFLINE")
    # huggingface_hub: _is_true(HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE): a non-empty HF_HUB_OFFLINE=0
    # short-circuits the `or`, so TRANSFORMERS_OFFLINE=1 is then ignored by the hub.
    hub_offline = is_true(hub_raw or transformers_raw)
    version = transformers_version
    hub_hides_transformers = bool(hub_raw) and not is_true(hub_raw) and is_true(transformers_raw)
    notes: List[str] = []
    if version and version_at_least(version, "4.22") is False:
        effective = is_true(transformers_raw)
        honoured = ["TRANSFORMERS_OFFLINE"]
        if is_true(hub_raw) and not effective:
            notes.append(f"HF_HUB_OFFLINE is set but transformers {version} reads only TRANSFORMERS_OFFLINE")
    elif version and version_at_least(version, "5") is False:
        effective = is_true(transformers_raw) or hub_offline
        honoured = ["TRANSFORMERS_OFFLINE", "HF_HUB_OFFLINE"]
        if hub_hides_transformers:
            notes.append(f"HF_HUB_OFFLINE={hub_raw} makes huggingface_hub ignore TRANSFORMERS_OFFLINE=1; "
                         f"transformers {version} itself is offline")
    else:
        effective = hub_offline
        honoured = ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE (only when HF_HUB_OFFLINE is unset or empty)"]
        if hub_hides_transformers:
            notes.append(f"HF_HUB_OFFLINE={hub_raw} is set, so TRANSFORMERS_OFFLINE=1 is ignored: "
                         "huggingface_hub reads HF_HUB_OFFLINE first")
    return OfflineState(hub_raw, transformers_raw, hub_offline, effective, honoured, notes)


def endpoint_for_transformers(environ: Mapping[str, str], transformers_version: Optional[str]) -> str:
    """The endpoint in the URLs the installed transformers builds (the legacy cache keys on it)."""
    staging = is_true(environ.get("HUGGINGFACE_CO_STAGING"))
    version = transformers_version
    if version and version_at_least(version, "4.22") is False:
        default = "https://moon-staging.huggingface.co" if staging else DEFAULT_ENDPOINT
        base = environ.get("HUGGINGFACE_CO_RESOLVE_ENDPOINT") or default
        return environ.get("HF_ENDPOINT", base)  # not stripped of a trailing slash in 4.19
    if staging:
        return STAGING_ENDPOINT
    return (environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def cache_locations(environ: Mapping[str, str], versions: Mapping[str, Optional[str]]) -> Dict[str, Any]:
    """The directories the loaders read: `hub` (huggingface_hub) and `transformers`, the endpoint
    transformers builds its URLs with, and the cache variables that are set."""
    transformers_version = versions.get("transformers")
    hub = hub_cache(environ)
    return {
        "hub": {"path": hub.path, "decided_by": hub.decided_by, "layout": "hub", "hf_home": hub.hf_home},
        "transformers": transformers_cache(environ, transformers_version),
        "endpoint": endpoint_for_transformers(environ, transformers_version),
        "transformers_version": transformers_version,
        "huggingface_hub_version": versions.get("huggingface_hub"),
        "set_vars": {name: environ[name] for name in CACHE_VARS if environ.get(name) and name != "HF_ENDPOINT"},
    }


# -- huggingface_hub's own answer ----------------------------------------------------------------

CONSTANTS_SCRIPT = r"""
import json, sys
try:
    from huggingface_hub import constants as c
except Exception as exc:
    sys.stdout.write(json.dumps({"error": "%s: %s" % (type(exc).__name__, exc)}))
else:
    sys.stdout.write(json.dumps({"HF_HOME": c.HF_HOME, "HF_HUB_CACHE": c.HF_HUB_CACHE, "ENDPOINT": c.ENDPOINT,
                                 "HF_HUB_OFFLINE": bool(c.HF_HUB_OFFLINE), "HF_TOKEN_PATH": c.HF_TOKEN_PATH}))
"""


def hub_constants(ctx) -> Dict[str, Any]:
    """huggingface_hub.constants as a fresh process with this context's environment computes them
    (the library reads them at import time, so asking the harness's own import would be wrong)."""
    from ..environment import distribution

    if distribution(("huggingface-hub", "huggingface_hub")) is None:
        return {"available": False, "reason": "huggingface_hub is not installed"}
    result = ctx.runner([ctx.python, "-c", CONSTANTS_SCRIPT], CONSTANTS_TIMEOUT, dict(ctx.environ))
    if result.returncode != 0:
        return {"available": False, "reason": result.error or (result.stderr or "")[-500:]}
    try:
        data = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"available": False, "reason": "unreadable output"}
    if "error" in data:
        return {"available": False, "reason": data["error"]}
    data["available"] = True
    return data


def prefer_library_answer(locations: Dict[str, Any], constants: Dict[str, Any]) -> None:
    """The library's own answer wins for the hub chain; a mismatch is recorded, not hidden."""
    hub, transformers = locations["hub"], locations["transformers"]
    if not constants.get("available"):
        hub["source"] = "computed from the environment (" + constants.get("reason", "") + ")"
        return
    hub["constants"] = {"HF_HOME": constants["HF_HOME"], "HF_HUB_CACHE": constants["HF_HUB_CACHE"]}
    if os.path.normpath(constants["HF_HUB_CACHE"]) != os.path.normpath(hub["path"]):
        hub["mismatch"] = hub["path"]
        hub["path"] = constants["HF_HUB_CACHE"]
    hub["source"] = "huggingface_hub.constants"
    if transformers["layout"] == "hub" and transformers["decided_by"] == hub["decided_by"]:
        transformers["path"] = hub["path"]
