"""Can this machine reach the Hugging Face Hub the way the loaders will, and where does it break?

Stepwise, each step with its own short timeout, so the report names the broken link instead of
"connection error": endpoint (HF_ENDPOINT) -> proxy selection (HTTP(S)_PROXY / NO_PROXY, read from
the injected environment the way httpx and requests read them) -> DNS -> TCP connect (to the proxy
when one applies) -> CONNECT tunnel -> TLS handshake with the CA bundle the installed
huggingface_hub will use -> one HEAD per needed file on `/{repo}/resolve/main/{file}` (the request
`hf_hub_download` makes), read like the Hub's answers are read: `X-Repo-Commit`, `ETag` /
`X-Linked-Etag`, `X-Linked-Size`, `X-Error-Code`, and `Location` for LFS files on a CDN host.

A step that fails stops the steps after it (they are reported as not reached). Nothing is
printed; tokens are sent when the loaders would send them, never recorded: the facts say which
variable holds one. Credentials in proxy URLs and endpoints are redacted before they are recorded.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple
from urllib.parse import urljoin, urlsplit, urlunsplit

from ..util import version_at_least
from .cache import DEFAULT_ENDPOINT, STAGING_ENDPOINT, expand, hf_home, is_true

USER_AGENT = "ldm-diagnostics (hub probe)"
MAX_PARALLEL_HEADS = 8


@dataclass
class NetTimeouts:
    """Seconds per step. LDM_DIAG_NET_TIMEOUT sets all of them at once."""

    dns: float = 2.0
    connect: float = 3.0
    tls: float = 3.0
    http: float = 3.0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> "NetTimeouts":
        raw = environ.get("LDM_DIAG_NET_TIMEOUT")
        try:
            value = float(raw) if raw else None
        except ValueError:
            value = None
        if value and value > 0:
            return cls(value, value, value, value)
        return cls()

    @property
    def total(self) -> float:
        # Worst case of one probe: the steps run one after the other; the HEADs run in parallel,
        # plus one CDN HEAD.
        return self.dns + self.connect + self.tls + 2 * self.http


# -- redaction -----------------------------------------------------------------------------------

_CREDENTIALS_IN_TEXT = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/@'\"]+@")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9_\-.=]+")


def scrub(text: Optional[str], secrets=()) -> Optional[str]:
    """Remove credentials from free text (exception messages, stderr): `scheme://user:pw@`, bearer
    tokens, and any of `secrets` (token values) verbatim."""
    if not text:
        return text
    text = _BEARER.sub(r"\1***", _CREDENTIALS_IN_TEXT.sub(r"\1***@", text))
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def redact_url(url: Optional[str]) -> Optional[str]:
    """`scheme://user:secret@host` -> `scheme://***@host`; query strings are dropped."""
    if not url:
        return url
    try:
        parts = urlsplit(url if "://" in url else "http://" + url)
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


# -- endpoint, token, proxy, CA ------------------------------------------------------------------

def resolve_endpoint(environ: Mapping[str, str]) -> Dict[str, Any]:
    """huggingface_hub's ENDPOINT: HF_ENDPOINT (trailing / stripped), staging, or huggingface.co."""
    if is_true(environ.get("HUGGINGFACE_CO_STAGING")):
        url, source = STAGING_ENDPOINT, "HUGGINGFACE_CO_STAGING"
    elif environ.get("HF_ENDPOINT"):
        url, source = environ["HF_ENDPOINT"].rstrip("/"), "HF_ENDPOINT"
    else:
        url, source = DEFAULT_ENDPOINT, "default"
    # "_url" keeps credentials a mirror URL may carry; it is dropped before the facts leave the probe.
    facts: Dict[str, Any] = {"_url": url, "url": redact_url(url), "display": redact_url(url), "source": source,
                             "valid": False,
                             "error": None, "scheme": None, "host": None, "port": None,
                             "has_credentials": False}
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        facts["error"] = f"not a URL: {exc}"
        return facts
    if parts.scheme not in ("http", "https"):
        facts["error"] = f"scheme must be http or https, not {parts.scheme or 'missing'!r}"
        return facts
    if not parts.hostname:
        facts["error"] = "no host name"
        return facts
    if parts.path not in ("", "/"):
        facts["error"] = f"has a path ({parts.path}); huggingface_hub appends /<repo>/resolve/... to the whole value"
    facts.update(scheme=parts.scheme, host=parts.hostname, port=port or (443 if parts.scheme == "https" else 80),
                 has_credentials="@" in parts.netloc, valid=facts["error"] is None)
    return facts


