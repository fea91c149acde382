"""Where the loaders send their requests, and how: the endpoint (HF_ENDPOINT), the token, the proxy
(HTTP(S)_PROXY / NO_PROXY, read from the injected environment the way httpx and requests read them)
and the CA certificates the installed huggingface_hub's HTTP client verifies the Hub with.

Pure functions of the environment and the installed versions: nothing here touches the network.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from typing import Dict, Mapping, Optional, Tuple
from urllib.parse import urlsplit

from ...redact import redact_url
from ...util import version_at_least
from ..cache import DEFAULT_ENDPOINT, STAGING_ENDPOINT, expand, hf_home, is_true
from .facts import CaChoice, Endpoint, ProxyChoice, TokenInfo

TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


def default_port(scheme: Optional[str]) -> int:
    return 443 if scheme == "https" else 80


def resolve_endpoint(environ: Mapping[str, str]) -> Endpoint:
    """huggingface_hub's ENDPOINT: HF_ENDPOINT (trailing / stripped), staging, or huggingface.co."""
    if is_true(environ.get("HUGGINGFACE_CO_STAGING")):
        url, source = STAGING_ENDPOINT, "HUGGINGFACE_CO_STAGING"
    elif environ.get("HF_ENDPOINT"):
        url, source = environ["HF_ENDPOINT"].rstrip("/"), "HF_ENDPOINT"
    else:
        url, source = DEFAULT_ENDPOINT, "default"
    # raw_url keeps credentials a mirror URL may carry; it is cleared before the facts leave the probe.
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return Endpoint(url=shown, display=shown, source=source, raw_url=url, error=f"not a URL: {exc}")
    if parts.scheme not in ("http", "https"):
        return Endpoint(url=shown, display=shown, source=source, raw_url=url,
                        error=f"scheme must be http or https, not {parts.scheme or 'missing'!r}")
    if not parts.hostname:
        return Endpoint(url=shown, display=shown, source=source, raw_url=url, error="no host name")
    error = None
    if parts.path not in ("", "/"):
        error = f"has a path ({parts.path}); huggingface_hub appends /<repo>/resolve/... to the whole value"
    return Endpoint(url=shown, display=shown, source=source, raw_url=url, valid=error is None, error=error,
                    scheme=parts.scheme, host=parts.hostname, port=port or default_port(parts.scheme),
                    has_credentials="@" in parts.netloc)


def token_source(environ: Mapping[str, str]) -> TokenInfo:
    """Which token the loaders will send (HF_TOKEN > HUGGING_FACE_HUB_TOKEN > token file); the value
    is kept only for the request header and is never part of the facts."""
    disabled = is_true(environ.get("HF_HUB_DISABLE_IMPLICIT_TOKEN"))
    for variable in TOKEN_VARIABLES:
        if environ.get(variable):
            return TokenInfo(True, variable, disabled, value=environ[variable].strip())
    home, _ = hf_home(environ)
    path = expand(environ.get("HF_TOKEN_PATH") or os.path.join(home, "token"), environ)
    try:
        with open(path, encoding="utf-8") as handle:
            value = handle.read().strip()
    except OSError:
        value = ""
    if value:
        return TokenInfo(True, "token file", disabled, token_file=path, value=value)
    return TokenInfo(False, None, disabled)


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
    for entry in (item.strip().lower() for item in no_proxy.split(",")):
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


def select_proxy(endpoint: Endpoint, environ: Mapping[str, str]) -> ProxyChoice:
    proxies = environment_proxies(environ)
    variables_set = sorted(variable for _, variable in proxies.values())
    no_proxy = proxies.get("no")
    no_proxy_value = no_proxy[0] if no_proxy else None
    chosen = (proxies.get(endpoint.scheme) or proxies.get("all")) if endpoint.valid else None
    if chosen is None:
        return ProxyChoice(variables_set=variables_set, no_proxy=no_proxy_value if endpoint.valid else None)
    if no_proxy and bypasses_proxy(endpoint.host or "", no_proxy[0]):
        return ProxyChoice(display=redact_url(chosen[0]), variable=chosen[1], bypassed_by=no_proxy[1],
                           no_proxy=no_proxy_value, variables_set=variables_set)
    url = chosen[0] if "://" in chosen[0] else "http://" + chosen[0]
    common = dict(url=redact_url(url), display=redact_url(url), variable=chosen[1], no_proxy=no_proxy_value,
                  variables_set=variables_set, raw_url=url)
    try:
        parts = urlsplit(url)
        port = parts.port or default_port(parts.scheme)
    except ValueError as exc:
        return ProxyChoice(error=f"not a URL: {exc}", **common)
    return ProxyChoice(parsed=True, host=parts.hostname, port=port, scheme=parts.scheme,
                       has_credentials="@" in parts.netloc,
                       error=None if parts.hostname else "no host name in the proxy URL", **common)


def system_ca() -> CaChoice:
    paths = ssl.get_default_verify_paths()
    cafile = paths.openssl_cafile if paths.openssl_cafile and os.path.isfile(paths.openssl_cafile) else None
    capath = paths.openssl_capath if paths.openssl_capath and os.path.isdir(paths.openssl_capath) else None
    return CaChoice(None, cafile=cafile, capath=capath)


def certifi_bundle() -> Optional[str]:
    try:
        import certifi
    except ImportError:
        return None
    return certifi.where()


def loader_ca(environ: Mapping[str, str], versions: Mapping[str, Optional[str]]) -> CaChoice:
    """The CA certificates the installed huggingface_hub's HTTP client verifies the Hub with.

    huggingface_hub < 1.0 (and transformers 4.19's own downloads) use requests: REQUESTS_CA_BUNDLE >
    CURL_CA_BUNDLE > certifi. huggingface_hub >= 1.0 uses httpx: SSL_CERT_FILE > SSL_CERT_DIR >
    its default (certifi for httpx, the system store for httpx2 as in huggingface_hub 2.x); it does
    not read REQUESTS_CA_BUNDLE.
    """
    hub_version = versions.get("huggingface_hub")
    transformers_version = versions.get("transformers")
    uses_requests = (hub_version is not None and version_at_least(hub_version, "1.0") is False) or \
        (transformers_version is not None and version_at_least(transformers_version, "4.22") is False)
    if uses_requests:
        for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            if environ.get(variable):
                value = expand(environ[variable], environ)
                if os.path.isdir(value):
                    return CaChoice("requests", variable, capath=value)
                return CaChoice("requests", variable, cafile=value)
        return CaChoice("requests", cafile=certifi_bundle(), default="certifi")
    client = "httpx2" if versions.get("httpx2") or _has_module("httpx2") else "httpx"
    if environ.get("SSL_CERT_FILE"):
        return CaChoice(client, "SSL_CERT_FILE", cafile=expand(environ["SSL_CERT_FILE"], environ))
    if environ.get("SSL_CERT_DIR"):
        return CaChoice(client, "SSL_CERT_DIR", capath=expand(environ["SSL_CERT_DIR"], environ))
    if client == "httpx2":
        system = system_ca()
        return CaChoice(client, cafile=system.cafile, capath=system.capath, default="system trust store")
    return CaChoice(client, cafile=certifi_bundle(), default="certifi")


def _has_module(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
