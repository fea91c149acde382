"""Remove secrets from untrusted log text before anything of it is parsed, stored or shown.

The shapes live in the project's one `diagnostics.redact.Redactor` (shared with every renderer);
this is the log-facing entry point.
"""

from __future__ import annotations

from typing import Mapping, Optional

from ..redact import Redactor


def redact(text: str, environ: Optional[Mapping[str, str]] = None) -> str:
    """`text` with this machine's secret values and known token shapes replaced by `***`."""
    return Redactor(environ or {})(text)
