"""Network faults against a real local server, each classified to its finding code within its timeout.

Every test runs the hub checks (and cache.model-missing) on an empty cache with 1-second step
timeouts (LDM_DIAG_NET_TIMEOUT=1) and asserts the failing step, the others' outcome, and that the
classification took at most the probe's timeout budget plus one second.
"""

from __future__ import annotations

import pytest

from diagnostics.findings import Status
from tests.fakehub import CLIP_ID, FakeHub, closed_port, hermetic_env, make_context, populate_cache, run_codes, \
    clip_repo, self_signed_cert

pytestmark = pytest.mark.network

HUB_CHECKS = ("hub.endpoint", "hub.proxy", "hub.dns", "hub.connect", "hub.tls", "hub.http-status", "cache.model-missing")
# Not a speed limit (machines here are shared and noisy): a guard against hanging. The time to
# classify each fault with 1 s step timeouts is measured by benchmarks/bench_seed_scenario.py.
HANG_GUARD = 60.0


def classify(tmp_path, **env):
    ctx = make_context(hermetic_env(tmp_path, **env), tmp_path)
    found, seconds = run_codes(ctx, *HUB_CHECKS)
    assert seconds <= HANG_GUARD, f"classification took {seconds:.1f} s"
    return {code: fs[0] for code, fs in found.items()}, seconds


def statuses(found):
    return {code: f.status for code, f in found.items()}


def test_unresolvable_host_is_a_dns_failure(tmp_path):
    found, _ = classify(tmp_path, HF_ENDPOINT="https://huggingface.invalid")
    assert found["hub.dns"].status is Status.FAIL and "huggingface.invalid does not resolve" in found["hub.dns"].summary
    assert found["hub.connect"].status is Status.SKIP and found["hub.http-status"].status is Status.SKIP
    assert found["cache.model-missing"].status is Status.FAIL and "hub.dns" in found["cache.model-missing"].summary


def test_closed_port_is_a_connect_failure(tmp_path):
    found, _ = classify(tmp_path, HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}")
    assert found["hub.dns"].status is Status.OK
    conn = found["hub.connect"]
    assert conn.status is Status.FAIL and conn.evidence["kind"] == "refused" and "port is closed" in conn.summary
    assert found["hub.http-status"].status is Status.SKIP


def test_server_that_never_answers_is_an_http_timeout(tmp_path):
    with FakeHub(mode="hang") as hub:
        found, seconds = classify(tmp_path, HF_ENDPOINT=hub.endpoint)
    assert found["hub.connect"].status is Status.OK
    http = found["hub.http-status"]
    assert http.status is Status.FAIL and "does not answer in time" in http.summary
    assert seconds <= HANG_GUARD  # the real figure (one parallel round of 1 s HEADs) is benchmarked


def test_self_signed_certificate_is_a_tls_failure(tmp_path):
    cert = self_signed_cert(tmp_path)
    with FakeHub(tls=cert) as hub:
        found, _ = classify(tmp_path, HF_ENDPOINT=hub.endpoint)
    tls = found["hub.tls"]
    assert tls.status is Status.FAIL and "self-signed" in tls.summary
    assert "SSL_CERT_FILE" in tls.fix and "REQUESTS_CA_BUNDLE" in tls.fix
    assert found["hub.http-status"].status is Status.SKIP


