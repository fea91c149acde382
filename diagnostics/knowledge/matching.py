"""Match a parsed log against the knowledge base: message patterns in exceptions and log lines,
operations read from the frames, and the state-dict analyser's verdicts."""

from __future__ import annotations

import bisect
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .operations import infer_operation
from .records import ExceptionRecord, ParsedLog, Traceback
from .results import STATUS_RANK, Hit, SignatureMatch
from .signatures import SIGNATURES, Pattern, Signature
from .signatures.imports import derive_groups
from .shapes import shape_verdict
from .state_dict import KeyReport, Verdict, parse_key_report, unlabelled_keys

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

    def __init__(self, lines: Sequence[str], origins: Sequence[int] = ()) -> None:
        parts: List[str] = []
        self.starts: List[int] = []
        self.numbers: List[int] = []
        pos = 0
        for i, line in enumerate(lines):
            text = _norm(line)
            if not text:
                continue
            self.starts.append(pos)
            self.numbers.append(origins[i] if i < len(origins) else i + 1)
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


KEY_LIST_LINE = re.compile(r"(?:Missing|Unexpected) [Kk]eys?|missing keys:|unexpected keys:|size mismatch for |"
                           r"Restored from \S+ with \d+ missing")


class _Candidates:
    """What one log offers to the patterns: its exceptions (with a weight), the operation its
    failure happened in, the key reports of its exceptions and of its printed key lists."""

    def __init__(self, parsed: ParsedLog) -> None:
        self.parsed = parsed
        primary = parsed.primary
        self.primary = primary
        self.exceptions: List[Tuple[Traceback, ExceptionRecord, int]] = []
        for tb, link in parsed.exceptions():
            weight = (4 if link is tb.final else 3) if tb is primary else 2
            self.exceptions.append((tb, link, weight))
        self.operation = infer_operation(primary) if primary is not None and primary.fmt != "bare" else None
        self.reports: Dict[int, KeyReport] = {}
        for _tb, link, _weight in self.exceptions:
            report = parse_key_report(link.message)
            if report is not None:
                self.reports[id(link)] = report
        self.log_report = None if self.reports else _printed_key_lists(parsed)
        self.shapes: Dict[int, Verdict] = {}
        for _tb, link, _weight in self.exceptions:
            verdict = shape_verdict(link.text)
            if verdict is not None:
                self.shapes[id(link)] = verdict
        self.log_shape = None if self.shapes else _printed_shape_error(parsed)
        self.log_text = _LogText(parsed.text_lines or parsed.lines, parsed.origins)
        self.warning_lines = {w.log_line for w in parsed.warnings}


def _printed_key_lists(parsed: ParsedLog) -> Optional[Tuple[int, KeyReport]]:
    """Key lists a loader printed outside any exception (ldm's `Missing Keys: [...]`)."""
    lines = parsed.text_lines or parsed.lines
    picked: List[str] = []
    first = 0
    for index, line in enumerate(lines):
        if KEY_LIST_LINE.search(line):
            first = first or index + 1
            picked.extend(lines[index:index + 2])
        elif line.count('"') + line.count("'") >= 16 and unlabelled_keys(line):
            first = first or index + 1
            picked.append(line)
    report = parse_key_report("\n".join(picked)) if picked else None
    if report is None:
        return None
    origin = parsed.origins[first - 1] if parsed.origins and first else first
    return origin, report


def _printed_shape_error(parsed: ParsedLog) -> Optional[Tuple[int, Verdict]]:
    """A shape message in a log line outside any exception (a runtime's own error line)."""
    lines = parsed.text_lines or parsed.lines
    for index, line in enumerate(lines):
        verdict = shape_verdict(line) if "xpected" in line else None
        if verdict is not None:
            return (parsed.origins[index] if index < len(parsed.origins) else index + 1), verdict
    return None


def _analysis_hits(pat: Pattern, found: _Candidates) -> List[Hit]:
    hits = []
    line_weight = 3 if not found.parsed.has_traceback else 1
    for _tb, link, weight in found.exceptions:
        report = found.reports.get(id(link))
        verdict = next((v for v in report.verdicts() if v.tag == pat.analysis), None) if report else None
        shape = found.shapes.get(id(link))
        if verdict is None and shape is not None and shape.tag == pat.analysis:
            verdict, report = shape, None
        if verdict is not None:
            hits.append(Hit(pat, _snippet(verdict.text), "exception", link.log_line, weight + 1,
                            link.exception_type, {"verdict": verdict.tag}, key_report=report, verdict=verdict))
    if found.log_report is not None:
        line_no, report = found.log_report
        verdict = next((v for v in report.verdicts() if v.tag == pat.analysis), None)
        if verdict is not None:
            hits.append(Hit(pat, _snippet(verdict.text), "line", line_no, line_weight, "", {"verdict": verdict.tag},
                            key_report=report, verdict=verdict))
    if found.log_shape is not None and found.log_shape[1].tag == pat.analysis:
        line_no, verdict = found.log_shape
        hits.append(Hit(pat, _snippet(verdict.text), "line", line_no, line_weight, "", {"verdict": verdict.tag},
                        verdict=verdict))
    return hits


