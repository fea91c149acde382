"""What explaining a log produces: the hits of a signature in the log, the answers of the checks to
its questions, its causes ranked, and the match that holds them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from .signatures import Cause, Need, Pattern, Signature

STATUS_RANK = {"confirmed": 4, "likely": 3, "unverified": 2, "refuted": 1}
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def fill_placeholders(text: str, groups: Dict[str, str]) -> str:
    """`{name}` replaced by the group of that name; other braces stay as written."""
    return _PLACEHOLDER.sub(lambda m: groups.get(m.group(1), m.group(0)), text)


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
    key_report: Optional[Any] = None  # the state-dict analyser's report, for analysis hits
    verdict: Optional[Any] = None  # the analyser's verdict this hit stands for

    def to_dict(self) -> Dict[str, Any]:
        return {
            "variant": self.pattern.label,
            "where": self.where,
            "log_line": self.log_line,
            "exception_type": self.exception_type,
            "text": self.text,
            "groups": dict(self.groups),
            "wording_note": self.wording_note,
            "keys": self.key_report.to_dict() if self.key_report is not None else None,
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
        verdict = next((h.verdict for h in self.hits if h.verdict is not None and h.verdict.fix), None)
        if top is not None and top.status in ("confirmed", "likely"):
            text = top.cause.fix
        elif verdict is not None:
            text = f"{verdict.fix[:1].upper()}{verdict.fix[1:]}. {self.signature.fix}"
        else:
            text = self.signature.fix
        return fill_placeholders(text, self.groups)

    @property
    def groups(self) -> Dict[str, str]:
        """Named groups of the hits (the strongest first wins): they fill `{name}` in a fix."""
        merged: Dict[str, str] = {}
        for hit in reversed(self.hits):
            merged.update(hit.groups)
        return merged

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


