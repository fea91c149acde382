"""Where the way to the Hugging Face Hub breaks (hub.*), judged by what loading needs.

A network failure is blocking only when a needed file is not cached (or a needed download would
go through it); with everything cached it is information, or a warning when it costs start-up time
(timeouts). Each step's finding says what failed, the evidence (host, address, proxy, CA bundle,
HTTP status and `X-Error-Code`), and the command that fixes it.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional
from urllib.parse import urlsplit

from ..findings import Finding, Status, skip, verdict
from ..probes.hub import HubFacts
from ..probes.needed_models import NeededModel, NeededModels
from ..registry import Check, Precondition
from ..util import fmt_bytes
from .cache import offline_var, shell_quote

OFFLINE_HINT = "This machine cannot reach the Hub: provision the files instead (cache.model-missing gives the " \
               "commands) and start with `{offline}`."
CACHED_HINT = "Start with `{offline}`: every needed file is cached, so the Hub is not needed."


def _severity(need: bool, timeout: bool = False) -> Status:
    if need:
        return Status.FAIL
    return Status.WARN if timeout else Status.INFO


def _why_not_probed(hub: HubFacts) -> Optional[str]:
    return hub.skipped.capitalize() + "." if hub.skipped is not None else None


def _step_reached(step: str) -> Precondition:
    def unmet(hub: HubFacts) -> Optional[str]:
        if hub.step(step).get("status") == "not-reached":
            return f"Not reached: {hub.step(step).get('reason')}."
        return None
    return Precondition(f"the {step} step reached", ("hub",), unmet)


def _tls_in_use(hub: HubFacts) -> Optional[str]:
    endpoint = hub.endpoint
    return f"{endpoint.display} is plain http: no TLS." if endpoint.scheme == "http" and endpoint.valid else None


# The network probe ran: the loaders touch the network (not offline with everything cached, and a
# needed model is on the Hub).
HUB_PROBED = Precondition("Hub probe applicable", ("hub",), _why_not_probed)
DNS_REACHED = _step_reached("dns")
CONNECT_REACHED = _step_reached("connect")
TLS_IN_USE = Precondition("the endpoint uses https", ("hub",), _tls_in_use)
TLS_REACHED = _step_reached("tls")


def _consequence(need: bool, offline: str) -> str:
    if need:
        return "A needed file is not cached, so loading will fail until this is fixed."
    return (f"Everything needed is cached, so loading still works; `{offline}` skips the Hub round trips.")


def rule_endpoint(hub: HubFacts, need: bool, offline: str) -> Finding:
    endpoint, token = hub.endpoint, hub.token
    evidence = {"endpoint": endpoint.display, "source": endpoint.source,
                "token": {"present": token.present, "source": token.source,
                          "HF_HUB_DISABLE_IMPLICIT_TOKEN": token.implicit_disabled}}
    token_text = f"a token is set ({token.source}; value not shown)" if token.present else "no token is set"
    if not endpoint.valid:
        return verdict(_severity(need),
                       f"The Hub endpoint {endpoint.display!r} from {endpoint.source} is not usable: {endpoint.error}.",
                       evidence=evidence,
                       cause="huggingface_hub builds every URL as <endpoint>/<repo>/resolve/<revision>/<file>.",
                       fix="`unset HF_ENDPOINT` to use https://huggingface.co, or set it to the mirror's base URL, "
                           "e.g. `export HF_ENDPOINT=https://hf-mirror.com`.")
    if endpoint.source != "default":
        return verdict(Status.INFO,
                       f"Downloads go to {endpoint.display} (set by {endpoint.source}), not huggingface.co; {token_text}.",
                       evidence=evidence,
                       cause="A mirror must hold every needed repo; transformers < 4.22 caches per endpoint, so files "
                             "fetched through another endpoint are not found.",
                       fix="If the mirror is not intended: `unset HF_ENDPOINT`.")
    return verdict(Status.OK, f"{endpoint.display} (default); {token_text}.", evidence=evidence)


def rule_proxy(hub: HubFacts, need: bool, offline: str) -> Finding:
    proxy = hub.proxy
    evidence = {"proxy": proxy.display, "variable": proxy.variable, "no_proxy": proxy.no_proxy,
                "bypassed_by": proxy.bypassed_by, "proxy_variables_set": proxy.variables_set}
    host = hub.endpoint.host
    if not proxy.variable:
        extra = f" ({', '.join(proxy.variables_set)} set for other schemes)" if proxy.variables_set else ""
        return verdict(Status.OK, f"No proxy applies to {host}: direct connection{extra}.",
                       evidence=evidence)
    if proxy.bypassed_by:
        return verdict(Status.INFO,
                       f"{proxy.variable}={proxy.display} is set, but {proxy.bypassed_by} exempts {host}: "
                       "direct connection.", evidence=evidence)
    fix = (f"If this machine reaches the Hub directly: `unset {proxy.variable}`; otherwise correct the address "
           f"(`export {proxy.variable}=http://proxy.example:3128`), or exempt the Hub: "
           f"`export NO_PROXY={host}`.")
    if proxy.error:
        return verdict(_severity(need),
                       f"{proxy.variable}={proxy.display} is not a usable proxy URL: {proxy.error}.",
                       evidence=evidence, cause="HTTP clients reject the whole request when the proxy URL is invalid.",
                       fix=fix)
    failed = _failing_proxy_step(hub)
    if failed:
        step, facts = failed
        what = {"dns": "does not resolve", "connect": "refuses or drops connections", "tunnel": "refuses the tunnel",
                "http": "fails the request"}[step]
        evidence["error"] = facts.get("error")
        return verdict(_severity(need, facts.get("status") == "timeout"),
                       f"The proxy {proxy.display} from {proxy.variable} {what}: {facts.get('error')}.",
                       evidence=evidence,
                       cause="Every Hub request goes through this proxy; older transformers (4.19) raise "
                             "requests.exceptions.ProxyError straight out of from_pretrained. "
                             + _consequence(need, offline),
                       fix=fix + ("\nOr, if no proxy reaches the Hub: " + OFFLINE_HINT.split(": ", 1)[1].format(
                           offline=offline) if need else ""))
    return verdict(Status.OK, f"Requests to {host} go through {proxy.display} ({proxy.variable}), "
                                           "which answers.", evidence=evidence)


def _failing_proxy_step(hub: HubFacts):
    """(step, its facts) of the first step the proxy fails: dns/connect to it, the tunnel, or HTTP."""
    for step in ("dns", "connect"):
        facts = hub.step(step)
        if facts.get("target") == "proxy" and facts.get("status") in ("fail", "timeout"):
            return step, facts
    tunnel = hub.step("tunnel")
    if tunnel.get("status") in ("fail", "timeout"):
        return "tunnel", tunnel
    refused = [answer for answer in hub.files if answer.get("outcome") in ("proxy-error", "proxy-auth")]
    if refused:
        return "http", {"error": refused[0].get("error") or f"HTTP {refused[0].get('status_code')}", "status": "fail"}
    return None


def rule_dns(hub: HubFacts, need: bool, offline: str) -> Finding:
    dns, host = hub.step("dns"), hub.endpoint.host
    evidence = {key: dns.get(key) for key in ("host", "addresses", "error", "seconds", "target", "status")}
    if dns.get("target") == "proxy":
        if dns["status"] == "ok":
            return verdict(Status.OK, f"The proxy host {dns['host']} resolves; the proxy resolves {host}.",
                           evidence=evidence)
        return verdict(Status.SKIP, f"The proxy host {dns['host']} does not resolve: see hub.proxy.", evidence=evidence)
    if dns["status"] == "ok":
        literal = " (an IP address, no lookup)" if dns.get("literal") else ""
        return verdict(Status.OK, f"{host} -> {', '.join(dns['addresses'])}{literal}.", evidence=evidence)
    timeout = dns["status"] == "timeout"
    return verdict(_severity(need, timeout),
                   f"{host} does not resolve: this machine has no working route to the Hub.",
                   evidence=evidence,
                   cause=("No DNS answer: an air-gapped or firewalled host, a missing resolver, or a typo in "
                          "HF_ENDPOINT. huggingface_hub then retries each file for minutes before it gives up. "
                          ) + _consequence(need, offline),
                   fix=(OFFLINE_HINT.format(offline=offline) + "\nOr fix name resolution (the resolver in "
                        "/etc/resolv.conf), or use a reachable mirror:\n```bash\nexport HF_ENDPOINT=https://<mirror>\n```")
                   if need else CACHED_HINT.format(offline=offline))


def rule_connect(hub: HubFacts, need: bool, offline: str) -> Finding:
    conn = hub.step("connect")
    if conn.get("target") == "proxy":
        if conn["status"] == "ok":
            return verdict(Status.OK, f"Connected to the proxy at {conn['address']}:{conn['port']}.",
                           evidence={key: conn.get(key) for key in ("address", "port", "seconds", "target")})
        return verdict(Status.SKIP, "The proxy does not accept connections: see hub.proxy.")
    endpoint = hub.endpoint
    evidence = {key: conn.get(key) for key in ("address", "port", "kind", "error", "attempts", "seconds", "status")}
    if conn["status"] == "ok":
        return verdict(Status.OK, f"Connected to {endpoint.host} at {conn['address']}:{conn['port']} "
                                               f"in {conn['seconds']:.2f} s.", evidence=evidence)
    kind = conn.get("kind")
    why = {"refused": "the port is closed (nothing listens, or a firewall rejects it)",
           "timeout": "packets are dropped (firewall without a reject rule)",
           "unreachable": "no route to the network"}.get(kind, "the connection failed")
    return verdict(_severity(need, kind == "timeout"),
                   f"Cannot connect to {endpoint.host}:{endpoint.port}: {why} ({conn.get('error')}).",
                   evidence=evidence,
                   cause="A direct connection is needed unless a proxy variable (HTTPS_PROXY) says otherwise. "
                         + _consequence(need, offline),
                   fix=(OFFLINE_HINT.format(offline=offline) + "\nOr, if this network needs a proxy:\n"
                        "```bash\nexport HTTPS_PROXY=http://<proxy>:<port>\n```") if need
                   else CACHED_HINT.format(offline=offline))


def rule_tls(hub: HubFacts, need: bool, offline: str) -> Finding:
    tls, endpoint = hub.step("tls"), hub.endpoint
    ca = tls.get("ca") or (hub.ca.to_dict() if hub.ca else {})
    evidence = {key: tls.get(key) for key in ("host", "version", "issuer", "subject", "error", "verify_message",
                                         "alternatives", "seconds", "status")}
    evidence["ca"] = ca
    ca_text = ca.get("variable") or ca.get("default") or "default"
    if tls["status"] == "ok":
        return verdict(Status.OK,
                       f"{tls.get('version')} with {endpoint.host}, certificate issued by {tls.get('issuer')}, verified "
                       f"with the CA certificates {ca.get('client')} uses ({ca_text}).", evidence=evidence)
    if tls.get("kind") == "bad-ca-file":
        variable = ca.get("variable") or "the CA bundle"
        return verdict(_severity(need),
                       f"The CA certificates named by {variable} cannot be loaded: {tls.get('error')}.",
                       evidence=evidence,
                       cause=f"{ca.get('client')} verifies the Hub with the certificates {variable} names; a missing or "
                             "unreadable file makes every HTTPS request fail. " + _consequence(need, offline),
                       fix=f"Point {variable} at an existing PEM bundle, or `unset {variable}` to use the default."
                       if ca.get("variable") else "Reinstall certifi: `pip install --force-reinstall certifi`.")
    if tls.get("kind") == "verify":
        accepted = [other for other in tls.get("alternatives", []) if other.get("accepts")]
        if accepted:
            alternative = accepted[0]
            path = alternative.get("cafile") or alternative.get("capath")
            fix = (f"`export SSL_CERT_FILE={shell_quote(path)} REQUESTS_CA_BUNDLE={shell_quote(path)}` (the "
                   f"{alternative['source']} accepts the "
                   f"certificate; huggingface_hub >= 1.0 reads SSL_CERT_FILE, requests-based versions read "
                   "REQUESTS_CA_BUNDLE)")
        else:
            fix = ("Get the CA certificate of the proxy or mirror that signs this certificate (PEM), append it to a "
                   "bundle and point both clients at it: `export SSL_CERT_FILE=/path/to/ca-bundle.pem "
                   "REQUESTS_CA_BUNDLE=/path/to/ca-bundle.pem`")
        return verdict(_severity(need),
                       f"The certificate of {endpoint.host} is not trusted: {tls.get('verify_message') or tls.get('error')} "
                       f"(checked with {ca.get('client')}'s CA certificates: {ca_text}).",
                       evidence=evidence,
                       cause="A TLS-intercepting proxy or a self-signed mirror presents a certificate the client's CA "
                             "bundle does not contain; huggingface_hub treats it like a network error, "
                             "transformers 4.19 raises SSLError. " + _consequence(need, offline),
                       fix=fix)
    return verdict(_severity(need, tls["status"] == "timeout"),
                   f"TLS handshake with {endpoint.host} failed: {tls.get('error')}.",
                   evidence=evidence,
                   cause="The connection opens but TLS does not complete: deep packet inspection, a port that is "
                         "not TLS, or an old OpenSSL. " + _consequence(need, offline),
                   fix=OFFLINE_HINT.format(offline=offline) if need else CACHED_HINT.format(offline=offline))


ANSWER_EVIDENCE_KEYS = ("file", "required", "status_code", "outcome", "x_error_code", "x_error_message", "commit",
                        "size", "cdn", "cdn_check", "seconds", "error")
OUTCOMES = {
    "gated": ("is gated: the Hub wants an accepted licence and a token",
              "The repository requires accepting its terms on the model page; requests without a token with access "
              "get 401/403 with X-Error-Code GatedRepo.",
              "Accept the terms at {endpoint}/{repo} with your account, then `hf auth login` (or "
              "`export HF_TOKEN=<read token>`)"),
    "bad-token": ("is refused with 401 although a token is sent: the token is invalid or expired",
                  "huggingface_hub sends the token from {token} with every request; a revoked or mistyped token makes "
                  "even public repositories fail.",
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
                     "retries 5xx with back-off for minutes.",
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


def rule_http_status(hub: HubFacts, model: Dict[str, Any], need: bool, offline: str) -> Finding:
    code, title = "hub.http-status", f"Hub responses for {model['ref']}"
    why_not = _why_not_probed(hub)
    if why_not:  # per model, with the model in the title (a precondition would give one finding for all)
        return skip(code, title, why_not)
    failed = hub.failed_step()
    if failed:
        see = "proxy" if failed == "tunnel" or hub.step(failed).get("target") == "proxy" else failed
        return skip(code, title, f"Not reached: the {failed} step failed (see hub.{see}).")
    if not hub.endpoint.valid:
        return skip(code, title, "Not reached: the endpoint is not usable (see hub.endpoint).")
    files = hub.files_of(model["ref"])
    if not files:
        return skip(code, title, f"{model['ref']} is not loaded from the Hub.")
    evidence = {"model": model["ref"], "files": [{key: answer.get(key) for key in ANSWER_EVIDENCE_KEYS}
                                                 for answer in files]}
    good = ("ok", "redirect")
    # A group is satisfied by any of its names: the second weights format may be absent on the Hub.
    groups_missing = []
    for group in model["groups"]:
        outcomes = [answer["outcome"] for answer in files if answer["file"] in group["names"]]
        if group["required"] and outcomes and not any(outcome in good for outcome in outcomes):
            groups_missing.append(group["names"][0])
    bad = [answer for answer in files if answer["outcome"] not in good
           and (answer["outcome"] != "file-not-found" or (answer["required"] and answer["file"] in groups_missing))]
    endpoint, token = hub.endpoint, hub.token
    if bad:
        first = bad[0]
        outcome = first["outcome"]
        phrase, cause, fix = OUTCOMES.get(outcome, OUTCOMES["http-error"]) if outcome != "file-not-found" else (
            "lacks the file", "The repository has no such file at revision main (X-Error-Code EntryNotFound).",
            "Check that the id names the model you mean")
        fmt = {"endpoint": endpoint.display, "repo": model.get("repo_id"), "status": first.get("status_code"),
               "offline": offline, "token": token.source or "the token file",
               "token_var": token.source if token.source in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN") else "HF_TOKEN"}
        status_text = f"HTTP {first['status_code']}" if first.get("status_code") else first.get("error") or outcome
        code_text = f", X-Error-Code {first['x_error_code']}" if first.get("x_error_code") else ""
        return Finding(code, _severity(need, outcome == "timeout"), title,
                       f"{model['ref']} {phrase.format(**fmt)} ({first['file']}: {status_text}{code_text}).",
                       evidence=evidence, cause=cause.format(**fmt) + " " + _consequence(need, offline),
                       fix=fix.format(**fmt) + ".")
    cdn_bad = [answer for answer in files if answer.get("cdn_check") and answer["cdn_check"]["outcome"] != "ok"]
    if cdn_bad:
        answer = cdn_bad[0]
        host = urlsplit(answer["cdn"]).hostname if answer.get("cdn") else "the CDN"
        cdn_check = answer["cdn_check"]
        return Finding(code, _severity(need, cdn_check["outcome"] == "timeout"), title,
                       f"{model['ref']}: the Hub answers, but the weights are served from {host}, which fails "
                       f"({cdn_check.get('error') or cdn_check.get('status_code')}).",
                       evidence=evidence,
                       cause="Large (LFS/Xet) files redirect to a CDN host that firewalls often do not allow. "
                             + _consequence(need, offline),
                       fix=f"Allow {host} in the firewall/proxy, or download the weights elsewhere and provision them.")
    commit = next((answer.get("commit") for answer in files if answer.get("commit")), None)
    answered = [answer for answer in files if answer["outcome"] in good]
    sizes = sum(answer.get("size") or 0 for answer in answered)
    return Finding(code, Status.OK, title,
                   f"{model['ref']} at {endpoint.display}: every needed file answers (commit "
                   f"{(commit or '?')[:12]}, {len(answered)} files, "
                   f"{fmt_bytes(sizes)}).", evidence=evidence)


# -- declarations --------------------------------------------------------------------------------

def _with_stakes(rule):
    """A step rule over the declared facts: `need` (a needed Hub file is not cached) and the offline
    variable of the installed transformers."""
    def evaluate(hub: HubFacts, hub_downloads: List[str], versions) -> Finding:
        return rule(hub, bool(hub_downloads), offline_var(versions))
    evaluate.__doc__ = rule.__doc__
    return evaluate


def _hub_models(needed_models: NeededModels) -> List[NeededModel]:
    return [model for model in needed_models.models if model.kind == "hub" and model.repo_id]


def check_http_status(hub: HubFacts, hub_downloads: List[str], versions, needed_models) -> List[Finding]:
    return [rule_http_status(hub, model, model["ref"] in hub_downloads, offline_var(versions))
            for model in _hub_models(needed_models)]


HUB_MODELS_NEEDED = Precondition("a needed model is on the Hub", ("needed_models",),
                                 lambda needed_models: None if _hub_models(needed_models)
                                 else "No needed model is loaded from the Hub.")
STEP_FACTS = ("hub", "hub_downloads", "versions")

CHECKS: List[Check] = [
    Check("hub.endpoint", "Hub endpoint (HF_ENDPOINT)", _with_stakes(rule_endpoint), reads=STEP_FACTS,
          requires=(HUB_PROBED,)),
    Check("hub.proxy", "Proxy settings", _with_stakes(rule_proxy), reads=STEP_FACTS, requires=(HUB_PROBED,)),
    Check("hub.dns", "DNS lookup of the Hub host", _with_stakes(rule_dns), reads=STEP_FACTS,
          requires=(HUB_PROBED, DNS_REACHED)),
    Check("hub.connect", "TCP connection to the Hub", _with_stakes(rule_connect), reads=STEP_FACTS,
          requires=(HUB_PROBED, CONNECT_REACHED)),
    Check("hub.tls", "TLS certificate of the Hub", _with_stakes(rule_tls), reads=STEP_FACTS,
          requires=(HUB_PROBED, TLS_IN_USE, TLS_REACHED)),
    Check("hub.http-status", "Hub responses for the needed models", check_http_status,
          reads=STEP_FACTS + ("needed_models",), requires=(HUB_MODELS_NEEDED,)),
]
