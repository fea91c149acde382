"""What the network probe returns: typed facts, with `to_dict()` giving the report's JSON.

The records that may carry a credential (the endpoint or proxy URL as the user wrote it, the token
the loaders send) hold it in a `raw_*`/`value` field that `to_dict()` leaves out and `public()`
clears, so the facts the probe returns hold none.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Mapping, Optional

# One step of the probe (dns, connect, tunnel, tls) as recorded: `status` (ok, fail, timeout,
# not-reached), `seconds`, `error`, `target` ("endpoint" or "proxy") and what the step saw
# (addresses, port, status_code, certificate, CA alternatives), or `reason` when not reached.
StepFacts = Dict[str, Any]
# One HEAD answer: model, repo_id, file, required, url, outcome, status_code, commit, etag, size,
# cdn, cdn_check, x_error_code, x_error_message, content_type, error, seconds.
FileAnswer = Dict[str, Any]

STEPS = ("dns", "connect", "tunnel", "tls")


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

    def to_dict(self) -> Dict[str, float]:
        return {"dns": self.dns, "connect": self.connect, "tls": self.tls, "http": self.http}


@dataclass(frozen=True)
class Endpoint:
    """huggingface_hub's ENDPOINT, parsed. `url`/`display` are redacted; `raw_url` is what requests use."""

    url: Optional[str]
    display: Optional[str]
    source: str  # HF_ENDPOINT, HUGGINGFACE_CO_STAGING or default
    valid: bool = False
    error: Optional[str] = None
    scheme: Optional[str] = None
    host: Optional[str] = None
    port: Optional[int] = None
    has_credentials: bool = False
    raw_url: Optional[str] = field(default=None, repr=False)

    def public(self) -> "Endpoint":
        return replace(self, raw_url=None)

    def to_dict(self) -> Dict[str, Any]:
        return {"url": self.url, "display": self.display, "source": self.source, "valid": self.valid,
                "error": self.error, "scheme": self.scheme, "host": self.host, "port": self.port,
                "has_credentials": self.has_credentials}


@dataclass(frozen=True)
class ProxyChoice:
    """The proxy the loaders' HTTP client picks for the endpoint (None fields: no proxy applies).

    `parsed` says whether the chosen proxy URL was parsed (then host, port, scheme and
    has_credentials are known); `error` says why it is not usable."""

    url: Optional[str] = None
    display: Optional[str] = None
    variable: Optional[str] = None
    bypassed_by: Optional[str] = None
    no_proxy: Optional[str] = None
    variables_set: List[str] = field(default_factory=list)
    parsed: bool = False
    host: Optional[str] = None
    port: Optional[int] = None
    scheme: Optional[str] = None
    has_credentials: bool = False
    error: Optional[str] = None
    raw_url: Optional[str] = field(default=None, repr=False)

    @property
    def applies(self) -> bool:
        """Requests go through this proxy (one is chosen, not bypassed, and usable)."""
        return bool(self.url) and not self.error

    def public(self) -> "ProxyChoice":
        return replace(self, raw_url=None)

    def to_dict(self) -> Dict[str, Any]:
        facts: Dict[str, Any] = {"url": self.url, "display": self.display, "variable": self.variable,
                                 "bypassed_by": self.bypassed_by, "no_proxy": self.no_proxy,
                                 "set": list(self.variables_set)}
        if self.parsed:
            facts.update(host=self.host, port=self.port, scheme=self.scheme, has_credentials=self.has_credentials)
        if self.error:
            facts["error"] = self.error
        return facts


@dataclass(frozen=True)
class TokenInfo:
    """Which token the loaders send; `value` is for the request header only, never shown."""

    present: bool
    source: Optional[str]  # HF_TOKEN, HUGGING_FACE_HUB_TOKEN, "token file" or None
    implicit_disabled: bool
    token_file: Optional[str] = None
    value: Optional[str] = field(default=None, repr=False)

    @property
    def sent(self) -> bool:
        return self.present and not self.implicit_disabled

    def public(self) -> "TokenInfo":
        return replace(self, value=None)

    def to_dict(self) -> Dict[str, Any]:
        facts: Dict[str, Any] = {"present": self.present, "source": self.source}
        if self.token_file:
            facts["token_file"] = self.token_file
        facts["implicit_disabled"] = self.implicit_disabled
        return facts


@dataclass(frozen=True)
class CaChoice:
    """The CA certificates an HTTP client verifies the Hub with."""

    client: Optional[str]  # requests, httpx or httpx2
    variable: Optional[str] = None  # the variable that named them, None for the default
    cafile: Optional[str] = None
    capath: Optional[str] = None
    default: Optional[str] = None  # "certifi" or "system trust store" when no variable decided

    def same_certificates(self, other: "CaChoice") -> bool:
        return (self.cafile, self.capath) == (other.cafile, other.capath)

    def to_dict(self) -> Dict[str, Any]:
        shown = {"client": self.client, "variable": self.variable, "cafile": self.cafile, "capath": self.capath,
                 "default": self.default}
        return {key: value for key, value in shown.items() if value is not None}


@dataclass(frozen=True)
class HubFacts:
    """The network facts of one run, or only `skipped` (why the loaders make no network call)."""

    skipped: Optional[str] = None
    endpoint: Optional[Endpoint] = None
    proxy: ProxyChoice = field(default_factory=ProxyChoice)
    ca: Optional[CaChoice] = None
    timeouts: Optional[NetTimeouts] = None
    token: TokenInfo = field(default_factory=lambda: TokenInfo(False, None, False))
    steps: Dict[str, StepFacts] = field(default_factory=dict)  # dns, connect, tunnel, tls
    files: List[FileAnswer] = field(default_factory=list)
    reachable: bool = False
    seconds: Optional[float] = None

    def step(self, name: str) -> StepFacts:
        return self.steps.get(name, {})

    def failed_step(self) -> Optional[str]:
        """The first step that failed or timed out, or None."""
        return next((name for name in STEPS if self.step(name).get("status") in ("fail", "timeout")), None)

    def files_of(self, ref: str) -> List[FileAnswer]:
        return [answer for answer in self.files if answer.get("model") == ref]

    def to_dict(self) -> Dict[str, Any]:
        if self.skipped is not None:
            return {"skipped": self.skipped}
        facts: Dict[str, Any] = {
            "endpoint": self.endpoint.to_dict() if self.endpoint else None,
            "proxy": self.proxy.to_dict(),
            "ca": self.ca.to_dict() if self.ca else None,
            "timeouts": self.timeouts.to_dict() if self.timeouts else None,
            "token": self.token.to_dict(),
            "files": self.files, "reachable": self.reachable,
        }
        facts.update(self.steps)
        facts["seconds"] = self.seconds
        return facts
