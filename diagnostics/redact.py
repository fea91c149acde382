"""Keep secrets out of everything we write: reports, terminal output, pytest-html extras, JSON.

Probes may legitimately hold a URL with credentials or an error log with a token in it; rather than
trusting every probe, every output passes through one `Redactor` at the end. It removes:
- the values of secret-looking environment variables (HF_TOKEN, HUGGING_FACE_HUB_TOKEN,
  AWS_SECRET_ACCESS_KEY, anything named *TOKEN*, *SECRET*, *PASSWORD*, *API_KEY*, ...);
- passwords in URLs (`scheme://user:password@host`) and token-like query parameters;
- well-known token shapes that may come from logs rather than this environment (Hugging Face
  `hf_...`, GitHub/GitLab/OpenAI-style keys, AWS access key ids, `Authorization: ...` headers,
  `SOME_TOKEN=value` assignments, `"token": "..."` in JSON).
Presence stays visible ("HF_TOKEN: set"); values never appear.

The one module for redaction. Three entry points share its patterns:
- `Redactor` / `redact(text, environ)`: everything written (reports, terminal, logs before they are
  parsed): this machine's secret values and the known token shapes;
- `redact_url(url)`: a URL as a fact may hold it (proxy, endpoint, CDN): the whole user-info becomes
  `***@` and the query string is dropped;
- `scrub(text, secrets)`: free text a probe records (exception messages, a child's stderr): the whole
  user-info of any URL, bearer tokens, and the given secret values.
"""

from __future__ import annotations

import bisect

import re
from typing import Iterable, List, Mapping, Optional
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

_SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_?KEY|CREDENTIAL|AUTH)", re.I)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^\s/@:'\"<>]*):(?P<pw>[^\s/@'\"<>]+)@")
_URL_TOKEN_PARAM = re.compile(r"(?P<k>[?&](?:token|access_token|api_key|apikey|key|sig|signature|password)=)[^&\s'\"<>]+", re.I)
# Any user-info of a URL in free text (`scheme://user@`, `scheme://user:pw@`), masked as a whole.
_URL_ANY_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/@'\"]+@")
_BEARER_TOKEN = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9_\-.=]+")
_PATTERNS = (
    re.compile(r"\bhf_[A-Za-z0-9]{20,}\b"),  # Hugging Face user access tokens
    re.compile(r"\bapi_org_[A-Za-z0-9]{20,}\b"),  # Hugging Face organisation tokens
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}\b"),  # GitHub tokens
    re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}\b"),  # GitLab tokens
    re.compile(r"\bsk-[A-Za-z0-9_-]{20,}\b"),  # OpenAI-style keys
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),  # AWS access key ids
    re.compile(r"(?i)(?<=authorization: bearer )[^\s'\"<>]+"),
    re.compile(r"(?i)(?<=bearer )[A-Za-z0-9._~+/-]{16,}=*"),
    re.compile(r"(?i)(?<=aws_secret_access_key[=: ])\s*[A-Za-z0-9/+]{40}"),
)
# Shapes with a kept prefix: (pattern, replacement). Logs, shell traces and env dumps carry these.
_KEYED = (
    (re.compile(r"(?i)(authorization\s*[:=]\s*)(?!bearer\b|basic\b|\*\*\*)[^\s'\",]{8,}"), r"\1" + MASK),
    (re.compile(r"(?i)\b(basic)\s+[A-Za-z0-9+/=]{8,}"), r"\1 " + MASK),
    # NAME=value for secret-looking variable names (upper case, as in env dumps and shell traces)
    (re.compile(r"\b([A-Z][A-Z0-9_]*(?:TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|ACCESS_KEY|PRIVATE_KEY)[A-Z0-9_]*)"
                r"(\s*=\s*)(['\"]?)(?!\*\*\*)[^\s'\"]+\3"), r"\1\2\3" + MASK + r"\3"),
    # "token": "..." in JSON-ish text
    (re.compile(r"(?i)([\"'](?:token|hf_token|access_token|password|secret|api_key)[\"']\s*:\s*[\"'])[^\"']+"),
     r"\1" + MASK),
)


