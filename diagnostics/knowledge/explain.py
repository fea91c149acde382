"""Explain a failure: parse a pasted log, match it against the knowledge base, confirm each match
with the checks behind it on this machine, and rank the causes by what the checks found.

The API the report and the `explain` command use:

    from diagnostics.knowledge.explain import explain_text, explain_file
    explanation = explain_text(log_text, ctx)          # ctx: diagnostics.context.Context
    explanation.original_problem   # {"error_message", "exception_type", "file", "qualname",
                                   #  "function", "line", "code", ...} or None (no error found)
    explanation.matches            # [SignatureMatch], best first: .status is confirmed / likely /
                                   #  unverified / refuted, .causes ranked the same way
    explanation.root_causes()      # the same as plain dicts, for a Root Cause Analysis section
    explanation.findings()         # [Finding]: explain.traceback or explain.no-traceback,
                                   #  one explain.signature per match, explain.unmatched
    explanation.blocking           # a confirmed blocking cause remains (exit 1)
    explanation.to_dict()          # everything, JSON-ready (schema ldm-diagnostics/1)

A match is a hypothesis. Each of its causes names the finding codes that decide it (`Need`); the
checks behind those codes are looked up in the registry *at run time*, so checks added later are
used without touching this module, and a code nobody implements yet is reported as "no check for
X on this installation yet". Results the caller already has (the report runs every check) can be
passed in as `results=` and are used instead of running the check again.

Everything taken from the log is redacted (tokens, passwords, this machine's secret environment
values) and kept as plain text: renderers escape it.
"""

from __future__ import annotations

import bisect
import importlib
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ..findings import SCHEMA, Finding, Status
from ..redact import redact
from .signatures import KNOWN_LOCATIONS, SIGNATURES, Cause, Need, Pattern, Signature
from .traceback import ExceptionRecord, Frame, ParsedLog, Traceback, parse_log, resolve_qualname

# Finding codes of this area (catalogued in docs/finding-codes-explain.md).
CODE_TRACEBACK = "explain.traceback"
CODE_NO_TRACEBACK = "explain.no-traceback"
CODE_SIGNATURE = "explain.signature"
CODE_UNMATCHED = "explain.unmatched"

MAX_LOG_BYTES = 20 * 1024 * 1024  # a larger log is read from its end, where the failure is
# Areas whose checks may be run as a group to find a code no check is named after. Model checks
# instantiate models and are only run when a check carries the code as its id.
_SCANNABLE_AREAS = ("env", "compat", "cuda", "hub", "cache", "tokenizer", "ckpt", "config")

STATUS_RANK = {"confirmed": 4, "likely": 3, "unverified": 2, "refuted": 1}


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


# --- checks: looked up by finding code at run time -----------------------------------------------


class CheckSource:
    """Answers "what does the check behind code X say on this machine?".

    Checks are found through `diagnostics.registry.CHECK_MODULES` when first asked, each runs at
    most once, and a module that fails to import is recorded rather than raised. Tests pass
    `checks=` (a list of `Check`) to use hand-made checks."""

    def __init__(self, ctx, results: Optional[Sequence[Any]] = None, checks: Optional[Sequence[Any]] = None,
                 run: bool = True) -> None:
        self.ctx = ctx
        self.run = run
        self._given = list(checks) if checks is not None else None
        self._checks: Optional[List[Any]] = None
        self.module_errors: List[str] = []
        self._ran: Dict[str, List[Finding]] = {}
        for result in results or ():
            self._ran[result.check.id] = list(result.findings)

    @property
    def checks(self) -> List[Any]:
        if self._checks is None:
            if self._given is not None:
                self._checks = list(self._given)
            else:
                self._checks = self._load()
        return self._checks

    def _load(self) -> List[Any]:
        from .. import registry

        checks: List[Any] = []
        for name in registry.CHECK_MODULES:
            try:
                checks.extend(getattr(importlib.import_module(name), "CHECKS", ()))
            except Exception as exc:  # one broken area must not hide the others
                self.module_errors.append(f"{name}: {type(exc).__name__}: {exc}")
        return checks

    def _run(self, check) -> List[Finding]:
        if check.id not in self._ran:
            from ..registry import run_check

            self._ran[check.id] = list(run_check(check, self.ctx).findings)
        return self._ran[check.id]

    def lookup(self, code: str) -> Tuple[str, List[Finding], str]:
        """(state, findings, check id): state is `found`, `not-run` (running disabled) or `unavailable`."""
        for check_id, findings in self._ran.items():
            hits = [f for f in findings if f.code == code]
            if hits:
                return "found", hits, check_id
        if not self.run:
            return "not-run", [], ""
        by_id = {c.id: c for c in self.checks}
        if code in by_id:
            findings = self._run(by_id[code])
            hits = [f for f in findings if f.code == code] or findings
            return "found", hits, code
        area = code.split(".", 1)[0]
        if area in _SCANNABLE_AREAS:
            for check in self.checks:
                if check.area == area:
                    hits = [f for f in self._run(check) if f.code == code]
                    if hits:
                        return "found", hits, check.id
        return "unavailable", [], ""


