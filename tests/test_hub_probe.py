"""The network probe's pure parts: endpoint, proxies, CA choice, redaction, reading Hub answers."""

from __future__ import annotations

import pytest

from diagnostics import redact
from diagnostics.probes import hub


def test_endpoint_default_mirror_and_invalid():
    assert hub.resolve_endpoint({}).url == "https://huggingface.co"
    mirror = hub.resolve_endpoint({"HF_ENDPOINT": "https://hf-mirror.com/"})
    assert (mirror.url, mirror.source, mirror.port) == ("https://hf-mirror.com", "HF_ENDPOINT", 443)
    assert not hub.resolve_endpoint({"HF_ENDPOINT": "hf-mirror.com"}).valid
    assert "path" in hub.resolve_endpoint({"HF_ENDPOINT": "https://x.org/api"}).error
    assert hub.resolve_endpoint({"HUGGINGFACE_CO_STAGING": "1"}).url == "https://hub-ci.huggingface.co"


def test_credentials_are_redacted_from_urls_and_text():
    assert redact.redact_url("http://user:s3cret@proxy:3128") == "http://***@proxy:3128"
    assert redact.redact_url("https://h.co/x?token=abc") == "https://h.co/x"
    text = "ProxyError('http://bob:pw@10.0.0.1:8080' ...) Authorization: Bearer hf_abcdefgh"
    scrubbed = redact.scrub(text, secrets=["hf_abcdefgh"])
    assert "pw" not in scrubbed and "hf_abcdefgh" not in scrubbed and "bob" not in scrubbed


def test_token_source_shows_presence_never_the_value(tmp_path):
    facts = hub.token_source({"HF_TOKEN": "hf_secret_value"})
    assert facts.present and facts.source == "HF_TOKEN"
    (tmp_path / "token").write_text("hf_file_token\n")
    from_file = hub.token_source({"HF_HOME": str(tmp_path)})
    assert from_file.source == "token file" and from_file.value == "hf_file_token"
    assert not hub.token_source({"HF_HOME": str(tmp_path / "none")}).present


def test_probe_facts_never_contain_the_token(tmp_path):
    facts = hub.probe_network({"HF_TOKEN": "hf_do_not_leak", "HF_ENDPOINT": "no-scheme"}, {}, [])
    assert "hf_do_not_leak" not in repr(facts)
    assert facts.token.to_dict() == {"present": True, "source": "HF_TOKEN", "implicit_disabled": False}


def test_probe_facts_never_contain_credentials_of_endpoint_or_proxy():
    from tests.fakehub import closed_port

    models = [{"kind": "hub", "repo_id": "openai/clip-vit-large-patch14", "ref": "openai/clip-vit-large-patch14",
               "groups": [{"names": ["vocab.json"], "required": True}]}]
    env = {"HF_ENDPOINT": f"http://alice:endpoint-pw@127.0.0.1:{closed_port()}",
           "HTTP_PROXY": f"http://bob:proxy-pw@127.0.0.1:{closed_port()}", "LDM_DIAG_NET_TIMEOUT": "1"}
    facts = hub.probe_network(env, {}, models)
    text = repr(facts)
    assert "endpoint-pw" not in text and "proxy-pw" not in text and "alice" not in text and "bob" not in text
    assert facts.proxy.display.startswith("http://***@127.0.0.1:")


@pytest.mark.parametrize("env,scheme,expected", [
    ({"HTTPS_PROXY": "http://p:1"}, "https", ("http://p:1", "HTTPS_PROXY")),
    ({"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:1"}, "https", ("http://lower:1", "https_proxy")),
    ({"HTTP_PROXY": "http://p:1"}, "https", None),
    ({"ALL_PROXY": "socks5://p:1"}, "all", ("socks5://p:1", "ALL_PROXY")),
])
def test_environment_proxies(env, scheme, expected):
    assert hub.environment_proxies(env).get(scheme) == expected


