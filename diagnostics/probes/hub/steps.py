"""The socket steps of the network probe, each with its own short timeout: DNS -> TCP connect (to
the proxy when one applies) -> CONNECT tunnel -> TLS handshake with the CA certificates the loaders use.

Each step returns its facts (`StepFacts`): status ok/fail/timeout, the seconds it took, what it saw
and, on failure, an error in words.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple
from urllib.parse import urlsplit

from ..cache import expand
from .endpoint import certifi_bundle, system_ca
from .facts import CaChoice, ProxyChoice, StepFacts

USER_AGENT = "ldm-diagnostics (hub probe)"


def _step(status: str, started: float, **facts: Any) -> StepFacts:
    facts.update(status=status, seconds=seconds_since(started))
    return facts


def seconds_since(started: float) -> float:
    return round(time.perf_counter() - started, 3)


def step_dns(host: str, port: int, timeout: float) -> StepFacts:
    """getaddrinfo has no timeout of its own: it runs in a daemon thread that is abandoned on timeout."""
    started = time.perf_counter()
    try:
        ipaddress.ip_address(host.strip("[]"))
        return _step("ok", started, host=host, addresses=[host.strip("[]")], literal=True)
    except ValueError:
        pass
    answer: Dict[str, Any] = {}

    def resolve() -> None:
        try:
            answer["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except Exception as exc:  # gaierror, UnicodeError for odd names
            answer["error"] = exc

    thread = threading.Thread(target=resolve, name="ldm-diag-dns", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return _step("timeout", started, host=host, error=f"no answer from the resolver within {timeout:g} s")
    if "error" in answer:
        exc = answer["error"]
        return _step("fail", started, host=host, error=f"{type(exc).__name__}: {exc}",
                     errno=getattr(exc, "errno", None))
    addresses = []
    for _, _, _, _, sockaddr in answer["infos"]:
        if sockaddr[0] not in addresses:
            addresses.append(sockaddr[0])
    return _step("ok", started, host=host, addresses=addresses[:6])


def open_socket(address: str, port: int, timeout: float) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect((address, port))
    except BaseException:
        sock.close()
        raise
    return sock


def step_connect(addresses: List[str], port: int, timeout: float) -> Tuple[StepFacts, Optional[socket.socket]]:
    started = time.perf_counter()
    errors = []
    for address in addresses[:2]:
        try:
            sock = open_socket(address, port, timeout)
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
                 error="; ".join(f"{address}:{port} {message}" for address, _, message in errors),
                 attempts=[{"address": address, "kind": kind} for address, kind, _ in errors]), None


def step_tunnel(sock: socket.socket, host: str, port: int, proxy: ProxyChoice, timeout: float) -> StepFacts:
    """CONNECT host:port through the proxy, as an HTTPS client does before its TLS handshake."""
    started = time.perf_counter()
    headers = f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: {USER_AGENT}\r\n"
    parts = urlsplit(proxy.raw_url or "")
    if parts.username is not None:
        import base64
        from urllib.parse import unquote

        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode("utf-8")
        headers += "Proxy-Authorization: Basic " + base64.b64encode(credentials).decode("ascii") + "\r\n"
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


def ssl_context(ca: CaChoice) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca.cafile or ca.capath:
        context.load_verify_locations(ca.cafile, ca.capath)
    return context


def _handshake(sock_factory, host: str, ca: CaChoice, timeout: float) -> Tuple[str, str, Dict[str, Any]]:
    """(status, error, extra) of one TLS handshake. `sock_factory()` returns a connected socket."""
    try:
        context = ssl_context(ca)
    except (OSError, ssl.SSLError) as exc:
        return "fail", f"cannot load the CA certificates: {exc}", {"kind": "bad-ca-file"}
    sock = None
    try:
        sock = sock_factory()
        sock.settimeout(timeout)
        with context.wrap_socket(sock, server_hostname=host) as tls:
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
    return ", ".join(f"{key}={value}" for rdn in rdns for key, value in rdn)


def step_tls(sock_factory, host: str, ca: CaChoice, timeout: float, environ: Mapping[str, str]) -> StepFacts:
    started = time.perf_counter()
    status, error, extra = _handshake(sock_factory, host, ca, timeout)
    facts = _step(status, started, host=host, error=error or None, ca=ca.to_dict(), **extra)
    if status == "fail" and extra.get("kind") == "verify":
        # Which other trust source would accept this certificate? That is the fix to propose.
        facts["alternatives"] = _accepting_alternatives(sock_factory, host, ca, timeout, environ)
    return facts


def _accepting_alternatives(sock_factory, host: str, ca: CaChoice, timeout: float,
                            environ: Mapping[str, str]) -> List[Dict[str, Any]]:
    candidates = [("system trust store", system_ca()), ("certifi", CaChoice(None, cafile=certifi_bundle()))]
    for variable in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        if environ.get(variable) and variable != ca.variable:
            candidates.append((variable, CaChoice(None, cafile=expand(environ[variable], environ))))
    alternatives = []
    for label, other in candidates:
        if not (other.cafile or other.capath) or other.same_certificates(ca):
            continue
        status, _, _ = _handshake(sock_factory, host, other, timeout)
        alternatives.append({"source": label, "accepts": status == "ok", "cafile": other.cafile,
                             "capath": other.capath})
    return alternatives