# --- versions ---------------------------------------------------------------------------------------


def _installed_versions(ctx) -> Dict[str, Optional[str]]:
    from ..probes.environment import probe_environment

    env = ctx.fact("environment", probe_environment)
    versions = dict(env.get("packages") or {})
    versions["python"] = (env.get("python") or {}).get("version")
    return versions


def _spec_ok(version: Optional[str], spec: str) -> Optional[bool]:
    if spec == "absent":
        return version is None
    if spec == "present":
        return version is not None
    if version is None:
        return False
    try:
        from packaging.specifiers import SpecifierSet
        from packaging.version import Version

        release = Version(version).base_version  # 2.6.0+cu124 -> 2.6.0
        return SpecifierSet(spec).contains(Version(release), prereleases=True)
    except Exception:  # unparsable version or spec, or no usable `packaging`: undecided
        return None


def _describe_spec(pkg: str, spec: str) -> str:
    if spec == "present":
        return f"{pkg} installed"
    if spec == "absent":
        return f"{pkg} not installed"
    return f"{pkg} {spec}"


def _describe(alternative: Mapping[str, str]) -> str:
    return ", ".join(_describe_spec(pkg, spec) for pkg, spec in alternative.items())


def _have(packages: Iterable[str], installed: Mapping[str, Optional[str]]) -> str:
    return ", ".join(f"{p} {installed[p]}" if installed.get(p) else f"{p} not installed" for p in packages)


def evaluate_versions(alternatives: Sequence[Mapping[str, str]], installed: Mapping[str, Optional[str]]
                      ) -> Tuple[Optional[bool], str]:
    """Whether the installed versions fall in any alternative; and a sentence that says so."""
    unknown = False
    for alt in alternatives:
        results = [_spec_ok(installed.get(pkg), spec) for pkg, spec in alt.items()]
        if all(r is True for r in results):
            return True, f"here: {_have(alt, installed)} (affected: {_describe(alt)})"
        if any(r is None for r in results):
            unknown = True
    packages: List[str] = []
    for alt in alternatives:
        for pkg in alt:
            if pkg not in packages:
                packages.append(pkg)
    wanted = " or ".join(_describe(a) for a in alternatives)
    if unknown:
        return None, f"here: {_have(packages, installed)}; could not compare with {wanted}"
    return False, f"here: {_have(packages, installed)} (affected only: {wanted})"


# --- results ----------------------------------------------------------------------------------------


