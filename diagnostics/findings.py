"""The data model every probe, rule, front-end and report shares.

A `Finding` is one verdict about one thing (a package, the cache, a checkpoint), with the evidence
that proves it and, when something is wrong, the cause and the fix. Findings are plain, frozen data
so that rules are pure functions that tests can call with hand-made facts; a finding that needs one
more line (a hint, a related finding) is copied with `dataclasses.replace`, never changed in place.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional

SCHEMA = "ldm-diagnostics/1"


class Status(str, enum.Enum):
    """How a finding reads. `error` means the check itself crashed, never the harness."""

    OK = "ok"
    INFO = "info"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"
    ERROR = "error"

    @property
    def severity(self) -> int:
        """Order used to pick the worst status of a group (skip < ok < info < warn < error < fail)."""
        return _SEVERITY[self]

    def __str__(self) -> str:  # so f-strings and templates print "fail", not "Status.FAIL"
        return self.value


_SEVERITY = {
    Status.SKIP: 0,
    Status.OK: 1,
    Status.INFO: 2,
    Status.WARN: 3,
    Status.ERROR: 4,
    Status.FAIL: 5,
}


def worst(statuses, default: Status = Status.SKIP) -> Status:
    """The most severe of `statuses`, or `default` when there are none."""
    statuses = list(statuses)
    return max(statuses, key=lambda s: s.severity) if statuses else default


@dataclass(frozen=True)
class Finding:
    code: str
    status: Status
    title: str
    summary: str
    evidence: Dict[str, Any] = field(default_factory=dict)
    cause: str = ""
    fix: str = ""
    blocking: Optional[bool] = None
    docs: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))
        if self.blocking is None:
            # A failing finding blocks the rollout unless its rule says otherwise.
            object.__setattr__(self, "blocking", self.status is Status.FAIL)

    def with_fix_prefix(self, hint: str) -> "Finding":
        """A copy whose fix starts with `hint` (e.g. a no-download step placed before the others)."""
        return replace(self, fix=hint + "\n" + self.fix if self.fix else hint)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "code": self.code,
            "status": self.status.value,
            "title": self.title,
            "summary": self.summary,
            "evidence": self.evidence,
            "cause": self.cause,
            "fix": self.fix,
            "blocking": bool(self.blocking),
            "docs": list(self.docs),
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Finding":
        return cls(
            code=data["code"],
            status=Status(data["status"]),
            title=data.get("title", ""),
            summary=data.get("summary", ""),
            evidence=dict(data.get("evidence") or {}),
            cause=data.get("cause", ""),
            fix=data.get("fix", ""),
            blocking=data.get("blocking"),
            docs=list(data.get("docs") or []),
        )


def verdict(status: Status, summary: str, *, evidence: Optional[Dict[str, Any]] = None, cause: str = "",
            fix: str = "", blocking: Optional[bool] = None, docs=()) -> Finding:
    """A rule's finding without code or title: the registry stamps the check's own on it."""
    return Finding("", status, "", summary, evidence=dict(evidence or {}), cause=cause, fix=fix,
                   blocking=blocking, docs=list(docs))


def ok(code: str, title: str, summary: str, **evidence: Any) -> Finding:
    return Finding(code, Status.OK, title, summary, evidence=evidence)


def skip(code: str, title: str, reason: str, **evidence: Any) -> Finding:
    return Finding(code, Status.SKIP, title, reason, evidence=evidence)