def _operation_hit(pat: Pattern, found: _Candidates) -> Optional[Hit]:
    if found.operation is None or found.operation.name != pat.operation or found.primary is None:
        return None
    final = found.primary.final
    if not re.search(pat.exception or ".", final.short_type or "Exception"):
        return None
    return Hit(pat, _snippet(_norm(final.text)), "exception", final.log_line, 3, final.exception_type,
               {"operation": found.operation.name})


def _message_hits(pat: Pattern, rx, found: _Candidates) -> List[Hit]:
    hits = []
    for tb, link, weight in found.exceptions:
        text = _norm(link.text)
        m = rx.search(text)
        if not m and "\n" in link.message:
            m = _tolerant(rx).search(_joined(link))  # lines wrapped in the middle of a word
        if not m or (pat.frames and not re.search(pat.frames, _frames_text(tb))):
            continue
        if pat.wrapper and weight == 4:
            weight = 3  # a catch-all on top of the chain explains no more than a known error beneath it
        hits.append(Hit(pat, _snippet(text), "exception", link.log_line, weight, link.exception_type,
                        _groups(m)))
    return hits


_TOLERANT: Dict[str, Any] = {}


def _tolerant(rx):
    """The pattern with each space optional, for text whose wrapped lines were joined without one."""
    if rx.pattern not in _TOLERANT:
        try:
            _TOLERANT[rx.pattern] = re.compile(re.sub(r"(?<!\\) ", " ?", rx.pattern))
        except re.error:
            _TOLERANT[rx.pattern] = rx
    return _TOLERANT[rx.pattern]


def _joined(link: ExceptionRecord) -> str:
    body = "".join(line.strip() for line in link.message.splitlines())
    return f"{link.exception_type}: {body}" if link.exception_type else body


def _line_hit(pat: Pattern, rx, found: _Candidates, weight: int = 1) -> Optional[Hit]:
    located = found.log_text.search(rx)
    if not located:
        return None
    line_no, text, groups = located
    where = "warning" if line_no in found.warning_lines else "line"
    return Hit(pat, _snippet(text), where, line_no, weight, "", derive_groups(groups))


def _groups(m) -> Dict[str, str]:
    return derive_groups({k: v for k, v in m.groupdict().items() if v})


def match_signatures(parsed: ParsedLog, signatures: Sequence[Signature] = SIGNATURES) -> List[SignatureMatch]:
    """Every signature with at least one pattern found in the log, with its hits (strongest first)."""
    found = _Candidates(parsed)
    analysed = bool(found.reports or found.log_report or found.shapes or found.log_shape)
    compiled: Dict[str, Any] = {}
    matches: List[SignatureMatch] = []
    for sig in signatures:
        hits: List[Hit] = []
        for pat in sig.patterns:
            if pat.analysis:
                hits.extend(_analysis_hits(pat, found))
                continue
            if pat.operation:
                hit = _operation_hit(pat, found)
                hits.extend([hit] if hit else [])
                continue
            if analysed and any(p.analysis for p in sig.patterns):
                continue  # the key sets were analysed: their wording decides nothing more
            rx = compiled.setdefault(pat.regex, re.compile(pat.regex))
            before = len(hits)
            if pat.scope in ("exception", "any"):
                hits.extend(_message_hits(pat, rx, found))
            if pat.scope == "line" or (pat.scope == "any" and len(hits) == before):
                hit = _line_hit(pat, rx, found)
                hits.extend([hit] if hit else [])
            elif pat.scope == "exception" and len(hits) == before and not parsed.has_traceback:
                # No traceback: an application's own error line or a pasted popup carries the message.
                hit = _line_hit(pat, rx, found, weight=3)
                hits.extend([hit] if hit else [])
        if hits:
            # Keep the strongest hits first, at most five per signature.
            hits.sort(key=lambda h: (-h.weight, h.log_line or 0))
            matches.append(SignatureMatch(sig, hits[:5]))
    return _without_generic_when_specific(matches)


def _without_generic_when_specific(matches: List[SignatureMatch]) -> List[SignatureMatch]:
    """An operation explains a failure only when no wording or key analysis explains it better."""
    def generic(hit: Hit) -> bool:
        return hit.pattern.generic

    specific = any(h.weight >= 3 and not generic(h) for m in matches for h in m.hits if h.where == "exception")
    if not specific:
        return matches
    kept = []
    for match in matches:
        hits = [h for h in match.hits if not generic(h)]
        if hits:
            kept.append(SignatureMatch(match.signature, hits))
    return kept


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