def token_source(environ: Mapping[str, str]) -> Dict[str, Any]:
    """Which token the loaders will send (HF_TOKEN > HUGGING_FACE_HUB_TOKEN > token file); the value
    is returned only under "_value" for the request header and is never part of the facts."""
    disabled = is_true(environ.get("HF_HUB_DISABLE_IMPLICIT_TOKEN"))
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        if environ.get(var):
            return {"present": True, "source": var, "implicit_disabled": disabled, "_value": environ[var].strip()}
    home, _ = hf_home(environ)
    path = expand(environ.get("HF_TOKEN_PATH") or os.path.join(home, "token"), environ)
    try:
        with open(path, encoding="utf-8") as fh:
            value = fh.read().strip()
    except OSError:
        value = ""
    if value:
        return {"present": True, "source": "token file", "token_file": path, "implicit_disabled": disabled,
                "_value": value}
    return {"present": False, "source": None, "implicit_disabled": disabled, "_value": None}


def environment_proxies(environ: Mapping[str, str]) -> Dict[str, Tuple[str, str]]:
    """scheme -> (proxy URL, variable), like urllib.request.getproxies_environment (lower case wins)."""
    found: Dict[str, Tuple[str, str]] = {}
    for name, value in environ.items():
        if value and name.lower().endswith("_proxy") and name != name.lower():
            found[name[:-6].lower()] = (value, name)
    for name, value in environ.items():
        if name.lower().endswith("_proxy") and name == name.lower():
            if value:
                found[name[:-6]] = (value, name)
            else:
                found.pop(name[:-6], None)
    if "REQUEST_METHOD" in environ:  # CGI: HTTP_PROXY may come from a request header
        found.pop("http", None)
    return found


def bypasses_proxy(host: str, no_proxy: str) -> bool:
    """NO_PROXY matching as httpx/requests do it: '*', exact host, domain suffix, IP, CIDR."""
    host = host.lower().strip("[]")
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        entry_host = entry.split("://", 1)[-1].split(":")[0] if not entry.startswith("[") else entry.strip("[]")
        try:
            if "/" in entry_host:
                if ipaddress.ip_address(host) in ipaddress.ip_network(entry_host, strict=False):
                    return True
                continue
        except ValueError:
            continue
        entry_host = entry_host.lstrip("*").lstrip(".") if entry_host.startswith(("*.", ".")) else entry_host
        if host == entry_host or host.endswith("." + entry_host):
            return True
    return False


def select_proxy(endpoint: Dict[str, Any], environ: Mapping[str, str]) -> Dict[str, Any]:
    proxies = environment_proxies(environ)
    facts: Dict[str, Any] = {"url": None, "display": None, "variable": None, "bypassed_by": None,
                             "no_proxy": None, "set": sorted(v for _, v in proxies.values())}
    if not endpoint.get("valid"):
        return facts
    chosen = proxies.get(endpoint["scheme"]) or proxies.get("all")
    no_proxy = proxies.get("no")
    if no_proxy:
        facts["no_proxy"] = no_proxy[0]
    if chosen is None:
        return facts
    if no_proxy and bypasses_proxy(endpoint["host"], no_proxy[0]):
        facts["bypassed_by"] = no_proxy[1]
        facts["variable"] = chosen[1]
        facts["display"] = redact_url(chosen[0])
        return facts
    url = chosen[0] if "://" in chosen[0] else "http://" + chosen[0]
    facts.update(_url=url, url=redact_url(url), display=redact_url(url), variable=chosen[1])
    try:
        parts = urlsplit(url)
        facts.update(host=parts.hostname, port=parts.port or (443 if parts.scheme == "https" else 80),
                     scheme=parts.scheme, has_credentials="@" in parts.netloc)
        if not parts.hostname:
            facts["error"] = "no host name in the proxy URL"
    except ValueError as exc:
        facts["error"] = f"not a URL: {exc}"
    return facts


