"""Resolving needed files from real cache directories: hub layout, legacy flat cache, local paths."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from diagnostics.probes import cache as cache_probe
from diagnostics.probes import needed_models as nm
from tests.fakehub import CLIP_ID, clip_repo, populate_cache

V5 = {"transformers": "5.24.0", "safetensors": "0.8.0", "huggingface_hub": "2.4.0"}


def _locations(tmp_path, version="5.24.0", **env):
    environ = dict({"HOME": str(tmp_path / "home"), "HF_HOME": str(tmp_path / "hf")}, **env)
    return cache_probe.cache_locations(environ, {"transformers": version})


def _clip(tmp_path, versions=V5):
    return nm.needed_models(None, [], versions, tmp_path).models[0]


LIBS = [pytest.param(None, id="builtin"), pytest.param("hub", id="huggingface_hub")]


def _lib(which):
    if which is None:
        return None
    lib = cache_probe.hub_cache_library()
    if lib is None:
        pytest.skip("huggingface_hub is not installed")
    return lib


@pytest.mark.parametrize("which", LIBS)
def test_complete_cache_resolves_every_group(tmp_path, which):
    loc = _locations(tmp_path)
    populate_cache(tmp_path / "hf" / "hub", CLIP_ID, clip_repo())
    res = cache_probe.resolve_model(_clip(tmp_path), loc, _lib(which))
    assert res["complete"] and res["missing"] == []
    assert res["files"]["vocab.json"]["state"] == "cached"
    assert res["files"]["vocab.json"]["size"] == 961143
    assert res["files"]["tokenizer.json"]["state"] == "missing"  # optional: not in the repo


@pytest.mark.parametrize("which", LIBS)
def test_empty_cache_misses_the_required_files(tmp_path, which):
    res = cache_probe.resolve_model(_clip(tmp_path), _locations(tmp_path), _lib(which))
    assert res["missing"] == ["vocab.json", "merges.txt", "config.json", "model.safetensors"]
    assert not res["complete"]


@pytest.mark.parametrize("which", LIBS)
def test_deleted_blob_is_a_broken_link(tmp_path, which):
    repo = populate_cache(tmp_path / "hf" / "hub", CLIP_ID, clip_repo())
    target = os.path.realpath(repo / "snapshots" / os.listdir(repo / "snapshots")[0] / "merges.txt")
    os.unlink(target)
    res = cache_probe.resolve_model(_clip(tmp_path), _locations(tmp_path), _lib(which))
    assert res["files"]["merges.txt"]["state"] == "broken-link"
    assert "merges.txt" in res["missing"]


@pytest.mark.parametrize("which", LIBS)
def test_truncated_json_is_corrupt(tmp_path, which):
    files = clip_repo()
    files["vocab.json"] = files["vocab.json"][:1000]
    populate_cache(tmp_path / "hf" / "hub", CLIP_ID, files)
    res = cache_probe.resolve_model(_clip(tmp_path), _locations(tmp_path), _lib(which))
    assert res["files"]["vocab.json"]["state"] == "corrupt"
    assert "not valid JSON" in res["files"]["vocab.json"]["problem"]
    assert res["corrupt"] == ["vocab.json"] and not res["complete"]


def test_known_absent_file_is_not_missing(tmp_path):
    repo = populate_cache(tmp_path / "hf" / "hub", CLIP_ID, clip_repo())
    (repo / ".no_exist" / "32bd64288804d66eefd0ccbe215aa642df71cc41").mkdir(parents=True)
    (repo / ".no_exist" / "32bd64288804d66eefd0ccbe215aa642df71cc41" / "tokenizer.json").touch()
    for which in (None, "hub"):
        res = cache_probe.resolve_model(_clip(tmp_path), _locations(tmp_path), _lib(which))
        assert res["files"]["tokenizer.json"]["state"] == "known-absent"


def _legacy_write(cache_dir, endpoint, repo, name, data):
    url = f"{endpoint}/{repo}/resolve/main/{name}"
    stem = hashlib.sha256(url.encode()).hexdigest() + "." + hashlib.sha256(b'"etag"').hexdigest()
    (cache_dir / stem).write_bytes(data)
    (cache_dir / (stem + ".json")).write_text(json.dumps({"url": url, "etag": '"etag"'}))


def test_legacy_flat_cache_is_found_by_url_hash(tmp_path):
    loc = _locations(tmp_path, version="4.19.2")
    cache_dir = tmp_path / "hf" / "transformers"
    cache_dir.mkdir(parents=True)
    for name, data in clip_repo().items():
        _legacy_write(cache_dir, "https://huggingface.co", CLIP_ID, name.replace("model.safetensors", "pytorch_model.bin"),
                      data)
    model = _clip(tmp_path, {"transformers": "4.19.2"})
    res = cache_probe.resolve_model(model, loc)
    assert res["layout"] == "legacy" and res["complete"], res["missing"]


def test_legacy_cache_filled_through_another_endpoint_is_invisible(tmp_path):
    loc = _locations(tmp_path, version="4.19.2", HF_ENDPOINT="https://hf-mirror.example")
    cache_dir = tmp_path / "hf" / "transformers"
    cache_dir.mkdir(parents=True)
    _legacy_write(cache_dir, "https://huggingface.co", CLIP_ID, "vocab.json", b"{}")
    res = cache_probe.resolve_model(_clip(tmp_path, {"transformers": "4.19.2"}), loc)
    state = res["files"]["vocab.json"]
    assert state["state"] == "other-endpoint" and state["cached_endpoint"] == "https://huggingface.co"


def test_local_directory_model(tmp_path):
    local = tmp_path / "clip"
    local.mkdir()
    for name, data in clip_repo().items():
        if name != "merges.txt":
            (local / name).write_bytes(data)
    model = nm.model_entry(str(local), "FrozenCLIPEmbedder", "test", nm.clip_text_groups(V5), tmp_path)
    res = cache_probe.resolve_model(model, _locations(tmp_path))
    assert res["layout"] == "local" and res["missing"] == ["merges.txt"]


@pytest.mark.parametrize("which", LIBS)
def test_scan_reports_incomplete_downloads_and_broken_links(tmp_path, which):
    hub = tmp_path / "hf" / "hub"
    repo = populate_cache(hub, CLIP_ID, clip_repo())
    (repo / "blobs" / ("ab" * 32 + ".incomplete")).write_bytes(b"partial")
    os.unlink(os.path.realpath(repo / "snapshots" / os.listdir(repo / "snapshots")[0] / "config.json"))
    scan = cache_probe.scan_cache(str(hub), "hub", _lib(which))
    assert [i["repo"] for i in scan["incomplete"]] == [CLIP_ID]
    assert any("broken symlink" in w for w in scan["warnings"])


def test_scan_of_a_missing_cache_is_empty(tmp_path):
    scan = cache_probe.scan_cache(str(tmp_path / "nope"), "hub", cache_probe.hub_cache_library())
    assert scan["exists"] is False and scan["incomplete"] == [] and scan["warnings"] == []


def test_writable_checks_the_nearest_existing_parent(tmp_path):
    facts = cache_probe.writable(str(tmp_path / "not" / "yet"))
    assert facts["writable"] is True and facts["checked"] == str(tmp_path)
    assert not list(tmp_path.iterdir())  # the probe file is gone


def test_shadow_dirs_in_cwd_and_code_root(tmp_path):
    cwd, root = tmp_path / "run", tmp_path / "code"
    (cwd / "openai" / "clip-vit-large-patch14").mkdir(parents=True)
    (root / "openai" / "clip-vit-large-patch14").mkdir(parents=True)
    for name, data in clip_repo().items():
        (root / "openai" / "clip-vit-large-patch14" / name).write_bytes(data)
    model = nm.needed_models(None, [], V5, tmp_path).models
    found = cache_probe.shadow_dirs(model, cwd, str(root))
    assert [(s["base"], s["complete"]) for s in found] == [("working directory", False), ("code root", True)]
    assert found[0]["missing"] == ["vocab.json", "merges.txt", "config.json", "model.safetensors"]