@dataclass
class NeedResult:
    need: Need
    outcome: str  # confirmed | refuted | open | noted (background, decides nothing) | unavailable
    by: str = ""  # the finding code, or "installed versions"
    status: str = ""  # the finding's status
    summary: str = ""
    evidence: Dict[str, Any] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)  # codes that had no check, etc.

    @property
    def statement(self) -> str:
        if self.outcome == "confirmed":
            return f"confirmed by {self.by}: {self.summary}"
        if self.outcome == "refuted":
            return f"not confirmed here: {self.by}: {self.summary}"
        if self.outcome == "open":
            return f"not decided by {self.by} ({self.status}): {self.summary}"
        if self.outcome == "noted":
            return f"{self.by} ({self.status}): {self.summary}"
        codes = ", ".join(self.need.codes) or "this"
        return f"no check for {codes} on this installation yet"

    def to_dict(self) -> Dict[str, Any]:
        return {
            "question": self.need.says,
            "codes": list(self.need.codes),
            "required": self.need.required,
            "outcome": self.outcome,
            "by": self.by,
            "status": self.status,
            "summary": self.summary,
            "statement": self.statement,
            "evidence": self.evidence,
            "notes": list(self.notes),
        }


@dataclass
class CauseResult:
    cause: Cause
    status: str
    needs: List[NeedResult]
    order: int = 0

    @property
    def confirmed_count(self) -> int:
        return sum(1 for n in self.needs if n.outcome == "confirmed")

    def to_dict(self) -> Dict[str, Any]:
        return {
            "id": self.cause.id,
            "title": self.cause.title,
            "status": self.status,
            "fix": self.cause.fix,
            "checks": [n.to_dict() for n in self.needs],
        }


@dataclass
class Hit:
    pattern: Pattern
    text: str  # the matched exception line or log line (redacted, capped)
    where: str  # exception | line | warning
    log_line: Optional[int]
    weight: int
    exception_type: str = ""
    groups: Dict[str, str] = field(default_factory=dict)
    wording_note: str = ""

    def to_dict(self) -> Dict[str, Any]:
        return {
            "variant": self.pattern.label,
            "where": self.where,
            "log_line": self.log_line,
            "exception_type": self.exception_type,
            "text": self.text,
            "groups": dict(self.groups),
            "wording_note": self.wording_note,
        }


@dataclass
class SignatureMatch:
    signature: Signature
    hits: List[Hit]
    status: str = "unverified"
    causes: List[CauseResult] = field(default_factory=list)
    reproduce: List[NeedResult] = field(default_factory=list)
    context: List[NeedResult] = field(default_factory=list)
    rank: int = 0

    @property
    def weight(self) -> int:
        return max(h.weight for h in self.hits)

    @property
    def blocking(self) -> bool:
        """Confirmed here, by a signature that blocks, through a wording that blocks."""
        return (self.status == "confirmed" and self.signature.blocking
                and any(h.pattern.blocking for h in self.hits))

    def all_needs(self) -> List[NeedResult]:
        seen: List[NeedResult] = []
        for n in self.reproduce + [n for c in self.causes for n in c.needs]:
            if all(n is not s for s in seen):
                seen.append(n)
        return seen

    def statements(self, outcome: str) -> List[str]:
        out: List[str] = []
        for n in self.all_needs():
            if n.outcome == outcome and n.statement not in out:
                out.append(n.statement)
        return out

    @property
    def top_cause(self) -> Optional[CauseResult]:
        return self.causes[0] if self.causes else None

    @property
    def fix(self) -> str:
        top = self.top_cause
        if top is not None and top.status in ("confirmed", "likely"):
            return top.cause.fix
        return self.signature.fix

    def summary(self) -> str:
        sig = self.signature
        top = self.top_cause
        reproduced = [n for n in self.reproduce if n.outcome == "confirmed"]
        if self.status == "confirmed":
            if top is not None and top.status == "confirmed":
                why = "; ".join(n.statement.rstrip(".") for n in top.needs if n.outcome == "confirmed")
                return f"{sig.title}: confirmed here, cause: {top.cause.title} ({why})."
            why = "; ".join(n.statement.rstrip(".") for n in reproduced)
            open_causes = sum(1 for c in self.causes if c.status != "refuted")
            return (f"{sig.title}: the failure reproduces here ({why}); its cause is not determined yet "
                    f"({open_causes} possible cause(s) not decided by the checks available).")
        if self.status == "likely" and top is not None:
            why = "; ".join(n.statement.rstrip(".") for n in top.needs if n.outcome == "confirmed")
            return f"{sig.title}: likely cause {top.cause.title} ({why}); the other checks could not decide."
        if self.status == "refuted":
            why = "; ".join(f"{n.by}: {n.summary.rstrip('.')}" for n in self.all_needs() if n.outcome == "refuted")
            return f"{sig.title}: matches the log, but not confirmed here ({why})."
        missing = self.statements("unavailable") + self.statements("open")
        why = "; ".join(missing[:3]) or "this signature has no checks"
        return f"{sig.title}: matches the log; not confirmed here ({why})."

    def to_dict(self) -> Dict[str, Any]:
        sig = self.signature
        return {
            "signature": sig.id,
            "slug": sig.slug,
            "title": sig.title,
            "rank": self.rank,
            "status": self.status,
            "blocking": self.blocking,
            "summary": self.summary(),
            "codes": sig.codes,
            "hits": [h.to_dict() for h in self.hits],
            "reproduce": [n.to_dict() for n in self.reproduce],
            "causes": [c.to_dict() for c in self.causes],
            "context": [n.to_dict() for n in self.context],
            "confirmed_by": self.statements("confirmed"),
            "not_confirmed": self.statements("refuted"),
            "undecided": self.statements("open"),
            "no_check": self.statements("unavailable"),
            "background": [n.statement for n in self.context if n.outcome != "unavailable"],
            "cause": sig.cause,
            "fix": self.fix,
            "links": list(sig.links),
        }