def _system_ca() -> Dict[str, Optional[str]]:
    paths = ssl.get_default_verify_paths()
    cafile = paths.openssl_cafile if paths.openssl_cafile and os.path.isfile(paths.openssl_cafile) else None
    capath = paths.openssl_capath if paths.openssl_capath and os.path.isdir(paths.openssl_capath) else None
    return {"cafile": cafile, "capath": capath}


def _certifi() -> Optional[str]:
    try:
        import certifi
    except ImportError:
        return None
    return certifi.where()


def loader_ca(environ: Mapping[str, str], versions: Mapping[str, Optional[str]]) -> Dict[str, Any]:
    """The CA certificates the installed huggingface_hub's HTTP client verifies the Hub with.

    huggingface_hub < 1.0 (and transformers 4.19's own downloads) use requests: REQUESTS_CA_BUNDLE >
    CURL_CA_BUNDLE > certifi. huggingface_hub >= 1.0 uses httpx: SSL_CERT_FILE > SSL_CERT_DIR >
    its default (certifi for httpx, the system store for httpx2 as in huggingface_hub 2.x); it does
    not read REQUESTS_CA_BUNDLE.
    """
    hub = versions.get("huggingface_hub")
    tv = versions.get("transformers")
    uses_requests = (hub is not None and version_at_least(hub, "1.0") is False) or \
        (tv is not None and version_at_least(tv, "4.22") is False)
    if uses_requests:
        for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            if environ.get(var):
                value = expand(environ[var], environ)
                if os.path.isdir(value):
                    return {"client": "requests", "variable": var, "cafile": None, "capath": value}
                return {"client": "requests", "variable": var, "cafile": value, "capath": None}
        return {"client": "requests", "variable": None, "cafile": _certifi(), "capath": None, "default": "certifi"}
    client = "httpx2" if versions.get("httpx2") or _has_module("httpx2") else "httpx"
    if environ.get("SSL_CERT_FILE"):
        return {"client": client, "variable": "SSL_CERT_FILE", "cafile": expand(environ["SSL_CERT_FILE"], environ),
                "capath": None}
    if environ.get("SSL_CERT_DIR"):
        return {"client": client, "variable": "SSL_CERT_DIR", "cafile": None,
                "capath": expand(environ["SSL_CERT_DIR"], environ)}
    if client == "httpx2":
        return dict(_system_ca(), client=client, variable=None, default="system trust store")
    return {"client": client, "variable": None, "cafile": _certifi(), "capath": None, "default": "certifi"}


