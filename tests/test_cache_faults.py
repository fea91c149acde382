"""Cache faults on real directories, each classified to its finding code.

The Hub is the local fake (or a closed port), so nothing leaves the machine; cache contents are
written in huggingface_hub's layout by `populate_cache`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

from diagnostics.findings import Status
from tests.fakehub import CLIP_ID, FakeHub, clip_repo, closed_port, download_cli, hermetic_env, make_context, \
    populate_cache, run_codes

pytestmark = pytest.mark.cache

CACHE_CHECKS = ("cache.location", "cache.offline-flag", "cache.model-missing", "cache.incomplete",
                "cache.not-writable", "cache.disk-space", "cache.shadowing-dir")
# Not a speed limit (machines here are shared and noisy): a guard against hanging. The time to
# classify each fault with 1 s step timeouts is measured by benchmarks/bench_seed_scenario.py.
HANG_GUARD = 60.0
REPO_ROOT = Path(__file__).resolve().parent.parent


def weights_name() -> str:
    """The weights file the installed transformers prefers (model.safetensors with safetensors)."""
    from diagnostics.probes.environment import package_versions
    from diagnostics.probes.needed_models import transformers_weight_names

    return transformers_weight_names(package_versions())[0]


def classify(tmp_path, *checks, cwd=None, **env):
    ctx = make_context(hermetic_env(tmp_path, **env), cwd or tmp_path)
    found, seconds = run_codes(ctx, *(checks or CACHE_CHECKS))
    assert seconds <= HANG_GUARD, f"classification took {seconds:.1f} s"
    return {code: fs[0] for code, fs in found.items()}


def test_offline_flag_with_an_empty_cache(tmp_path):
    with FakeHub() as hub:
        found = classify(tmp_path, HF_ENDPOINT=hub.endpoint, HF_HUB_OFFLINE="1")
    flag = found["cache.offline-flag"]
    assert flag.status is Status.FAIL and "is not fully cached" in flag.summary
    missing = found["cache.model-missing"]
    assert missing.status is Status.FAIL and "offline mode is on" in missing.summary
    # the Hub answers, so the first step is the download, with offline mode lifted for it
    first = missing.fix_steps[0]
    assert first.number == 1 and first.lang == "shell" and "HF_HUB_OFFLINE=0 " in first.code
    assert f"{download_cli()} openai/clip-vit-large-patch14 vocab.json" in first.code
    assert "tokenizer.json" not in first.code  # the Hub said it has none


def test_incomplete_blob_in_the_cache(tmp_path):
    files = clip_repo()
    weights = files.pop("model.safetensors")
    repo = populate_cache(tmp_path / "hf" / "hub", CLIP_ID, files)
    import hashlib

    partial = repo / "blobs" / (hashlib.sha256(weights).hexdigest() + ".incomplete")
    partial.write_bytes(weights[:10])
    found = classify(tmp_path, HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}")
    inc = found["cache.incomplete"]
    assert inc.status is Status.WARN and "1 interrupted download" in inc.summary
    assert f"rm -f {partial}" in inc.fix
    missing = found["cache.model-missing"]
    assert missing.status is Status.FAIL and missing.evidence["missing"] == [weights_name()]


def test_truncated_vocab_in_an_offline_cache_blocks(tmp_path):
    files = clip_repo()
    files["vocab.json"] = files["vocab.json"][:4096]
    populate_cache(tmp_path / "hf" / "hub", CLIP_ID, files)
    found = classify(tmp_path, HF_HUB_OFFLINE="1", HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}")
    inc = found["cache.incomplete"]
    assert inc.status is Status.FAIL and inc.blocking and "vocab.json" in inc.summary
    assert "--force-download" in inc.fix


def test_shadowing_directory_in_the_working_directory(tmp_path):
    populate_cache(tmp_path / "hf" / "hub", CLIP_ID, clip_repo())  # the cache is complete ...
    run = tmp_path / "app"
    (run / "openai" / "clip-vit-large-patch14").mkdir(parents=True)  # ... but this directory wins
    found = classify(tmp_path, cwd=run, HF_HUB_OFFLINE="1")
    shadow = found["cache.shadowing-dir"]
    assert shadow.status is Status.FAIL and shadow.blocking
    assert f"mv {run / CLIP_ID} {run / CLIP_ID}.bak" in shadow.fix
    missing = found["cache.model-missing"]
    assert missing.status is Status.FAIL and "treats it as a local path" in missing.summary


# -- read-only cache ------------------------------------------------------------------------------

READ_ONLY_CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from tests.fakehub import make_context, run_codes
env = json.loads(sys.argv[2])
ctx = make_context(env, sys.argv[3])
found, seconds = run_codes(ctx, "cache.not-writable")
f = found["cache.not-writable"][0]
print(json.dumps({"status": f.status.value, "summary": f.summary, "fix": f.fix, "seconds": seconds}))
"""


def _run_read_only(tmp_path, env):
    """Classify with the cache directory read-only. Non-root: mode bits. Root ignores those, so the
    check runs in a private mount namespace with a read-only tmpfs over the cache (skipped where
    namespaces are not allowed)."""
    cache = Path(env["HF_HOME"])
    cache.mkdir(parents=True)
    if os.geteuid() != 0:
        cache.chmod(0o555)
        try:
            ctx = make_context(env, tmp_path)
            found, seconds = run_codes(ctx, "cache.not-writable")
        finally:
            cache.chmod(0o755)
        f = found["cache.not-writable"][0]
        return {"status": f.status.value, "summary": f.summary, "fix": f.fix, "seconds": seconds}
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("running as root without unshare: cannot make a read-only directory")
    script = (f"mount -t tmpfs -o ro tmpfs {cache} && exec {sys.executable} -c \"$0\" \"$@\"")
    proc = subprocess.run([unshare, "-m", "sh", "-c", script, READ_ONLY_CHILD, str(REPO_ROOT), json.dumps(env),
                           str(tmp_path)], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 and "mount" in proc.stderr:
        pytest.skip(f"no mount namespace here: {proc.stderr.strip()[-200:]}")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_read_only_cache_directory(tmp_path):
    env = hermetic_env(tmp_path, HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}")
    result = _run_read_only(tmp_path, env)
    assert result["status"] == "fail"
    assert "not writable" in result["summary"] and "openai/clip-vit-large-patch14" in result["summary"]
    assert "export HF_HOME=" in result["fix"]
    assert result["seconds"] <= HANG_GUARD


def test_cache_variable_ignored_by_transformers_5(tmp_path):
    if find_spec("transformers") is None:  # the check's child process imports it, not this one
        pytest.skip("could not import 'transformers'")
    from diagnostics.probes.environment import package_versions

    if not (package_versions().get("transformers") or "").startswith("5."):
        pytest.skip("needs transformers 5")
    found = classify(tmp_path, "cache.location", TRANSFORMERS_CACHE=str(tmp_path / "tc"))
    loc = found["cache.location"]
    assert loc.status is Status.WARN and "TRANSFORMERS_CACHE" in loc.summary
    assert f"export HF_HUB_CACHE={tmp_path / 'tc'}" in loc.fix