# --- matching ---------------------------------------------------------------------------------------

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


# --- confirmation -----------------------------------------------------------------------------------


def evaluate_need(need: Need, source: CheckSource, installed: Optional[Mapping[str, Optional[str]]]) -> NeedResult:
    """Answer one question from the checks behind its codes, then from installed versions."""
    answered: List[NeedResult] = []
    notes: List[str] = []
    for code in need.codes:
        state, findings, _check_id = source.lookup(code)
        if state == "unavailable":
            notes.append(f"no check for {code} on this installation yet")
            continue
        if state == "not-run":
            notes.append(f"{code} was not run (confirmation disabled)")
            continue
        for f in findings:
            status = f.status.value
            value = f.evidence.get(need.evidence_key) if need.evidence_key else None
            if need.evidence_key and value is not None and value in need.evidence_confirms:
                outcome = "confirmed"
            elif need.evidence_key and value is not None and value in need.evidence_refutes:
                outcome = "refuted"
            elif not need.confirms and not need.refutes:
                outcome = "noted"
            elif status in need.confirms:
                outcome = "confirmed"
            elif status in need.refutes:
                outcome = "refuted"
            else:
                outcome = "open"
            answered.append(NeedResult(need, outcome, f.code, status, f.summary, dict(f.evidence)))
    result: Optional[NeedResult] = None
    for outcome in ("confirmed", "refuted", "open", "noted"):
        picked = [r for r in answered if r.outcome == outcome]
        if outcome == "refuted" and picked and len(answered) < len(need.codes) and not need.versions:
            # Some codes refute, others have no check: e.g. DNS works, but connecting was not tried.
            result = NeedResult(need, "open", picked[0].by, picked[0].status,
                                picked[0].summary + " (the other checks for this are not available)",
                                picked[0].evidence)
            break
        if picked:
            result = picked[0]
            break
    if (result is None or result.outcome == "open") and need.versions and installed is not None:
        verdict, sentence = evaluate_versions(need.versions, installed)
        if verdict is not None:
            result = NeedResult(need, "confirmed" if verdict else "refuted", "installed versions",
                                "", sentence, {"versions": {p: installed.get(p) for a in need.versions for p in a}})
    if result is None:
        result = NeedResult(need, "unavailable")
    result.notes = notes
    return result


