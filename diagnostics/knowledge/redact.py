"""Remove secrets from untrusted log text before anything of it is parsed, stored or shown.

The shapes live in the project's one `diagnostics.redact.Redactor` (shared with every renderer);
this is the log-facing entry point. A log may be tens of megabytes, and the Redactor's patterns
cost a pass each over all of it, so only the lines that can hold a secret go through them: a
line with one of the literal anchors every pattern starts with (`hf_`, `bearer`, `token`, `://`,
...), together with the line after it (a value may follow on the next line). This machine's
secret environment values are replaced everywhere.
"""

from __future__ import annotations

import bisect
from typing import List, Mapping, Optional

from ..redact import MASK, Redactor, secret_values
from .window import line_starts

# Whatever the Redactor removes starts with one of these, in any case (a superset: false alarms
# only cost time). Searched with str.find in the lower-cased text: one fast pass per anchor.
ANCHORS = ("hf_", "api_org_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "glpat-", "sk-", "akia", "asia", "bearer",
           "authoriz", "basic", "token", "secret", "passw", "apikey", "api_key", "accesskey", "access_key",
           "private_key", "key=", "sig=", "signature=", "://")
WHOLE_TEXT_BELOW = 256 * 1024  # smaller texts go through the Redactor whole


def redact(text: str, environ: Optional[Mapping[str, str]] = None) -> str:
    """`text` with this machine's secret values and known token shapes replaced by `***`."""
    redactor = Redactor(environ or {})
    if not text or len(text) < WHOLE_TEXT_BELOW:
        return redactor(text)
    for value in secret_values(environ or {}):
        if value in text:
            text = text.replace(value, MASK)
    lines = text.split("\n")
    starts = line_starts(lines)
    lowered = text.lower()
    marked = set()
    for anchor in ANCHORS:
        at = lowered.find(anchor)
        while at >= 0:
            index = bisect.bisect_right(starts, at) - 1
            marked.update((index, index + 1))
            at = lowered.find(anchor, starts[index + 1] if index + 1 < len(starts) else len(lowered))
    if not marked:
        return text
    runs: List[List[int]] = []
    for index in sorted(i for i in marked if i < len(lines)):
        if runs and runs[-1][-1] == index - 1:
            runs[-1].append(index)
        else:
            runs.append([index])
    for run in runs:
        piece = redactor("\n".join(lines[run[0]: run[-1] + 1])).split("\n")
        if len(piece) == len(run):
            lines[run[0]: run[-1] + 1] = piece
        else:  # never expected (the Redactor keeps line breaks): redact the run as one line
            lines[run[0]: run[-1] + 1] = [" ".join(piece)] + [""] * (len(run) - 1)
    return "\n".join(lines)
