"""Where each installed version looks for the cache, and which offline variables it honours."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from diagnostics.probes import cache as cache_probe

HOME = {"HOME": "/home/u"}


def test_hf_home_precedence_follows_huggingface_hub():
    assert cache_probe.hf_home(HOME) == ("/home/u/.cache/huggingface", "default (~/.cache/huggingface)")
    assert cache_probe.hf_home(dict(HOME, XDG_CACHE_HOME="/x")) == ("/x/huggingface", "XDG_CACHE_HOME")
    assert cache_probe.hf_home(dict(HOME, XDG_CACHE_HOME="/x", HF_HOME="~/hf")) == ("/home/u/hf", "HF_HOME")


def test_hub_cache_precedence_and_legacy_name():
    env = dict(HOME, HF_HOME="/h")
    assert cache_probe.hub_cache(env).path == "/h/hub"
    assert cache_probe.hub_cache(dict(env, HUGGINGFACE_HUB_CACHE="/legacy")).decided_by.startswith("HUGGINGFACE_HUB_CACHE")
    both = cache_probe.hub_cache(dict(env, HUGGINGFACE_HUB_CACHE="/legacy", HF_HUB_CACHE="/new"))
    assert (both.path, both.decided_by) == ("/new", "HF_HUB_CACHE")


def test_expand_uses_the_injected_environment_not_the_process_one():
    env = {"HOME": "/somewhere", "BASE": "/data"}
    assert cache_probe.expand("~/x", env) == "/somewhere/x"
    assert cache_probe.expand("$BASE/hf", env) == "/data/hf"
    assert cache_probe.expand("${BASE}/hf/$UNSET", env) == "/data/hf/$UNSET"


@pytest.mark.parametrize("version,env,path,layout,ignored", [
    # transformers 4.19 (the SD environment): flat cache under $HF_HOME/transformers
    ("4.19.2", {"HF_HOME": "/h"}, "/h/transformers", "legacy", []),
    ("4.19.2", {"HF_HOME": "/h", "HF_HUB_CACHE": "/hc"}, "/h/transformers", "legacy", ["HF_HUB_CACHE"]),
    ("4.19.2", {"TRANSFORMERS_CACHE": "/tc"}, "/tc", "legacy", []),
    # 4.30: TRANSFORMERS_CACHE > HUGGINGFACE_HUB_CACHE; HF_HUB_CACHE is ignored (knowledge base Ex-3 T4)
    ("4.30.2", {"HF_HOME": "/h", "HF_HUB_CACHE": "/hc"}, "/h/hub", "hub", ["HF_HUB_CACHE"]),
    ("4.30.2", {"HUGGINGFACE_HUB_CACHE": "/l", "TRANSFORMERS_CACHE": "/tc"}, "/tc", "hub", []),
    # 4.36+: the hub chain behind TRANSFORMERS_CACHE
    ("4.40.2", {"HF_HOME": "/h", "HF_HUB_CACHE": "/hc"}, "/hc", "hub", []),
    ("4.40.2", {"HF_HUB_CACHE": "/hc", "TRANSFORMERS_CACHE": "/tc"}, "/tc", "hub", []),
    # 5.x: TRANSFORMERS_CACHE is no longer read (Ex-2 M5)
    ("5.24.0", {"HF_HOME": "/h", "TRANSFORMERS_CACHE": "/tc"}, "/h/hub", "hub", ["TRANSFORMERS_CACHE"]),
    ("5.24.0", {"HF_HUB_CACHE": "/hc"}, "/hc", "hub", []),
])
def test_transformers_cache_per_version(version, env, path, layout, ignored):
    loc = cache_probe.transformers_cache(dict(HOME, **env), version)
    assert (loc["path"], loc["layout"], loc["ignored"]) == (path, layout, ignored)


@pytest.mark.parametrize("version,env,effective,noted", [
    ("5.24.0", {"HF_HUB_OFFLINE": "1"}, True, False),
    ("5.24.0", {"TRANSFORMERS_OFFLINE": "yes"}, True, False),
    ("5.24.0", {"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "1"}, False, True),  # the `or` short-circuit
    ("5.24.0", {"HF_HUB_OFFLINE": "true"}, True, False),
    ("5.24.0", {"HF_HUB_OFFLINE": "no"}, False, False),
    ("4.19.2", {"HF_HUB_OFFLINE": "1"}, False, True),  # 4.19 reads only TRANSFORMERS_OFFLINE
    ("4.19.2", {"TRANSFORMERS_OFFLINE": "1"}, True, False),
    ("4.30.2", {"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "1"}, True, True),
])
def test_offline_state_per_version(version, env, effective, noted):
    state = cache_probe.offline_state(env, version)
    assert state.effective is effective
    assert bool(state.notes) is noted


def test_legacy_endpoint_is_not_stripped_and_honours_the_deprecated_variable():
    assert cache_probe.endpoint_for_transformers({"HUGGINGFACE_CO_RESOLVE_ENDPOINT": "http://m"}, "4.19.2") == "http://m"
    assert cache_probe.endpoint_for_transformers({"HF_ENDPOINT": "http://m/"}, "4.19.2") == "http://m/"
    assert cache_probe.endpoint_for_transformers({"HF_ENDPOINT": "http://m/"}, "5.24.0") == "http://m"


ENVS = [
    {},
    {"HF_HOME": "{tmp}/a"},
    {"XDG_CACHE_HOME": "{tmp}/x"},
    {"HF_HOME": "{tmp}/a", "HUGGINGFACE_HUB_CACHE": "{tmp}/legacy"},
    {"HF_HOME": "{tmp}/a", "HUGGINGFACE_HUB_CACHE": "{tmp}/legacy", "HF_HUB_CACHE": "{tmp}/new"},
    {"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "1"},
    {"TRANSFORMERS_OFFLINE": "on"},
]


@pytest.mark.parametrize("extra", ENVS)
def test_computed_locations_match_huggingface_hub_constants(tmp_path, extra):
    """The rules mirrored here give what the installed huggingface_hub computes from the same environment."""
    pytest.importorskip("huggingface_hub")
    env = {"HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    env.update({k: v.format(tmp=tmp_path) for k, v in extra.items()})
    out = subprocess.run([sys.executable, "-c", cache_probe.CONSTANTS_SCRIPT], env=env, capture_output=True,
                         text=True, timeout=60)
    constants = json.loads(out.stdout)
    assert cache_probe.hub_cache(env).path == constants["HF_HUB_CACHE"]
    assert cache_probe.hf_home(env)[0] == constants["HF_HOME"]
    assert cache_probe.offline_state(env, "5.24.0").hub_offline is constants["HF_HUB_OFFLINE"]
