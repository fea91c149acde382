"""`--hash`: sha256, AutoV2 and the legacy A1111 hash, and the cache that makes a rerun instant."""

import hashlib
import os
import shutil
import subprocess

import pytest

from diagnostics.probes.checkpoint import hashing, inspect_checkpoint


@pytest.fixture
def blob(tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 123)
    path = tmp_path / "model.ckpt"
    path.write_bytes(data)
    return path, data


def env_for(tmp_path):
    return {"LDM_DIAG_CACHE_DIR": str(tmp_path / "cache")}


def test_hashes_are_the_documented_ones(tmp_path, blob):
    path, data = blob
    facts = inspect_checkpoint(str(path), want_hash=True, environ=env_for(tmp_path))
    h = facts["hash"]
    full = hashlib.sha256(data).hexdigest()
    assert h["sha256"] == facts["sha256"] == full and h["autov2"] == full[:10]
    assert h["legacy"] == hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]
    assert h["cached"] is False


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="no sha256sum here")
def test_sha256_agrees_with_sha256sum(tmp_path, blob):
    path, _ = blob
    out = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True).stdout.split()[0]
    assert inspect_checkpoint(str(path), want_hash=True, environ=env_for(tmp_path))["sha256"] == out


def test_rerun_comes_from_the_cache_without_reading(tmp_path, blob, monkeypatch):
    path, _ = blob
    first = inspect_checkpoint(str(path), want_hash=True, environ=env_for(tmp_path))["hash"]

    def must_not_read(*args, **kwargs):
        raise AssertionError("the cached hash was recomputed")

    monkeypatch.setattr(hashing, "sha256_file", must_not_read)
    second = inspect_checkpoint(str(path), want_hash=True, environ=env_for(tmp_path))["hash"]
    assert second["cached"] is True and second["sha256"] == first["sha256"] and second["legacy"] == first["legacy"]


def test_a_rewritten_file_is_hashed_again(tmp_path, blob):
    path, data = blob
    inspect_checkpoint(str(path), want_hash=True, environ=env_for(tmp_path))
    changed = data[:-1] + bytes([data[-1] ^ 0xFF])
    path.write_bytes(changed)
    st = path.stat()
    os.utime(str(path), ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    h = inspect_checkpoint(str(path), want_hash=True, environ=env_for(tmp_path))["hash"]
    assert h["cached"] is False and h["sha256"] == hashlib.sha256(changed).hexdigest()


def test_small_file_legacy_hash_reads_past_the_end_like_a1111(tmp_path):
    data = b"tiny"
    path = tmp_path / "small.safetensors"
    path.write_bytes(data)
    h = inspect_checkpoint(str(path), want_hash=True, environ=env_for(tmp_path))["hash"]
    assert h["legacy"] == hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]


def test_unwritable_cache_is_a_fact_not_an_error(tmp_path, blob):
    path, data = blob
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    h = inspect_checkpoint(str(path), want_hash=True, environ={"LDM_DIAG_CACHE_DIR": str(blocker / "sub")})["hash"]
    assert h["sha256"] == hashlib.sha256(data).hexdigest() and h.get("cache_error")


def test_default_cache_location_follows_xdg(tmp_path):
    assert hashing.cache_path({"XDG_CACHE_HOME": str(tmp_path)}) == str(tmp_path / "ldm-diagnostics" / "hashes.json")
    assert hashing.cache_path({"LDM_DIAG_CACHE_DIR": "/x"}) == os.path.join("/x", "hashes.json")
