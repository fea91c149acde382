"""The seed's question end to end, on real parts: the fake Hub, real huggingface_hub downloads into a
temporary HF_HOME, and the tokenizer loaded by the installed transformers in a child process."""

from __future__ import annotations

import shlex
import subprocess
import sys
from importlib.util import find_spec

import pytest

from diagnostics.findings import Status
from tests.fakehub import CLIP_ID, FakeHub, closed_port, download_cli, download_cli_code, hermetic_env, make_context, \
    run_codes

# Both run in the checks' child processes (and huggingface_hub in the probes here): found, not imported.
pytestmark = [pytest.mark.cache,
              pytest.mark.skipif(find_spec("transformers") is None, reason="could not import 'transformers'"),
              pytest.mark.skipif(find_spec("huggingface_hub") is None, reason="could not import 'huggingface_hub'")]

CHECKS = ("cache.model-missing", "tokenizer.functional", "hub.dns", "hub.connect", "hub.http-status",
          "cache.offline-flag")


def verdicts(tmp_path, **env):
    ctx = make_context(hermetic_env(tmp_path, **env), tmp_path, timeout=120.0)
    found, _ = run_codes(ctx, *CHECKS)
    return {code: fs[0] for code, fs in found.items()}


def test_seed_scenario_empty_cache_no_network_default_id(tmp_path):
    found = verdicts(tmp_path, HF_ENDPOINT="https://huggingface.invalid")
    missing, tok, dns = found["cache.model-missing"], found["tokenizer.functional"], found["hub.dns"]
    assert missing.status is Status.FAIL and missing.blocking
    assert f"{download_cli()} openai/clip-vit-large-patch14 vocab.json merges.txt" in missing.fix
    assert tok.status is Status.FAIL and tok.blocking and tok.fix == missing.fix
    # transformers 5 returns a 2-token tokenizer, 4.x raises: either way the check fails, offline and fast
    assert tok.evidence["forced_offline"] is True
    assert tok.evidence.get("vocab_size") == 2 or tok.evidence.get("error_type") == "OSError"
    assert dns.status is Status.FAIL and "does not resolve" in dns.summary


def _hf_download(fix: str, env) -> None:
    """Run the `hf download ...` line of a fix (`huggingface-cli download` before huggingface_hub 0.34)
    through huggingface_hub's own CLI."""
    cli = download_cli()
    line = next(l for l in fix.splitlines() if cli in l)
    args = shlex.split(line[line.index(cli) + len(cli):])
    proc = subprocess.run([sys.executable, "-c", download_cli_code()] + args, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_fake_hub_serving_then_the_fix_then_offline(tmp_path):
    env = hermetic_env(tmp_path)
    with FakeHub() as hub:
        env["HF_ENDPOINT"] = hub.endpoint
        online = verdicts(tmp_path, HF_ENDPOINT=hub.endpoint)
        assert online["hub.http-status"].status is Status.OK
        assert online["cache.model-missing"].status is Status.WARN and not online["cache.model-missing"].blocking
        assert online["tokenizer.functional"].status is Status.OK  # loads online, like FrozenCLIPEmbedder would
        assert online["tokenizer.functional"].evidence["forced_offline"] is False
        # The fix's own command, through the real huggingface_hub, into the temporary HF_HOME:
        _hf_download(online["cache.model-missing"].fix, env)
        served = len(hub.requests)
    assert served > 0
    # Hub gone, offline mode on: everything resolves and the tokenizer is CLIP's.
    offline = verdicts(tmp_path, HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}", HF_HUB_OFFLINE="1")
    assert offline["cache.model-missing"].status is Status.OK
    assert offline["cache.offline-flag"].status is Status.OK
    assert offline["hub.dns"].status is Status.SKIP
    tok = offline["tokenizer.functional"]
    assert tok.status is Status.OK and tok.evidence["vocab_size"] == 49408
    # Hub gone, offline mode off: not a failure, the tokenizer check runs offline so it cannot stall.
    down = verdicts(tmp_path, HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}")
    assert down["hub.connect"].status is Status.INFO and not down["hub.connect"].blocking
    assert down["cache.model-missing"].status is Status.OK
    assert down["tokenizer.functional"].status is Status.OK and down["tokenizer.functional"].evidence["forced_offline"]
    assert down["cache.offline-flag"].status is Status.WARN and "HF_HUB_OFFLINE=1" in down["cache.offline-flag"].fix


def test_shadow_directory_makes_the_tokenizer_fail_even_with_the_hub_up(tmp_path):
    run = tmp_path / "app"
    (run / CLIP_ID).mkdir(parents=True)
    with FakeHub() as hub:
        ctx = make_context(hermetic_env(tmp_path, HF_ENDPOINT=hub.endpoint), run, timeout=120.0)
        found, _ = run_codes(ctx, "tokenizer.functional", "cache.shadowing-dir")
    tok = found["tokenizer.functional"][0]
    assert tok.status is Status.FAIL
    assert tok.evidence.get("vocab_size") == 2 or tok.evidence.get("error_type")
    assert found["cache.shadowing-dir"][0].status is Status.FAIL