def secret_values(environ: Mapping[str, str]) -> List[str]:
    """Values of the environment that must never be shown, longest first."""
    values = set()
    for name, value in environ.items():
        if not value or len(value) < 6:
            continue
        if _SECRET_NAME.search(name):
            values.add(value)
        for match in _URL_USERINFO.finditer(value):  # proxy / endpoint URLs with credentials
            if len(match.group("pw")) >= 3:
                values.add(match.group("pw"))
    return sorted(values, key=len, reverse=True)


class Redactor:
    def __init__(self, environ: Optional[Mapping[str, str]] = None, extra: Iterable[str] = ()) -> None:
        self._values = secret_values(environ or {}) + [v for v in extra if v]

    def __call__(self, text: str) -> str:
        if not text:
            return text
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        text = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{MASK}@", text)
        text = _URL_TOKEN_PARAM.sub(lambda m: m.group("k") + MASK, text)
        for pattern in _PATTERNS:
            text = pattern.sub(MASK, text)
        for pattern, replacement in _KEYED:
            text = pattern.sub(replacement, text)
        return text


def presence(environ: Mapping[str, str], names: Iterable[str]) -> dict:
    """`{"HF_TOKEN": "set", ...}`: what a report may say about secrets."""
    return {name: ("set" if environ.get(name) else "unset") for name in names}


# Whatever the patterns above remove starts with one of these, in any case (a superset: a false
# alarm only costs time). A long text is searched for them with str.find, one fast pass each.
ANCHORS = ("hf_", "api_org_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "glpat-", "sk-", "akia", "asia", "bearer",
           "authoriz", "basic", "token", "secret", "passw", "apikey", "api_key", "accesskey", "access_key",
           "private_key", "key=", "sig=", "signature=", "://")
WHOLE_TEXT_BELOW = 256 * 1024  # smaller texts go through the Redactor whole


def _anchored_lines(lines: List[str], lowered: str) -> List[int]:
    """Indexes of the lines holding an anchor, each with the line after it (a value may follow there)."""
    starts, offset = [], 0
    for line in lines:
        starts.append(offset)
        offset += len(line) + 1
    marked = set()
    for anchor in ANCHORS:
        at = lowered.find(anchor)
        while at >= 0:
            index = bisect.bisect_right(starts, at) - 1
            marked.update((index, index + 1))
            at = lowered.find(anchor, starts[index + 1] if index + 1 < len(starts) else len(lowered))
    return sorted(i for i in marked if i < len(lines))


def redact(text: str, environ: Optional[Mapping[str, str]] = None) -> str:
    """`text` with this machine's secret values and known token shapes replaced by `***` (the entry
    point for untrusted log text, before anything of it is parsed, stored or shown).

    A log may be tens of megabytes and each pattern is a pass over all of it, so in a long text only
    the lines that can hold a secret (an anchor above, and the line after it) go through the
    patterns; the secret environment values are replaced everywhere. The result is the same as
    redacting the whole text (tests/test_explain_large_logs.py)."""
    redactor = Redactor(environ or {})
    if not text or len(text) < WHOLE_TEXT_BELOW:
        return redactor(text)
    for value in secret_values(environ or {}):
        text = text.replace(value, MASK)
    lines = text.split("\n")
    runs: List[List[int]] = []
    for index in _anchored_lines(lines, text.lower()):
        if runs and runs[-1][-1] == index - 1:
            runs[-1].append(index)
        else:
            runs.append([index])
    for run in runs:
        piece = redactor("\n".join(lines[run[0]: run[-1] + 1])).split("\n")
        if len(piece) == len(run):
            lines[run[0]: run[-1] + 1] = piece
        else:  # never expected (the Redactor keeps line breaks): the run as one line
            lines[run[0]: run[-1] + 1] = [" ".join(piece)] + [""] * (len(run) - 1)
    return "\n".join(lines)


def scrub(text: Optional[str], secrets: Iterable[str] = ()) -> Optional[str]:
    """Remove credentials from free text (exception messages, stderr): `scheme://user:pw@`, bearer
    tokens, and any of `secrets` (token values) verbatim."""
    if not text:
        return text
    text = _BEARER_TOKEN.sub(r"\1" + MASK, _URL_ANY_USERINFO.sub(r"\1" + MASK + "@", text))
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
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
        netloc = MASK + "@" + netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