@pytest.mark.parametrize("host,no_proxy,bypass", [
    ("huggingface.co", "huggingface.co", True), ("cdn.huggingface.co", ".huggingface.co", True),
    ("huggingface.co", "*.huggingface.co", True), ("nothuggingface.co", "huggingface.co", False),
    ("10.1.2.3", "10.0.0.0/8", True), ("127.0.0.1", "localhost,127.0.0.1", True), ("a.b", "*", True),
    ("huggingface.co", "", False),
])
def test_no_proxy_matching(host, no_proxy, bypass):
    assert hub.bypasses_proxy(host, no_proxy) is bypass


def test_select_proxy_for_the_endpoint():
    ep = hub.resolve_endpoint({})
    chosen = hub.select_proxy(ep, {"HTTPS_PROXY": "http://u:p@proxy.corp:3128"})
    assert (chosen.host, chosen.port, chosen.display) == ("proxy.corp", 3128, "http://***@proxy.corp:3128")
    bypassed = hub.select_proxy(ep, {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "huggingface.co"})
    assert bypassed.url is None and bypassed.bypassed_by == "NO_PROXY"
    assert hub.select_proxy(ep, {"HTTPS_PROXY": "proxy:3128"}).url == "http://proxy:3128"


@pytest.mark.parametrize("versions,env,client,var", [
    ({"huggingface_hub": "0.10.1", "transformers": "4.19.2"}, {"REQUESTS_CA_BUNDLE": "/ca.pem", "SSL_CERT_FILE": "/x"},
     "requests", "REQUESTS_CA_BUNDLE"),
    ({"huggingface_hub": "0.25.2"}, {}, "requests", None),
    ({"huggingface_hub": "2.4.0"}, {"REQUESTS_CA_BUNDLE": "/ca.pem", "SSL_CERT_FILE": "/corp.pem"}, None, "SSL_CERT_FILE"),
    ({"huggingface_hub": "2.4.0"}, {"REQUESTS_CA_BUNDLE": "/ca.pem"}, None, None),  # httpx ignores REQUESTS_CA_BUNDLE
])
def test_loader_ca_follows_the_http_client_of_the_installed_huggingface_hub(versions, env, client, var):
    ca = hub.loader_ca(env, versions)
    assert ca.variable == var
    if client:
        assert ca.client == client
    else:
        assert ca.client in ("httpx", "httpx2")


@pytest.mark.parametrize("status,headers,token,outcome", [
    (200, {"X-Repo-Commit": "abc"}, False, "ok"),
    (302, {"X-Repo-Commit": "abc", "Location": "https://cdn/x"}, False, "redirect"),
    (200, {"Content-Type": "text/html"}, False, "not-hub"),
    (401, {"X-Error-Code": "GatedRepo"}, False, "gated"),
    (403, {"X-Error-Code": "GatedRepo"}, True, "gated"),
    (401, {"X-Error-Message": "Invalid credentials in Authorization header"}, True, "bad-token"),
    (401, {"X-Error-Code": "RepoNotFound"}, False, "repo-not-found"),
    (404, {"X-Error-Code": "RepoNotFound"}, True, "repo-not-found"),
    (404, {"X-Error-Code": "EntryNotFound"}, False, "file-not-found"),
    (403, {"Content-Type": "text/html"}, False, "blocked"),
    (429, {}, False, "rate-limited"),
    (503, {}, False, "server-error"),
])
def test_classify_hub_answers(status, headers, token, outcome):
    assert hub.classify_response(status, headers, token) == outcome


def test_dns_of_an_ip_literal_needs_no_lookup():
    facts = hub.step_dns("127.0.0.1", 80, 1.0)
    assert facts["status"] == "ok" and facts["literal"]


def test_net_timeouts_from_environment():
    assert hub.NetTimeouts.from_environ({"LDM_DIAG_NET_TIMEOUT": "0.5"}).http == 0.5
    assert hub.NetTimeouts.from_environ({"LDM_DIAG_NET_TIMEOUT": "junk"}).dns == hub.NetTimeouts().dns
