"""Can this machine reach the Hugging Face Hub the way the loaders will, and where does it break?

Stepwise, each step with its own short timeout, so the report names the broken link instead of
"connection error": endpoint and proxy selection (`endpoint`) -> DNS -> TCP connect -> CONNECT
tunnel -> TLS handshake (`steps`) -> one HEAD per needed file (`http`). The facts are typed
(`facts.HubFacts`).

A step that fails stops the steps after it (they are reported as not reached). Nothing is
printed; tokens are sent when the loaders would send them, never recorded: the facts say which
variable holds one. Credentials in proxy URLs and endpoints are redacted before they are recorded.
"""

from __future__ import annotations

import socket
import time
from typing import Any, Dict, List, Mapping, Optional

from .endpoint import (bypasses_proxy, environment_proxies, loader_ca, resolve_endpoint, select_proxy,
                       token_source)
from .facts import CaChoice, Endpoint, HubFacts, NetTimeouts, ProxyChoice, StepFacts, TokenInfo
from .http import classify_response, head_file, probe_files
from .steps import open_socket, seconds_since, step_connect, step_dns, step_tls, step_tunnel

__all__ = [
    "HubFacts", "NetTimeouts", "bypasses_proxy", "classify_response", "environment_proxies", "head_file",
    "loader_ca", "not_reached", "probe_files", "probe_hub", "probe_network", "resolve_endpoint", "select_proxy",
    "step_connect", "step_dns", "step_tls", "step_tunnel", "token_source",
]


def not_reached(reason: str) -> StepFacts:
    return {"status": "not-reached", "reason": reason}


class _Route:
    """The way to the Hub one probe takes: endpoint, proxy and CA, with the steps recorded so far."""

    def __init__(self, environ: Mapping[str, str], versions: Mapping[str, Optional[str]],
                 timeouts: NetTimeouts) -> None:
        self.environ = environ
        self.timeouts = timeouts
        self.started = time.perf_counter()
        self.endpoint: Endpoint = resolve_endpoint(environ)
        self.token: TokenInfo = token_source(environ)
        self.ca: CaChoice = loader_ca(environ, versions)
        self.proxy: ProxyChoice = select_proxy(self.endpoint, environ)
        self.steps: Dict[str, StepFacts] = {}

    @property
    def via_proxy(self) -> bool:
        return self.proxy.applies

    @property
    def target(self) -> str:
        return "proxy" if self.via_proxy else "endpoint"

    def facts(self, files: List[Dict[str, Any]] = (), reason: Optional[str] = None) -> HubFacts:
        """The public facts; with `reason`, the steps not taken are recorded as not reached."""
        if reason is not None:
            for step in ("dns", "connect", "tunnel", "tls"):
                self.steps.setdefault(step, not_reached(reason))
        files = list(files)
        return HubFacts(endpoint=self.endpoint.public(), proxy=self.proxy.public(), ca=self.ca,
                        timeouts=self.timeouts, token=self.token.public(), steps=dict(self.steps), files=files,
                        reachable=any(answer["outcome"] in ("ok", "redirect") for answer in files),
                        seconds=seconds_since(self.started))

    def tunnel_socket(self, address: str, port: int) -> socket.socket:
        """A connected socket to the endpoint, through the proxy's tunnel when one applies."""
        sock = open_socket(address, port, self.timeouts.connect)
        if self.via_proxy:
            result = step_tunnel(sock, self.endpoint.host, self.endpoint.port, self.proxy, self.timeouts.tls)
            if result["status"] != "ok":
                sock.close()
                raise OSError(result.get("error") or "proxy tunnel failed")
        return sock


def probe_network(environ: Mapping[str, str], versions: Mapping[str, Optional[str]], models: List[Dict[str, Any]],
                  timeouts: Optional[NetTimeouts] = None) -> HubFacts:
    """The stepwise probe. The returned facts hold no credential: raw URLs and the token stay inside."""
    route = _Route(environ, versions, timeouts or NetTimeouts.from_environ(environ))
    endpoint, proxy, steps = route.endpoint, route.proxy, route.steps
    if not endpoint.valid:
        return route.facts(reason="the endpoint is not a valid URL")
    if proxy.error:
        return route.facts(reason=f"the proxy variable {proxy.variable} is not usable: {proxy.error}")
    if not route.via_proxy:
        steps["tunnel"] = not_reached("no proxy applies")
    if endpoint.scheme == "http":
        steps["tls"] = not_reached("the endpoint is plain http")
    host, port = (proxy.host, proxy.port) if route.via_proxy else (endpoint.host, endpoint.port)
    steps["dns"] = dict(step_dns(host, port, route.timeouts.dns), target=route.target)
    if steps["dns"]["status"] != "ok":
        return route.facts(reason=f"{'the proxy host' if route.via_proxy else 'the Hub host'} did not resolve")
    connect, sock = step_connect(steps["dns"]["addresses"], port, route.timeouts.connect)
    steps["connect"] = dict(connect, target=route.target)
    if sock is None:
        return route.facts(reason="the TCP connection failed")
    sock.close()
    address = connect["address"]
    if route.via_proxy and endpoint.scheme == "https":
        sock = open_socket(address, port, route.timeouts.connect)
        try:
            steps["tunnel"] = step_tunnel(sock, endpoint.host, endpoint.port, proxy, route.timeouts.tls)
        finally:
            sock.close()
        if steps["tunnel"]["status"] != "ok":
            return route.facts(reason="the proxy refused the tunnel")
    elif route.via_proxy:
        steps["tunnel"] = not_reached("plain http through a proxy needs no tunnel")
    if endpoint.scheme == "https":
        steps["tls"] = step_tls(lambda: route.tunnel_socket(address, port), endpoint.host, route.ca,
                                route.timeouts.tls, environ)
        if steps["tls"]["status"] != "ok":
            return route.facts(reason="the TLS handshake failed")
    return route.facts(probe_files(endpoint, models, proxy, route.ca, route.token, route.timeouts))


def probe_hub(ctx) -> HubFacts:
    """The network facts (memoised as "hub"), or only `skipped` when the loaders will not touch the
    network: offline mode with everything cached, or no needed model on the Hub."""
    from ..cache import probe_cache
    from ..environment import probe_environment
    from ..needed_models import probe_needed_models

    versions = dict(ctx.fact("environment", probe_environment).packages)
    models = ctx.fact("needed_models", probe_needed_models).models
    hub_refs = {model.ref for model in models if model.kind == "hub" and model.repo_id}
    if not hub_refs:
        return HubFacts(skipped="no needed model is loaded from the Hub (all are local paths)")
    cache = ctx.fact("cache", probe_cache)
    complete = all(entry.resolution["complete"] for entry in cache.models if entry.ref in hub_refs)
    if cache.offline.effective and complete:
        return HubFacts(skipped="offline mode is on and every needed file is cached: the loaders make no network "
                                "call")
    from ... import progress

    with progress.step("network: DNS, TCP, TLS and HTTP to the Hub, each with its own timeout"):
        return probe_network(ctx.environ, versions, models)
