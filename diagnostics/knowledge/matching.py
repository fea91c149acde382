"""Match a parsed log against the knowledge base: message patterns in exceptions and log lines,
operations read from the frames, and the state-dict analyser's verdicts."""

from __future__ import annotations

import bisect
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .records import ExceptionRecord, ParsedLog, Traceback
from .results import STATUS_RANK, Hit, SignatureMatch
from .signatures import SIGNATURES, Signature

_WS = re.compile(r"\s+")
_SNIPPET = 600


def _norm(text: str) -> str:
    return _WS.sub(" ", text).strip()


def _frames_text(tb: Traceback) -> str:
    parts = []
    for link in tb.links:
        for f in link.frames:
            parts.append(f"{f.file} {f.function} {f.code}")
    return "\n".join(parts)


def _snippet(text: str) -> str:
    return text if len(text) <= _SNIPPET else text[:_SNIPPET] + " [...]"


class _LogText:
    """The whole log as one whitespace-collapsed string, so that line patterns may span the line
    breaks a library put into its message; match offsets map back to 1-based log lines."""

    def __init__(self, lines: Sequence[str]) -> None:
        parts: List[str] = []
        self.starts: List[int] = []
        self.numbers: List[int] = []
        pos = 0
        for i, line in enumerate(lines):
            text = _norm(line)
            if not text:
                continue
            self.starts.append(pos)
            self.numbers.append(i + 1)
            parts.append(text)
            pos += len(text) + 1
        self.text = " ".join(parts)
        self.parts = parts

    def search(self, rx) -> Optional[Tuple[int, str, Dict[str, str]]]:
        m = rx.search(self.text)
        if not m:
            return None
        first = bisect.bisect_right(self.starts, m.start()) - 1
        last = bisect.bisect_right(self.starts, max(m.start(), m.end() - 1)) - 1
        snippet = " ".join(self.parts[first:last + 1])
        return self.numbers[first], snippet, {k: v for k, v in m.groupdict().items() if v}


def match_signatures(parsed: ParsedLog, signatures: Sequence[Signature] = SIGNATURES) -> List[SignatureMatch]:
    """Every signature with at least one pattern found in the log, with its hits (strongest first)."""
    primary = parsed.primary
    exceptions: List[Tuple[Traceback, ExceptionRecord, int]] = []
    for tb, link in parsed.exceptions():
        if tb is primary:
            weight = 4 if link is tb.final else 3
        else:
            weight = 2
        exceptions.append((tb, link, weight))
    log_text = _LogText(parsed.lines)
    warning_lines = {w.log_line for w in parsed.warnings}
    compiled: Dict[str, Any] = {}
    matches: List[SignatureMatch] = []
    for sig in signatures:
        hits: List[Hit] = []
        for pat in sig.patterns:
            rx = compiled.setdefault(pat.regex, re.compile(pat.regex))
            before = len(hits)
            if pat.scope in ("exception", "any"):
                for tb, link, weight in exceptions:
                    m = rx.search(_norm(link.text))
                    if not m:
                        continue
                    if pat.frames and not re.search(pat.frames, _frames_text(tb)):
                        continue
                    if pat.wrapper and weight == 4:
                        # A catch-all on top of the chain explains no more than a known error beneath it.
                        weight = 3
                    hits.append(Hit(pat, _snippet(_norm(link.text)), "exception", link.log_line, weight,
                                    link.exception_type, {k: v for k, v in m.groupdict().items() if v}))
            if pat.scope == "line" or (pat.scope == "any" and len(hits) == before):
                found = log_text.search(rx)
                if found:
                    line_no, text, groups = found
                    where = "warning" if line_no in warning_lines else "line"
                    hits.append(Hit(pat, _snippet(text), where, line_no, 1, "", groups))
        if hits:
            # Keep the strongest hits first, at most five per signature.
            hits.sort(key=lambda h: (-h.weight, h.log_line or 0))
            matches.append(SignatureMatch(sig, hits[:5]))
    return matches



def rank(matches: List[SignatureMatch]) -> List[SignatureMatch]:
    def key(m: SignatureMatch):
        confirmed = sum(1 for n in m.all_needs() if n.outcome == "confirmed")
        first = min((h.log_line or 0) for h in m.hits)
        # Signatures that explain the failure itself (its exception) come before side notes found
        # in other lines; within each group, what the checks confirmed decides.
        explains_failure = 1 if m.weight >= 3 else 0
        return (-explains_failure, -STATUS_RANK[m.status], -m.weight, -confirmed, first)

    ordered = sorted(matches, key=key)
    for i, m in enumerate(ordered, 1):
        m.rank = i
    return ordered