def _has_module(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


# -- the steps -----------------------------------------------------------------------------------

def _step(status: str, started: float, **facts: Any) -> Dict[str, Any]:
    facts.update(status=status, seconds=round(time.perf_counter() - started, 3))
    return facts


def step_dns(host: str, port: int, timeout: float) -> Dict[str, Any]:
    """getaddrinfo has no timeout of its own: it runs in a daemon thread that is abandoned on timeout."""
    started = time.perf_counter()
    try:
        ipaddress.ip_address(host.strip("[]"))
        return _step("ok", started, host=host, addresses=[host.strip("[]")], literal=True)
    except ValueError:
        pass
    box: Dict[str, Any] = {}

    def resolve() -> None:
        try:
            box["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except Exception as exc:  # gaierror, UnicodeError for odd names
            box["error"] = exc

    thread = threading.Thread(target=resolve, name="ldm-diag-dns", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return _step("timeout", started, host=host, error=f"no answer from the resolver within {timeout:g} s")
    if "error" in box:
        exc = box["error"]
        return _step("fail", started, host=host, error=f"{type(exc).__name__}: {exc}",
                     errno=getattr(exc, "errno", None))
    addresses = []
    for family, _, _, _, sockaddr in box["infos"]:
        if sockaddr[0] not in addresses:
            addresses.append(sockaddr[0])
    return _step("ok", started, host=host, addresses=addresses[:6])


def _connect(address: str, port: int, timeout: float) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect((address, port))
    except BaseException:
        sock.close()
        raise
    return sock


def step_connect(addresses: List[str], port: int, timeout: float) -> Tuple[Dict[str, Any], Optional[socket.socket]]:
    started = time.perf_counter()
    errors = []
    for address in addresses[:2]:
        try:
            sock = _connect(address, port, timeout)
        except socket.timeout:
            errors.append((address, "timeout", f"no answer within {timeout:g} s (packets dropped: firewall?)"))
        except ConnectionRefusedError as exc:
            errors.append((address, "refused", f"connection refused ({exc.strerror or exc})"))
        except OSError as exc:
            errors.append((address, "unreachable", f"{type(exc).__name__}: {exc.strerror or exc}"))
        else:
            return _step("ok", started, address=address, port=port), sock
    kind = errors[0][1] if errors else "fail"
    return _step("timeout" if kind == "timeout" else "fail", started, port=port, kind=kind,
                 error="; ".join(f"{a}:{port} {msg}" for a, _, msg in errors),
                 attempts=[{"address": a, "kind": k} for a, k, _ in errors]), None


def step_tunnel(sock: socket.socket, host: str, port: int, proxy: Dict[str, Any], timeout: float) -> Dict[str, Any]:
    """CONNECT host:port through the proxy, as an HTTPS client does before its TLS handshake."""
    started = time.perf_counter()
    headers = f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: {USER_AGENT}\r\n"
    parts = urlsplit(proxy["_url"])
    if parts.username is not None:
        import base64
        from urllib.parse import unquote

        cred = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode("utf-8")
        headers += "Proxy-Authorization: Basic " + base64.b64encode(cred).decode("ascii") + "\r\n"
    sock.settimeout(timeout)
    try:
        sock.sendall((headers + "\r\n").encode("latin-1"))
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        return _step("timeout", started, error=f"the proxy did not answer CONNECT within {timeout:g} s")
    except OSError as exc:
        return _step("fail", started, error=f"{type(exc).__name__}: {exc.strerror or exc}")
    line = data.split(b"\r\n", 1)[0].decode("latin-1", "replace")
    try:
        code = int(line.split()[1])
    except (IndexError, ValueError):
        return _step("fail", started, error=f"not an HTTP proxy answer: {line[:80]!r}")
    if code != 200:
        return _step("fail", started, status_code=code, error=f"the proxy refused CONNECT: {line[:120]}")
    return _step("ok", started, status_code=code)


def ssl_context(ca: Dict[str, Any]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca.get("cafile") or ca.get("capath"):
        ctx.load_verify_locations(ca.get("cafile"), ca.get("capath"))
    return ctx


def _handshake(sock_factory, host: str, ca: Dict[str, Any], timeout: float) -> Tuple[str, str, Dict[str, Any]]:
    """(status, error, extra) of one TLS handshake. `sock_factory()` returns a connected socket."""
    try:
        ctx = ssl_context(ca)
    except (OSError, ssl.SSLError) as exc:
        return "fail", f"cannot load the CA certificates: {exc}", {"kind": "bad-ca-file"}
    sock = None
    try:
        sock = sock_factory()
        sock.settimeout(timeout)
        with ctx.wrap_socket(sock, server_hostname=host) as tls:
            cert = tls.getpeercert() or {}
            return "ok", "", {"version": tls.version(), "issuer": _name(cert.get("issuer")),
                              "subject": _name(cert.get("subject"))}
    except ssl.SSLCertVerificationError as exc:
        return "fail", f"certificate verify failed: {exc.verify_message}", {
            "kind": "verify", "verify_code": exc.verify_code, "verify_message": exc.verify_message}
    except socket.timeout:
        return "timeout", f"no TLS answer within {timeout:g} s", {"kind": "timeout"}
    except ssl.SSLError as exc:
        return "fail", f"TLS handshake failed: {exc.reason or exc}", {"kind": "handshake"}
    except OSError as exc:
        return "fail", f"{type(exc).__name__}: {exc.strerror or exc}", {"kind": "reset"}
    finally:
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass


def _name(rdns) -> Optional[str]:
    if not rdns:
        return None
    return ", ".join(f"{k}={v}" for rdn in rdns for k, v in rdn)


def step_tls(sock_factory, host: str, ca: Dict[str, Any], timeout: float, environ: Mapping[str, str]) -> Dict[str, Any]:
    started = time.perf_counter()
    status, error, extra = _handshake(sock_factory, host, ca, timeout)
    facts = _step(status, started, host=host, error=error or None, ca=_ca_display(ca), **extra)
    if status == "fail" and extra.get("kind") == "verify":
        # Which other trust source would accept this certificate? That is the fix to propose.
        alternatives = []
        candidates = [("system trust store", _system_ca()), ("certifi", {"cafile": _certifi(), "capath": None})]
        for var in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            if environ.get(var) and var != ca.get("variable"):
                candidates.append((var, {"cafile": expand(environ[var], environ), "capath": None}))
        for label, other in candidates:
            if not (other.get("cafile") or other.get("capath")) or _same_ca(other, ca):
                continue
            ok, _, _ = _handshake(sock_factory, host, other, timeout)
            alternatives.append({"source": label, "accepts": ok == "ok", "cafile": other.get("cafile"),
                                 "capath": other.get("capath")})
        facts["alternatives"] = alternatives
    return facts


def _same_ca(a: Dict[str, Any], b: Dict[str, Any]) -> bool:
    return (a.get("cafile"), a.get("capath")) == (b.get("cafile"), b.get("capath"))


def _ca_display(ca: Dict[str, Any]) -> Dict[str, Any]:
    return {k: ca.get(k) for k in ("client", "variable", "cafile", "capath", "default") if ca.get(k) is not None}


# -- HTTP ----------------------------------------------------------------------------------------

def classify_response(status: int, headers: Mapping[str, str], token_present: bool) -> str:
    """What a HEAD answer means for a loader (huggingface_hub's hf_raise_for_status, in words)."""
    code = headers.get("X-Error-Code") or headers.get("x-error-code") or ""
    message = (headers.get("X-Error-Message") or headers.get("x-error-message") or "").lower()
    content_type = (headers.get("Content-Type") or headers.get("content-type") or "").lower()
    commit = headers.get("X-Repo-Commit") or headers.get("x-repo-commit")
    if 200 <= status < 400:
        if not commit:
            return "not-hub"  # a captive portal, proxy page or mirror that is not Hub-compatible
        return "ok" if status < 300 else "redirect"
    if code == "GatedRepo":
        return "gated"
    if code == "EntryNotFound":
        return "file-not-found"
    if code == "RevisionNotFound":
        return "revision-not-found"
    if status == 401 and ("invalid credentials" in message or "invalid token" in message or
                          (token_present and code != "RepoNotFound")):
        return "bad-token"
    if code == "RepoNotFound" or status == 404:
        return "repo-not-found"
    if status == 401:
        return "unauthorized"
    if status == 403:
        return "blocked" if "text/html" in content_type else "forbidden"
    if status == 407:
        return "proxy-auth"
    if status == 429:
        return "rate-limited"
    if status >= 500:
        return "server-error"
    return "http-error"


def _http_client(proxy: Dict[str, Any], ca: Dict[str, Any]):
    import requests

    client = requests.Session()
    client.trust_env = False  # the proxies and CA come from the injected environment, not ours
    if proxy.get("_url"):
        client.proxies = {"http": proxy["_url"], "https": proxy["_url"]}
    client.verify = ca.get("cafile") or ca.get("capath") or True
    return client


def head_file(client, url: str, headers: Dict[str, str], timeouts: NetTimeouts) -> Dict[str, Any]:
    """HEAD like huggingface_hub: follow redirects on the same origin (renamed repos), stop at a
    redirect to another host (the LFS/Xet CDN) and read the metadata from that response."""
    import requests

    started = time.perf_counter()
    target = url
    try:
        for _ in range(5):
            resp = client.head(target, headers=headers, allow_redirects=False,
                                timeout=(timeouts.connect, timeouts.http))
            location = resp.headers.get("Location")
            if 300 <= resp.status_code < 400 and location:
                nxt = urljoin(target, location)
                if urlsplit(nxt)[:2] == urlsplit(target)[:2]:
                    target = nxt
                    continue
            break
    except requests.exceptions.ProxyError as exc:
        return {"outcome": "proxy-error", "error": _short(exc), "seconds": _since(started)}
    except requests.exceptions.SSLError as exc:
        return {"outcome": "tls-error", "error": _short(exc), "seconds": _since(started)}
    except requests.exceptions.ConnectTimeout as exc:
        return {"outcome": "timeout", "error": f"connect timeout: {_short(exc)}", "seconds": _since(started)}
    except requests.exceptions.ReadTimeout:
        return {"outcome": "timeout", "error": f"connected, but no answer within {timeouts.http:g} s",
                "seconds": _since(started)}
    except requests.exceptions.RequestException as exc:
        return {"outcome": "connect-error", "error": _short(exc), "seconds": _since(started)}
    h = resp.headers
    outcome = classify_response(resp.status_code, h, "authorization" in {k.lower() for k in headers})
    location = h.get("Location")
    size = h.get("X-Linked-Size") or (None if 300 <= resp.status_code < 400 else h.get("Content-Length"))
    facts = {
        "outcome": outcome, "status_code": resp.status_code, "seconds": _since(started),
        "x_error_code": h.get("X-Error-Code"), "x_error_message": (h.get("X-Error-Message") or "")[:200] or None,
        "commit": h.get("X-Repo-Commit"), "etag": h.get("X-Linked-Etag") or h.get("ETag"),
        "size": int(size) if size and str(size).isdigit() else None, "content_type": h.get("Content-Type"),
        "cdn": redact_url(urljoin(target, location)) if location and outcome == "redirect" else None,
        "_cdn_url": urljoin(target, location) if location and outcome == "redirect" else None,
    }
    return facts


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 3)


def _short(exc: BaseException) -> str:
    text = scrub(f"{type(exc).__name__}: {exc}") or ""
    return text if len(text) < 400 else text[:400] + "..."


def probe_files(endpoint: Dict[str, Any], models: List[Dict[str, Any]], proxy: Dict[str, Any], ca: Dict[str, Any],
                token: Dict[str, Any], timeouts: NetTimeouts) -> List[Dict[str, Any]]:
    """HEAD every file of every needed Hub model, in parallel (one timeout for all)."""
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if token.get("present") and not token.get("implicit_disabled"):
        headers["Authorization"] = f"Bearer {token['_value']}"
    client = _http_client(proxy, ca)
    jobs = []
    for model in models:
        if model.get("kind") != "hub" or not model.get("repo_id"):
            continue
        for group in model["groups"]:
            for name in group["names"]:
                url = f"{endpoint['_url']}/{model['repo_id']}/resolve/main/{name}"
                jobs.append((model["ref"], model["repo_id"], name, group["required"], url))
    results: List[Dict[str, Any]] = []
    if not jobs:
        return results
    try:
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_HEADS, len(jobs))) as pool:
            futures = [pool.submit(head_file, client, url, headers, timeouts)
                       for _, _, _, _, url in jobs]
            for (ref, repo, name, required, url), fut in zip(jobs, futures):
                facts = fut.result()
                facts.update(model=ref, repo_id=repo, file=name, required=required, url=redact_url(url))
                results.append(facts)
        # One CDN check per model: LFS weights come from another host, often the one a firewall blocks.
        checked = set()
        for facts in results:
            cdn = facts.pop("_cdn_url", None)
            if cdn and facts["model"] not in checked:
                checked.add(facts["model"])
                cdn_facts = head_file(client, cdn, {"User-Agent": USER_AGENT}, timeouts)
                cdn_facts.pop("_cdn_url", None)
                facts["cdn_check"] = {"outcome": "ok" if cdn_facts.get("status_code") in (200, 206) else
                                      cdn_facts["outcome"], "status_code": cdn_facts.get("status_code"),
                                      "error": cdn_facts.get("error"), "seconds": cdn_facts["seconds"]}
    finally:
        client.close()
    for facts in results:
        facts.pop("_cdn_url", None)
    return results


# -- the probe -----------------------------------------------------------------------------------

def not_reached(reason: str) -> Dict[str, Any]:
    return {"status": "not-reached", "reason": reason}


def probe_network(environ: Mapping[str, str], versions: Mapping[str, Optional[str]], models: List[Dict[str, Any]],
                  timeouts: Optional[NetTimeouts] = None) -> Dict[str, Any]:
    """The stepwise probe. The returned facts hold no credential: raw URLs stay inside."""
    return _public(_probe_network(environ, versions, models, timeouts))


def _public(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _public(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, list):
        return [_public(v) for v in value]
    return value


def _probe_network(environ: Mapping[str, str], versions: Mapping[str, Optional[str]], models: List[Dict[str, Any]],
                   timeouts: Optional[NetTimeouts] = None) -> Dict[str, Any]:
    timeouts = timeouts or NetTimeouts.from_environ(environ)
    started = time.perf_counter()
    endpoint = resolve_endpoint(environ)
    token = token_source(environ)
    ca = loader_ca(environ, versions)
    proxy = select_proxy(endpoint, environ)
    facts: Dict[str, Any] = {
        "endpoint": endpoint, "proxy": proxy, "ca": _ca_display(ca), "timeouts": timeouts.__dict__.copy(),
        "token": {k: v for k, v in token.items() if not k.startswith("_")},
        "files": [], "reachable": False,
    }

    def stop(reason: str) -> Dict[str, Any]:
        for step in ("dns", "connect", "tunnel", "tls"):
            facts.setdefault(step, not_reached(reason))
        facts["seconds"] = _since(started)
        return facts

    if not endpoint["valid"]:
        return stop("the endpoint is not a valid URL")
    via_proxy = bool(proxy.get("url")) and not proxy.get("error")
    if proxy.get("error"):
        return stop(f"the proxy variable {proxy['variable']} is not usable: {proxy['error']}")
    if not via_proxy:
        facts["tunnel"] = not_reached("no proxy applies")
    if endpoint["scheme"] == "http":
        facts["tls"] = not_reached("the endpoint is plain http")
    host, port = (proxy["host"], proxy["port"]) if via_proxy else (endpoint["host"], endpoint["port"])
    dns = step_dns(host, port, timeouts.dns)
    dns["target"] = "proxy" if via_proxy else "endpoint"
    facts["dns"] = dns
    if dns["status"] != "ok":
        return stop(f"{'the proxy host' if via_proxy else 'the Hub host'} did not resolve")
    connect, sock = step_connect(dns["addresses"], port, timeouts.connect)
    connect["target"] = "proxy" if via_proxy else "endpoint"
    facts["connect"] = connect
    if sock is None:
        return stop("the TCP connection failed")
    sock.close()
    address = connect["address"]

    def tunnel_socket() -> socket.socket:
        s = _connect(address, port, timeouts.connect)
        if via_proxy:
            result = step_tunnel(s, endpoint["host"], endpoint["port"], proxy, timeouts.tls)
            if result["status"] != "ok":
                s.close()
                raise OSError(result.get("error") or "proxy tunnel failed")
        return s

    if via_proxy and endpoint["scheme"] == "https":
        s = _connect(address, port, timeouts.connect)
        try:
            facts["tunnel"] = step_tunnel(s, endpoint["host"], endpoint["port"], proxy, timeouts.tls)
        finally:
            s.close()
        if facts["tunnel"]["status"] != "ok":
            return stop("the proxy refused the tunnel")
    elif via_proxy:
        facts["tunnel"] = not_reached("plain http through a proxy needs no tunnel")
    if endpoint["scheme"] == "https":
        facts["tls"] = step_tls(tunnel_socket, endpoint["host"], ca, timeouts.tls, environ)
        if facts["tls"]["status"] != "ok":
            return stop("the TLS handshake failed")
    facts["files"] = probe_files(endpoint, models, proxy, ca, token, timeouts)
    facts["reachable"] = any(f["outcome"] in ("ok", "redirect") for f in facts["files"])
    facts["seconds"] = _since(started)
    return facts


def probe_hub(ctx) -> Dict[str, Any]:
    """The network facts (memoised as "hub"), or {"skipped": reason} when the loaders will not touch
    the network: offline mode with everything cached, or no needed model on the Hub."""
    from .cache import probe_cache
    from .environment import probe_environment
    from .needed_models import probe_needed_models

    versions = dict(ctx.fact("environment", probe_environment)["packages"])
    models = ctx.fact("needed_models", probe_needed_models)["models"]
    hub_models = [m for m in models if m["kind"] == "hub" and m.get("repo_id")]
    if not hub_models:
        return {"skipped": "no needed model is loaded from the Hub (all are local paths)"}
    cache = ctx.fact("cache", probe_cache)
    complete = all(m["resolution"]["complete"] for m in cache["models"]
                   if any(h["ref"] == m["ref"] for h in hub_models))
    if cache["offline"]["effective"] and complete:
        return {"skipped": "offline mode is on and every needed file is cached: the loaders make no network call"}
    from .. import progress

    with progress.step("network: DNS, TCP, TLS and HTTP to the Hub, each with its own timeout"):
        return probe_network(ctx.environ, versions, models)
