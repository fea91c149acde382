"""The explanation of one log: the failure it ends with, where it happened, the matched signatures
confirmed and ranked, as findings and as JSON; and `explain_text`, which builds it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..findings import SCHEMA, Finding, Status
from . import window
from .confirmation import CheckResults, confirm, installed_versions_or_none, wording_note
from .matching import match_signatures, rank
from .records import Frame, ParsedLog, Traceback
from ..redact import redact
from .qualnames import resolve_qualname
from .results import SignatureMatch
from .signatures import KNOWN_LOCATIONS, SIGNATURES, Signature
from .traceback import parse_log

# Finding codes of this area (catalogued in docs/finding-codes-explain.md).
CODE_TRACEBACK = "explain.traceback"
CODE_NO_TRACEBACK = "explain.no-traceback"
CODE_SIGNATURE = "explain.signature"
CODE_UNMATCHED = "explain.unmatched"

MAX_LOG_BYTES = 20 * 1024 * 1024  # a larger log is read from its end, where the failure is
MAX_MESSAGE_CHARS = 4000  # of the final message, in original_problem (the evidence keeps it readable)


# --- reading ----------------------------------------------------------------------------------------


def read_log(path: str) -> str:
    """The text of a log file; raises OSError when it cannot be read (the command's exit 2).

    UTF-16 (PowerShell's `>` redirect) is recognised by its BOM; undecodable bytes are replaced.
    A log larger than MAX_LOG_BYTES is read from its end, where the failure is."""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        start = max(0, size - MAX_LOG_BYTES)
        fh.seek(start)
        data = fh.read()
    return decode_log(data, truncated=start > 0)


def decode_log(data: bytes, truncated: bool = False) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = data.decode("utf-16", errors="replace")
    else:
        text = data.decode("utf-8-sig" if data.startswith(b"\xef\xbb\xbf") else "utf-8", errors="replace")
    if truncated:
        text = text.split("\n", 1)[-1]  # drop the partial first line
    return text


# --- the explanation -----------------------------------------------------------------------------


def _frame_dict(frame: Optional[Frame]) -> Optional[Dict[str, Any]]:
    if frame is None:
        return None
    return {
        "file": frame.file,
        "qualname": frame.display_name,
        "function": frame.function,
        "line": frame.line,
        "code": frame.code,
        "qualname_source": frame.qualname_source,
    }


@dataclass
class Explanation:
    parsed: ParsedLog
    matches: List[SignatureMatch]
    source: str = ""  # where the log came from (a path, "stdin", "text")
    confirmed_run: bool = True
    check_module_errors: List[str] = field(default_factory=list)

    @property
    def primary(self) -> Optional[Traceback]:
        return self.parsed.primary

    @property
    def original_problem(self) -> Optional[Dict[str, Any]]:
        """The failure the log ends with and where it happened (None when the log has no error)."""
        tb = self.primary
        if tb is None:
            return None
        final = tb.final
        user = tb.innermost("user")
        library = tb.innermost("library")
        where = user or (final.frames[-1] if final.frames else None)
        message = final.message if len(final.message) <= MAX_MESSAGE_CHARS else (
            final.message[:MAX_MESSAGE_CHARS] + " [...]")  # a 40 KB key list is analysed, not quoted
        error_message = f"{final.exception_type}: {message}" if message else final.exception_type
        return {
            "error_message": error_message,
            "exception_type": final.exception_type,
            "message": message,
            "file": where.file if where else None,
            "qualname": where.display_name if where else None,
            "function": where.function if where else None,
            "line": where.line if where else None,
            "code": where.code if where else None,
            "qualname_source": where.qualname_source if where else None,
            "library_frame": _frame_dict(library) if library is not where else None,
            "chain": [l.exception_type for l in tb.links if l.exception_type],
            "log_line": final.log_line,
            "format": tb.fmt,
            "truncated": tb.truncated or final.truncated,
        }

    @property
    def blocking(self) -> bool:
        return any(m.blocking for m in self.matches)

    def root_causes(self) -> List[Dict[str, Any]]:
        """Ranked causes for a Root Cause Analysis section: one dict per matched signature."""
        out = []
        for m in self.matches:
            top = m.top_cause
            out.append({
                "rank": m.rank,
                "signature": m.signature.id,
                "title": m.signature.title,
                "status": m.status,
                "blocking": m.blocking,
                "summary": m.summary(),
                "cause": (top.cause.title if top is not None and top.status in ("confirmed", "likely")
                          else m.signature.cause),
                "explanation": m.signature.cause,
                "confirmed_by": m.statements("confirmed"),
                "not_confirmed": m.statements("refuted"),
                "no_check": m.statements("unavailable"),
                "fix": m.fix,
                "links": list(m.signature.links),
            })
        return out

    def findings(self) -> List[Finding]:
        findings: List[Finding] = []
        problem = self.original_problem
        if self.parsed.has_traceback and problem is not None:
            where = ""
            if problem["file"]:
                where = f" in {problem['qualname']} ({problem['file']}:{problem['line']})"
            first = (problem["message"] or "").strip().splitlines()
            findings.append(Finding(
                CODE_TRACEBACK, Status.INFO, "Error in the log",
                f"{problem['exception_type']}{where}" + (f": {first[0][:300]}" if first else ""),
                evidence={"original_problem": problem, "tracebacks": len(self.parsed.tracebacks),
                          "warnings": len(self.parsed.warnings), "source": self.source},
                blocking=False,
            ))
        else:
            bare = [t.final.text for t in self.parsed.tracebacks if t.fmt == "bare"]
            summary = f"No Python traceback found in the log ({len(self.parsed.lines)} lines read)."
            if bare:
                summary += f" It has an error line: {bare[-1][:300]}"
            findings.append(Finding(
                CODE_NO_TRACEBACK, Status.INFO, "No traceback in the log", summary,
                evidence={"lines": len(self.parsed.lines), "error_lines": bare[-5:],
                          "warnings": len(self.parsed.warnings), "source": self.source,
                          "original_problem": problem},
                fix="Give the full output of the failing command, from 'Traceback (most recent call last):' to "
                    "the error line (with pytest: --tb=long or --tb=native); e.g. `python script.py 2>&1 | tee "
                    "run.log`.",
                blocking=False,
            ))
        for m in self.matches:
            if m.status == "confirmed":
                status = Status.FAIL if m.blocking else Status.WARN
            elif m.status in ("likely", "unverified"):
                status = Status.WARN
            else:
                status = Status.INFO
            d = m.to_dict()
            evidence = {k: d[k] for k in ("signature", "slug", "rank", "status", "hits", "confirmed_by",
                                          "not_confirmed", "undecided", "no_check", "codes")}
            evidence["causes"] = [{"id": c.cause.id, "title": c.cause.title, "status": c.status} for c in m.causes]
            findings.append(Finding(
                CODE_SIGNATURE, status, m.signature.title, m.summary(),
                evidence=evidence, cause=m.signature.cause, fix=m.fix, blocking=m.blocking,
                docs=list(m.signature.links),
            ))
        if problem is not None and not any(h.where == "exception" and h.weight >= 3 for m in self.matches for h in m.hits):
            findings.append(Finding(
                CODE_UNMATCHED, Status.WARN, "Error log explanation",
                f"No known signature matches {problem['exception_type']}"
                + (f" at {problem['file']}:{problem['line']}" if problem["file"] else "") + ".",
                evidence={"error_message": problem["error_message"][:2000],
                          "matched_elsewhere": [m.signature.id for m in self.matches]},
                fix="Run `python -m diagnostics report` for every check; search the exact error line in the "
                    "issue trackers of ldm, transformers and huggingface_hub.",
                blocking=False,
            ))
        return findings

    def to_dict(self) -> Dict[str, Any]:
        return {
            "schema": SCHEMA,
            "source": self.source,
            "has_traceback": self.parsed.has_traceback,
            "original_problem": self.original_problem,
            "matches": [m.to_dict() for m in self.matches],
            "root_causes": self.root_causes(),
            "blocking": self.blocking,
            "confirmation_run": self.confirmed_run,
            "check_module_errors": list(self.check_module_errors),
            "log": self.parsed.to_dict(),
            "findings": [f.to_dict() for f in self.findings()],
        }


def _source_reader(ctx) -> Callable[[str], Optional[Tuple[str, str]]]:
    """Read a frame's .py file: the path itself, else the same file in the user's ldm code here."""
    roots: List[str] = []
    if ctx is not None:
        try:
            from ..probes.code import probe_ldm

            ldm = ctx.fact("ldm", probe_ldm)
            if ldm.get("found") and ldm.get("path"):
                roots.append(str(ldm["path"]))
        except Exception:
            pass

    def read(path: str) -> Optional[Tuple[str, str]]:
        if not path.endswith(".py"):
            return None
        candidates = [(path, "source file")]
        norm = path.replace("\\", "/")
        if "/ldm/" in norm:
            rel = norm.rsplit("/ldm/", 1)[1]
            candidates += [(os.path.join(root, *rel.split("/")), f"ldm code at {root}") for root in roots]
        for candidate, origin in candidates:
            try:
                if os.path.isfile(candidate) and os.path.getsize(candidate) < 4 * 1024 * 1024:
                    with open(candidate, encoding="utf-8", errors="replace") as fh:
                        return fh.read(), origin
            except OSError:
                continue
        return None

    return read


def explain_text(text: str, ctx=None, *, results: Optional[Sequence[Any]] = None, confirm_causes: bool = True,
                 checks: Optional[Sequence[Any]] = None, source: str = "text",
                 signatures: Sequence[Signature] = SIGNATURES) -> Explanation:
    """Parse, match, confirm and rank; never raises on odd log text.

    `ctx`: the Context whose checks confirm the matches (a default one when None). `results`:
    CheckResults already computed (used instead of re-running). `confirm_causes=False` matches only.
    `checks`: use these Check objects instead of the registry (tests)."""
    if ctx is None:
        from ..context import Context

        ctx = Context()
    text, line_numbers = window.select(text)  # a large log: its tail, and error lines before it
    text = redact(text, getattr(ctx, "environ", None))
    parsed = parse_log(text, line_numbers)
    reader = _source_reader(ctx)
    for tb in parsed.tracebacks:
        for link in tb.links:
            for frame in link.frames:
                resolve_qualname(frame, reader, KNOWN_LOCATIONS)
    matches = match_signatures(parsed, signatures)
    source_checks = CheckResults(ctx, results=results, checks=checks, run=confirm_causes)
    installed = installed_versions_or_none(ctx)
    for m in matches:
        for hit in m.hits:
            hit.wording_note = wording_note(hit, installed)
        confirm(m, source_checks, installed)
    matches = rank(matches)
    return Explanation(parsed, matches, source=source, confirmed_run=confirm_causes,
                       check_module_errors=list(source_checks.module_errors))


def explain_file(path: str, ctx=None, **kwargs: Any) -> Explanation:
    """`explain_text` on a file; raises OSError when the file cannot be read."""
    return explain_text(read_log(path), ctx, source=path, **kwargs)



@dataclass(frozen=True)
class ExplainedLog:
    """The `original_problem` fact: `--error-log` explained against this run's context, whose check
    results confirm the causes (each check runs once per context, so nothing runs again). Its JSON
    form is the original problem alone, as the report has always written it; the findings are the
    `explain.traceback` check's."""

    explanation: Explanation

    def to_dict(self) -> Optional[Dict[str, Any]]:
        return self.explanation.original_problem


def explain_error_log(ctx) -> ExplainedLog:
    """The `original_problem` fact; raises OSError when the log cannot be read (a crashed check)."""
    return ExplainedLog(explain_file(ctx.options.error_log, ctx))