def _cause_status(needs: Sequence[NeedResult]) -> str:
    required = [n for n in needs if n.need.required]
    if any(n.outcome == "refuted" for n in required):
        return "refuted"
    if required and all(n.outcome == "confirmed" for n in required):
        return "confirmed"
    if any(n.outcome == "confirmed" for n in required):
        return "likely"
    return "unverified"


def confirm(match: SignatureMatch, source: CheckSource, installed: Optional[Mapping[str, Optional[str]]]) -> None:
    """Fill `match` with what the checks say: reproduce, causes (ranked), status."""
    cache: Dict[int, NeedResult] = {}

    def answer(need: Need) -> NeedResult:
        key = id(need)
        if key not in cache:
            cache[key] = evaluate_need(need, source, installed)
        return cache[key]

    sig = match.signature
    match.reproduce = [answer(n) for n in sig.reproduce]
    match.context = [answer(Need(f"background: {code}", (code,), confirms=(), refutes=())) for code in sig.context]
    causes = []
    for order, cause in enumerate(sig.causes):
        needs = [answer(n) for n in cause.needs]
        causes.append(CauseResult(cause, _cause_status(needs), needs, order))
    causes.sort(key=lambda c: (-STATUS_RANK[c.status], -c.confirmed_count, c.order))
    match.causes = causes
    repro_yes = any(n.outcome == "confirmed" for n in match.reproduce)
    repro_no = any(n.outcome == "refuted" for n in match.reproduce)
    statuses = [c.status for c in causes]
    if repro_no and not repro_yes:
        match.status = "refuted"
    elif repro_yes or "confirmed" in statuses:
        match.status = "confirmed"
    elif "likely" in statuses:
        match.status = "likely"
    elif statuses and all(s == "refuted" for s in statuses):
        match.status = "refuted"
    else:
        match.status = "unverified"


def _wording_note(hit: Hit, installed: Optional[Mapping[str, Optional[str]]]) -> str:
    if not hit.pattern.versions or installed is None:
        return ""
    verdict, sentence = evaluate_versions(hit.pattern.versions, installed)
    if verdict is False:
        packages: List[str] = []
        for alt in hit.pattern.versions:
            packages += [p for p in alt if p not in packages]
        return (f"This wording is printed with {' or '.join(_describe(a) for a in hit.pattern.versions)}; "
                f"installed here: {_have(packages, installed)}. The log may come from another environment, "
                "or the packages changed since.")
    return ""


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
        message = final.message
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
                CODE_SIGNATURE, status, f"{m.signature.id} {m.signature.title}", m.summary(),
                evidence=evidence, cause=m.signature.cause, fix=m.fix, blocking=m.blocking,
                docs=list(m.signature.links),
            ))
        if problem is not None and not any(h.where == "exception" and h.weight >= 3 for m in self.matches for h in m.hits):
            findings.append(Finding(
                CODE_UNMATCHED, Status.WARN, "Error not in the knowledge base",
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
    text = redact(text, getattr(ctx, "environ", None))
    parsed = parse_log(text)
    reader = _source_reader(ctx)
    for tb in parsed.tracebacks:
        for link in tb.links:
            for frame in link.frames:
                resolve_qualname(frame, reader, KNOWN_LOCATIONS)
    matches = match_signatures(parsed, signatures)
    source_checks = CheckSource(ctx, results=results, checks=checks, run=confirm_causes)
    try:
        installed: Optional[Dict[str, Optional[str]]] = _installed_versions(ctx)
    except Exception:
        installed = None
    for m in matches:
        for hit in m.hits:
            hit.wording_note = _wording_note(hit, installed)
        confirm(m, source_checks, installed)
    matches = rank(matches)
    return Explanation(parsed, matches, source=source, confirmed_run=confirm_causes,
                       check_module_errors=list(source_checks.module_errors))


def explain_file(path: str, ctx=None, **kwargs: Any) -> Explanation:
    """`explain_text` on a file; raises OSError when the file cannot be read."""
    return explain_text(read_log(path), ctx, source=path, **kwargs)
