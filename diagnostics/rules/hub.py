"""Where the way to the Hugging Face Hub breaks (hub.*), judged by what loading needs.

A network failure is blocking only when a needed file is not cached (or a needed download would
go through it); with everything cached it is information, or a warning when it costs start-up time
(timeouts). Each step's finding says what failed, the evidence (host, address, proxy, CA bundle,
HTTP status and `X-Error-Code`), and the command that fixes it.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional
from urllib.parse import urlsplit

from ..findings import Finding, Status, skip
from ..probes.cache import probe_cache
from ..probes.environment import probe_environment
from ..probes.hub import probe_hub
from ..probes.needed_models import probe_needed_models
from ..registry import Check
from .cache import offline_var, q

OFFLINE_HINT = "this machine cannot reach the Hub: provision the files instead (cache.model-missing gives the " \
               "commands) and start with `{offline}`"


def _severity(need: bool, timeout: bool = False) -> Status:
    if need:
        return Status.FAIL
    return Status.WARN if timeout else Status.INFO


def _not_applicable(code: str, title: str, hub: Dict[str, Any]) -> Optional[Finding]:
    if "skipped" in hub:
        return skip(code, title, hub["skipped"].capitalize() + ".")
    return None


def _unreached(code: str, title: str, step: Dict[str, Any]) -> Optional[Finding]:
    if step.get("status") == "not-reached":
        return skip(code, title, f"Not reached: {step.get('reason')}.")
    return None


def _consequence(need: bool, offline: str) -> str:
    if need:
        return "A needed file is not cached, so loading will fail until this is fixed."
    return (f"Everything needed is cached, so loading still works; `{offline}` skips the Hub round trips.")


def rule_endpoint(hub: Dict[str, Any], need: bool, offline: str) -> Finding:
    code, title = "hub.endpoint", "Hub endpoint (HF_ENDPOINT)"
    na = _not_applicable(code, title, hub)
    if na:
        return na
    ep, token = hub["endpoint"], hub.get("token", {})
    evidence = {"endpoint": ep.get("display"), "source": ep.get("source"),
                "token": {"present": token.get("present"), "source": token.get("source"),
                          "HF_HUB_DISABLE_IMPLICIT_TOKEN": token.get("implicit_disabled")}}
    token_text = (f"a token is set ({token['source']}; value not shown)" if token.get("present")
                  else "no token is set")
    if not ep.get("valid"):
        return Finding(code, _severity(need), title,
                       f"The Hub endpoint {ep.get('display')!r} from {ep.get('source')} is not usable: {ep.get('error')}.",
                       evidence=evidence,
                       cause="huggingface_hub builds every URL as <endpoint>/<repo>/resolve/<revision>/<file>.",
                       fix="`unset HF_ENDPOINT` to use https://huggingface.co, or set it to the mirror's base URL, "
                           "e.g. `export HF_ENDPOINT=https://hf-mirror.com`.")
    if ep.get("source") != "default":
        return Finding(code, Status.INFO, title,
                       f"Downloads go to {ep['display']} (set by {ep['source']}), not huggingface.co; {token_text}.",
                       evidence=evidence,
                       cause="A mirror must hold every needed repo; transformers < 4.22 caches per endpoint, so files "
                             "fetched through another endpoint are not found (K01 d).",
                       fix="If the mirror is not intended: `unset HF_ENDPOINT`.")
    return Finding(code, Status.OK, title, f"{ep['display']} (default); {token_text}.", evidence=evidence)


def rule_proxy(hub: Dict[str, Any], need: bool, offline: str) -> Finding:
    code, title = "hub.proxy", "Proxy settings"
    na = _not_applicable(code, title, hub)
    if na:
        return na
    proxy = hub.get("proxy", {})
    evidence = {"proxy": proxy.get("display"), "variable": proxy.get("variable"), "no_proxy": proxy.get("no_proxy"),
                "bypassed_by": proxy.get("bypassed_by"), "proxy_variables_set": proxy.get("set")}
    host = hub.get("endpoint", {}).get("host")
    if not proxy.get("variable"):
        extra = f" ({', '.join(proxy['set'])} set for other schemes)" if proxy.get("set") else ""
        return Finding(code, Status.OK, title, f"No proxy applies to {host}: direct connection{extra}.",
                       evidence=evidence)
    if proxy.get("bypassed_by"):
        return Finding(code, Status.INFO, title,
                       f"{proxy['variable']}={proxy['display']} is set, but {proxy['bypassed_by']} exempts {host}: "
                       "direct connection.", evidence=evidence)
    fix = (f"If this machine reaches the Hub directly: `unset {proxy['variable']}`; otherwise correct the address "
           f"(`export {proxy['variable']}=http://proxy.example:3128`), or exempt the Hub: "
           f"`export NO_PROXY={host}`. ")
    if proxy.get("error"):
        return Finding(code, _severity(need), title,
                       f"{proxy['variable']}={proxy['display']} is not a usable proxy URL: {proxy['error']}.",
                       evidence=evidence, cause="HTTP clients reject the whole request when the proxy URL is invalid.",
                       fix=fix)
    failed = None
    for step in ("dns", "connect"):
        facts = hub.get(step, {})
        if facts.get("target") == "proxy" and facts.get("status") in ("fail", "timeout"):
            failed = (step, facts)
            break
    tunnel = hub.get("tunnel", {})
    if failed is None and tunnel.get("status") in ("fail", "timeout"):
        failed = ("tunnel", tunnel)
    bad_files = [f for f in hub.get("files", []) if f.get("outcome") in ("proxy-error", "proxy-auth")]
    if failed is None and bad_files:
        failed = ("http", {"error": bad_files[0].get("error") or f"HTTP {bad_files[0].get('status_code')}",
                           "status": "fail"})
    if failed:
        step, facts = failed
        what = {"dns": "does not resolve", "connect": "refuses or drops connections", "tunnel": "refuses the tunnel",
                "http": "fails the request"}[step]
        evidence["error"] = facts.get("error")
        return Finding(code, _severity(need, facts.get("status") == "timeout"), title,
                       f"The proxy {proxy['display']} from {proxy['variable']} {what}: {facts.get('error')}.",
                       evidence=evidence,
                       cause="Every Hub request goes through this proxy; older transformers (4.19) raise "
                             "requests.exceptions.ProxyError straight out of from_pretrained (K01 k). "
                             + _consequence(need, offline),
                       fix=fix + (f"Or: {OFFLINE_HINT.format(offline=offline)}." if need else ""))
    return Finding(code, Status.OK, title, f"Requests to {host} go through {proxy['display']} ({proxy['variable']}), "
                                           "which answers.", evidence=evidence)


def rule_dns(hub: Dict[str, Any], need: bool, offline: str) -> Finding:
    code, title = "hub.dns", "Hub host name resolves"
    na = _not_applicable(code, title, hub)
    if na:
        return na
    dns = hub.get("dns", {})
    un = _unreached(code, title, dns)
    if un:
        return un
    host = hub["endpoint"]["host"]
    evidence = {k: dns.get(k) for k in ("host", "addresses", "error", "seconds", "target", "status")}
    if dns.get("target") == "proxy":
        if dns["status"] == "ok":
            return Finding(code, Status.OK, title, f"The proxy host {dns['host']} resolves; the proxy resolves {host}.",
                           evidence=evidence)
        return skip(code, title, f"The proxy host {dns['host']} does not resolve: see hub.proxy.", **evidence)
    if dns["status"] == "ok":
        literal = " (an IP address, no lookup)" if dns.get("literal") else ""
        return Finding(code, Status.OK, title, f"{host} -> {', '.join(dns['addresses'])}{literal}.", evidence=evidence)
    timeout = dns["status"] == "timeout"
    return Finding(code, _severity(need, timeout), title,
                   f"{host} does not resolve ({dns.get('error')}): this machine has no working route to the Hub.",
                   evidence=evidence,
                   cause=("No DNS answer: an air-gapped or firewalled host, a missing resolver, or a typo in "
                          "HF_ENDPOINT. huggingface_hub then retries each file for minutes before it gives up "
                          "(K29). ") + _consequence(need, offline),
                   fix=(OFFLINE_HINT.format(offline=offline) + "; or fix name resolution (resolver in "
                        "/etc/resolv.conf), or use a reachable mirror: `export HF_ENDPOINT=https://<mirror>`")
                   if need else f"`export {offline}`")


def rule_connect(hub: Dict[str, Any], need: bool, offline: str) -> Finding:
    code, title = "hub.connect", "TCP connection to the Hub"
    na = _not_applicable(code, title, hub)
    if na:
        return na
    conn = hub.get("connect", {})
    un = _unreached(code, title, conn)
    if un:
        return un
    if conn.get("target") == "proxy":
        if conn["status"] == "ok":
            return Finding(code, Status.OK, title, f"Connected to the proxy at {conn['address']}:{conn['port']}.",
                           evidence={k: conn.get(k) for k in ("address", "port", "seconds", "target")})
        return skip(code, title, "The proxy does not accept connections: see hub.proxy.")
    ep = hub["endpoint"]
    evidence = {k: conn.get(k) for k in ("address", "port", "kind", "error", "attempts", "seconds", "status")}
    if conn["status"] == "ok":
        return Finding(code, Status.OK, title, f"Connected to {ep['host']} at {conn['address']}:{conn['port']} "
                                               f"in {conn['seconds']:.2f} s.", evidence=evidence)
    kind = conn.get("kind")
    why = {"refused": "the port is closed (nothing listens, or a firewall rejects it)",
           "timeout": "packets are dropped (firewall without a reject rule)",
           "unreachable": "no route to the network"}.get(kind, "the connection failed")
    return Finding(code, _severity(need, kind == "timeout"), title,
                   f"Cannot connect to {ep['host']}:{ep['port']}: {why} ({conn.get('error')}).",
                   evidence=evidence,
                   cause="A direct connection is needed unless a proxy variable (HTTPS_PROXY) says otherwise. "
                         + _consequence(need, offline),
                   fix=(OFFLINE_HINT.format(offline=offline) + "; or, if this network needs a proxy, "
                        "`export HTTPS_PROXY=http://<proxy>:<port>`") if need else f"`export {offline}`")


def rule_tls(hub: Dict[str, Any], need: bool, offline: str) -> Finding:
    code, title = "hub.tls", "TLS certificate of the Hub"
    na = _not_applicable(code, title, hub)
    if na:
        return na
    tls = hub.get("tls", {})
    ep = hub["endpoint"]
    if ep.get("scheme") == "http" and ep.get("valid"):
        return skip(code, title, f"{ep['display']} is plain http: no TLS.")
    un = _unreached(code, title, tls)
    if un:
        return un
    ca = tls.get("ca") or hub.get("ca") or {}
    evidence = {k: tls.get(k) for k in ("host", "version", "issuer", "subject", "error", "verify_message",
                                         "alternatives", "seconds", "status")}
    evidence["ca"] = ca
    ca_text = ca.get("variable") or ca.get("default") or "default"
    if tls["status"] == "ok":
        return Finding(code, Status.OK, title,
                       f"{tls.get('version')} with {ep['host']}, certificate issued by {tls.get('issuer')}, verified "
                       f"with the CA certificates {ca.get('client')} uses ({ca_text}).", evidence=evidence)
    if tls.get("kind") == "bad-ca-file":
        var = ca.get("variable") or "the CA bundle"
        return Finding(code, _severity(need), title,
                       f"The CA certificates named by {var} cannot be loaded: {tls.get('error')}.",
                       evidence=evidence,
                       cause=f"{ca.get('client')} verifies the Hub with the certificates {var} names; a missing or "
                             "unreadable file makes every HTTPS request fail. " + _consequence(need, offline),
                       fix=f"Point {var} at an existing PEM bundle, or `unset {var}` to use the default."
                       if ca.get("variable") else "Reinstall certifi: `pip install --force-reinstall certifi`.")
    if tls.get("kind") == "verify":
        accepted = [a for a in tls.get("alternatives", []) if a.get("accepts")]
        if accepted:
            alt = accepted[0]
            path = alt.get("cafile") or alt.get("capath")
            fix = (f"`export SSL_CERT_FILE={q(path)} REQUESTS_CA_BUNDLE={q(path)}` (the {alt['source']} accepts the "
                   f"certificate; huggingface_hub >= 1.0 reads SSL_CERT_FILE, requests-based versions read "
                   "REQUESTS_CA_BUNDLE)")
        else:
            fix = ("Get the CA certificate of the proxy or mirror that signs this certificate (PEM), append it to a "
                   "bundle and point both clients at it: `export SSL_CERT_FILE=/path/to/ca-bundle.pem "
                   "REQUESTS_CA_BUNDLE=/path/to/ca-bundle.pem`")
        return Finding(code, _severity(need), title,
                       f"The certificate of {ep['host']} is not trusted: {tls.get('verify_message') or tls.get('error')} "
                       f"(checked with {ca.get('client')}'s CA certificates: {ca_text}).",
                       evidence=evidence,
                       cause="A TLS-intercepting proxy or a self-signed mirror presents a certificate the client's CA "
                             "bundle does not contain (K28); huggingface_hub treats it like a network error, "
                             "transformers 4.19 raises SSLError. " + _consequence(need, offline),
                       fix=fix)
    return Finding(code, _severity(need, tls["status"] == "timeout"), title,
                   f"TLS handshake with {ep['host']} failed: {tls.get('error')}.",
                   evidence=evidence,
                   cause="The connection opens but TLS does not complete: deep packet inspection, a port that is "
                         "not TLS, or an old OpenSSL. " + _consequence(need, offline),
                   fix=OFFLINE_HINT.format(offline=offline) if need else f"`export {offline}`")


OUTCOMES = {
    "gated": ("is gated: the Hub wants an accepted licence and a token",
              "The repository requires accepting its terms on the model page; requests without a token with access "
              "get 401/403 with X-Error-Code GatedRepo (K27).",
              "Accept the terms at {endpoint}/{repo} with your account, then `hf auth login` (or "
              "`export HF_TOKEN=<read token>`)"),
    "bad-token": ("is refused with 401 although a token is sent: the token is invalid or expired",
                  "huggingface_hub sends the token from {token} with every request; a revoked or mistyped token makes "
                  "even public repositories fail (K26).",
                  "`unset {token_var}` or `hf auth logout` (public repos need no token), or create a new token; "
                  "`export HF_HUB_DISABLE_IMPLICIT_TOKEN=1` stops sending it"),
    "repo-not-found": ("does not exist or is private (Repository not found)",
                       "The id is mistyped, the repository was renamed or removed, or it is private and needs a token.",
                       "Check the id (`{endpoint}/{repo}` in a browser) and the `version:` in the yaml; for a private "
                       "repo `hf auth login`"),
    "revision-not-found": ("has no revision 'main'", "The branch or tag does not exist.", "Check the revision."),
    "unauthorized": ("answers 401 Unauthorized", "The repository needs authentication.", "`hf auth login`"),
    "forbidden": ("answers 403 Forbidden", "The token has no access to the repository.",
                  "Request access on the model page, or use a token with read access"),
    "blocked": ("is blocked: 403 with an HTML page (a proxy or firewall answered, not the Hub)",
                "A corporate proxy or firewall blocks huggingface.co.",
                "Ask for huggingface.co (and its CDN hosts) to be allowed, or provision the files offline"),
    "rate-limited": ("answers 429 Too Many Requests", "The Hub rate-limits anonymous or heavy traffic.",
                     "Wait, log in (`hf auth login`), or provision the files once and start with `{offline}`"),
    "server-error": ("answers {status} (a server error)", "The Hub or the mirror has a problem; huggingface_hub "
                     "retries 5xx with back-off for minutes (K29).",
                     "Retry later, or start from a complete cache with `{offline}`"),
    "not-hub": ("answers without X-Repo-Commit: something that is not the Hub answered",
                "A captive portal, a proxy error page or an HF_ENDPOINT that is not Hub-compatible; huggingface_hub "
                "rejects such answers (\"does not seem to be served by a Hugging Face Hub endpoint\").",
                "Check HF_ENDPOINT and the proxy; open {endpoint}/{repo} in a browser on this machine"),
    "timeout": ("accepts the connection but does not answer in time",
                "The server (or a proxy in between) holds the connection open without replying.",
                "Check the proxy / mirror; meanwhile provision the files and start with `{offline}`"),
    "tls-error": ("fails TLS", "See hub.tls.", "See hub.tls"),
    "connect-error": ("cannot be reached", "See hub.connect.", "See hub.connect"),
    "proxy-error": ("fails at the proxy", "See hub.proxy.", "See hub.proxy"),
    "proxy-auth": ("needs proxy authentication (407)", "The proxy wants credentials.",
                   "`export HTTPS_PROXY=http://user:password@proxy:port`"),
    "http-error": ("answers HTTP {status}", "Unexpected HTTP status.", "Open {endpoint}/{repo} in a browser"),
}


def rule_http_status(hub: Dict[str, Any], model: Dict[str, Any], need: bool, offline: str) -> Finding:
    code, title = "hub.http-status", f"Hub answers for {model['ref']}"
    na = _not_applicable(code, title, hub)
    if na:
        return na
    for step in ("dns", "connect", "tunnel", "tls"):
        facts = hub.get(step, {})
        if facts.get("status") in ("fail", "timeout"):
            return skip(code, title, f"Not reached: the {step} step failed (see hub.{'proxy' if step == 'tunnel' or facts.get('target') == 'proxy' else step}).")
    if not hub.get("endpoint", {}).get("valid"):
        return skip(code, title, "Not reached: the endpoint is not usable (see hub.endpoint).")
    files = [f for f in hub.get("files", []) if f.get("model") == model["ref"]]
    if not files:
        return skip(code, title, f"{model['ref']} is not loaded from the Hub.")
    evidence = {"model": model["ref"], "files": [{k: f.get(k) for k in (
        "file", "required", "status_code", "outcome", "x_error_code", "x_error_message", "commit", "size", "cdn",
        "cdn_check", "seconds", "error")} for f in files]}
    good = ("ok", "redirect")
    bad = [f for f in files if f["outcome"] not in good and not (f["outcome"] == "file-not-found" and not f["required"])]
    # A group is satisfied by any of its names: the second weights format may be absent on the Hub.
    groups_missing = []
    for group in model["groups"]:
        names = group["names"]
        outcomes = [f["outcome"] for f in files if f["file"] in names]
        if group["required"] and outcomes and not any(o in good for o in outcomes):
            groups_missing.append(names[0])
    bad = [f for f in bad if f["outcome"] != "file-not-found" or f["file"] in groups_missing]
    ep = hub["endpoint"]
    token = hub.get("token", {})
    if bad:
        first = bad[0]
        outcome = first["outcome"]
        phrase, cause, fix = OUTCOMES.get(outcome, OUTCOMES["http-error"]) if outcome != "file-not-found" else (
            "lacks the file", "The repository has no such file at revision main (X-Error-Code EntryNotFound).",
            "Check that the id names the model you mean")
        fmt = {"endpoint": ep.get("display"), "repo": model.get("repo_id"), "status": first.get("status_code"),
               "offline": offline, "token": token.get("source") or "the token file",
               "token_var": token.get("source") if token.get("source") in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
               else "HF_TOKEN"}
        status_text = f"HTTP {first['status_code']}" if first.get("status_code") else first.get("error") or outcome
        code_text = f", X-Error-Code {first['x_error_code']}" if first.get("x_error_code") else ""
        return Finding(code, _severity(need, outcome == "timeout"), title,
                       f"{model['ref']} {phrase.format(**fmt)} ({first['file']}: {status_text}{code_text}).",
                       evidence=evidence, cause=cause.format(**fmt) + " " + _consequence(need, offline),
                       fix=fix.format(**fmt) + ".")
    cdn_bad = [f for f in files if f.get("cdn_check") and f["cdn_check"]["outcome"] != "ok"]
    if cdn_bad:
        f = cdn_bad[0]
        host = urlsplit(f["cdn"]).hostname if f.get("cdn") else "the CDN"
        return Finding(code, _severity(need, f["cdn_check"]["outcome"] == "timeout"), title,
                       f"{model['ref']}: the Hub answers, but the weights are served from {host}, which fails "
                       f"({f['cdn_check'].get('error') or f['cdn_check'].get('status_code')}).",
                       evidence=evidence,
                       cause="Large (LFS/Xet) files redirect to a CDN host that firewalls often do not allow. "
                             + _consequence(need, offline),
                       fix=f"Allow {host} in the firewall/proxy, or download the weights elsewhere and provision them.")
    commit = next((f.get("commit") for f in files if f.get("commit")), None)
    sizes = sum(f.get("size") or 0 for f in files if f["outcome"] in good)
    return Finding(code, Status.OK, title,
                   f"{model['ref']} at {ep.get('display')}: every needed file answers (commit "
                   f"{(commit or '?')[:12]}, {len([f for f in files if f['outcome'] in good])} files, "
                   f"{sizes / 1e6:.1f} MB).", evidence=evidence)


# -- wiring --------------------------------------------------------------------------------------

def _context(ctx):
    versions = ctx.fact("environment", probe_environment)["packages"]
    needed = ctx.fact("needed_models", probe_needed_models)
    cache = ctx.fact("cache", probe_cache)
    hub = ctx.fact("hub", probe_hub)
    res = {m["ref"]: m["resolution"] for m in cache["models"]}
    incomplete = {m["ref"] for m in needed["models"] if m["kind"] == "hub" and res[m["ref"]]["missing"]}
    return versions, needed, hub, incomplete


def _step_check(rule):
    def check(ctx):
        versions, _, hub, incomplete = _context(ctx)
        return [rule(hub, bool(incomplete), offline_var(versions))]
    return check


def check_http_status(ctx):
    versions, needed, hub, incomplete = _context(ctx)
    models = [m for m in needed["models"] if m["kind"] == "hub" and m.get("repo_id")]
    if not models:
        return [skip("hub.http-status", "Hub answers for the needed models", "No needed model is loaded from the Hub.")]
    return [rule_http_status(hub, m, m["ref"] in incomplete, offline_var(versions)) for m in models]


CHECKS: List[Check] = [
    Check("hub.endpoint", "Hub endpoint (HF_ENDPOINT)", _step_check(rule_endpoint), reads=("ctx",)),
    Check("hub.proxy", "Proxy settings", _step_check(rule_proxy), reads=("ctx",)),
    Check("hub.dns", "Hub host name resolves", _step_check(rule_dns), reads=("ctx",)),
    Check("hub.connect", "TCP connection to the Hub", _step_check(rule_connect), reads=("ctx",)),
    Check("hub.tls", "TLS certificate of the Hub", _step_check(rule_tls), reads=("ctx",)),
    Check("hub.http-status", "Hub answers for the needed models", check_http_status, reads=("ctx",)),
]