def test_custom_ca_bundle_makes_the_self_signed_mirror_trusted(tmp_path):
    cert = self_signed_cert(tmp_path)
    with FakeHub(tls=cert) as hub:
        found, _ = classify(tmp_path, HF_ENDPOINT=hub.endpoint, SSL_CERT_FILE=cert[0], REQUESTS_CA_BUNDLE=cert[0])
    assert found["hub.tls"].status is Status.OK and found["hub.tls"].evidence["ca"]["variable"] in (
        "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
    assert found["hub.http-status"].status is Status.OK


def test_gated_repo_401(tmp_path):
    with FakeHub(mode="gated") as hub:
        found, _ = classify(tmp_path, HF_ENDPOINT=hub.endpoint)
    http = found["hub.http-status"]
    assert http.status is Status.FAIL and "gated" in http.summary and "HTTP 401" in http.summary
    assert "X-Error-Code GatedRepo" in http.summary and "hf auth login" in http.fix


def test_invalid_token_401_names_the_variable_not_the_value(tmp_path):
    with FakeHub(mode="bad-token") as hub:
        found, _ = classify(tmp_path, HF_ENDPOINT=hub.endpoint, HF_TOKEN="hf_not_a_real_token_123")
        sent = {r["authorization"] for r in hub.requests}
    http = found["hub.http-status"]
    assert http.status is Status.FAIL and "invalid or expired" in http.summary and "unset HF_TOKEN" in http.fix
    assert sent == {"present"}  # the token was sent, as the loaders would
    assert "hf_not_a_real_token_123" not in repr([f.to_dict() for f in found.values()])


def test_unknown_repo_404(tmp_path):
    with FakeHub(mode="404") as hub:
        found, _ = classify(tmp_path, HF_ENDPOINT=hub.endpoint)
    http = found["hub.http-status"]
    assert http.status is Status.FAIL and "does not exist or is private" in http.summary


def test_server_error_500(tmp_path):
    with FakeHub(mode="500") as hub:
        found, _ = classify(tmp_path, HF_ENDPOINT=hub.endpoint)
    http = found["hub.http-status"]
    assert http.status is Status.FAIL and "HTTP 500" in http.summary and "server error" in http.summary


def test_proxy_on_a_closed_port_is_a_proxy_failure(tmp_path):
    port = closed_port()
    with FakeHub() as hub:
        found, _ = classify(tmp_path, HF_ENDPOINT=hub.endpoint, HTTP_PROXY=f"http://user:pw@127.0.0.1:{port}")
        assert hub.requests == []
    proxy = found["hub.proxy"]
    assert proxy.status is Status.FAIL and "refuses or drops connections" in proxy.summary
    assert "pw" not in proxy.summary and "***@127.0.0.1" in proxy.summary
    assert found["hub.connect"].status is Status.SKIP and found["hub.http-status"].status is Status.SKIP
    assert "hub.proxy" in found["cache.model-missing"].summary


def test_answer_without_repo_commit_is_not_the_hub(tmp_path):
    with FakeHub(mode="not-hub") as hub:
        found, _ = classify(tmp_path, HF_ENDPOINT=hub.endpoint)
    assert "not the Hub" in found["hub.http-status"].summary


def test_unreachable_cdn_for_the_weights(tmp_path):
    with FakeHub() as hub:
        hub.cdn_mode = "down"
        # a roomy timeout: the fault is a refused connection, so a loaded machine must not turn the
        # healthy Hub steps into timeouts
        found, _ = classify(tmp_path, HF_ENDPOINT=hub.endpoint, LDM_DIAG_NET_TIMEOUT="5")
    http = found["hub.http-status"]
    assert http.status is Status.FAIL and "the weights are served from 127.0.0.1" in http.summary


def test_healthy_hub_passes_every_step(tmp_path):
    with FakeHub() as hub:  # nothing times out on a healthy Hub: a roomy timeout for loaded machines
        found, _ = classify(tmp_path, HF_ENDPOINT=hub.endpoint, LDM_DIAG_NET_TIMEOUT="5")
    assert statuses(found) == {
        "hub.endpoint": Status.INFO, "hub.proxy": Status.OK, "hub.dns": Status.OK, "hub.connect": Status.OK,
        "hub.tls": Status.SKIP, "hub.http-status": Status.OK, "cache.model-missing": Status.WARN}
    assert not found["cache.model-missing"].blocking


def test_network_down_with_everything_cached_is_not_a_failure(tmp_path):
    populate_cache(tmp_path / "hf" / "hub", CLIP_ID, clip_repo())
    found, _ = classify(tmp_path, HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}")
    assert found["hub.connect"].status is Status.INFO and not found["hub.connect"].blocking
    assert found["cache.model-missing"].status is Status.OK


def test_offline_mode_with_everything_cached_skips_the_network(tmp_path):
    populate_cache(tmp_path / "hf" / "hub", CLIP_ID, clip_repo())
    with FakeHub() as hub:
        found, _ = classify(tmp_path, HF_ENDPOINT=hub.endpoint, HF_HUB_OFFLINE="1")
        assert hub.requests == []
    assert all(found[c].status is Status.SKIP for c in HUB_CHECKS if c.startswith("hub."))
    assert found["cache.model-missing"].status is Status.OK


def test_ca_bundle_variable_naming_a_missing_file(tmp_path):
    cert = self_signed_cert(tmp_path)
    with FakeHub(tls=cert) as hub:
        found, _ = classify(tmp_path, HF_ENDPOINT=hub.endpoint, SSL_CERT_FILE=str(tmp_path / "missing.pem"),
                            REQUESTS_CA_BUNDLE=str(tmp_path / "missing.pem"))
    tls = found["hub.tls"]
    assert tls.status is Status.FAIL and "cannot be loaded" in tls.summary and "unset" in tls.fix


def test_a_complete_cache_online_makes_no_network_call_for_the_cache_verdicts(tmp_path):
    populate_cache(tmp_path / "hf" / "hub", CLIP_ID, clip_repo())
    with FakeHub() as hub:
        ctx = make_context(hermetic_env(tmp_path, HF_ENDPOINT=hub.endpoint), tmp_path)
        found, _ = run_codes(ctx, "cache.model-missing", "cache.incomplete", "cache.disk-space")
        assert hub.requests == []
    assert "hub" not in ctx.facts  # the on-demand network probe was never asked for
    assert found["cache.model-missing"][0].status is Status.OK
    assert found["cache.disk-space"][0].status is Status.OK
