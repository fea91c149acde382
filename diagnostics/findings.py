"""The data model every probe, rule, front-end and report shares.

A `Finding` is one verdict about one thing (a package, the cache, a checkpoint), with the evidence
that proves it and, when something is wrong, the cause and the fix. Findings are plain, frozen data
so that rules are pure functions that tests can call with hand-made facts; a finding that needs one
more line (a hint, a related finding) is copied with `dataclasses.replace`, never changed in place.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Tuple

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

    @property
    def fix_steps(self) -> List["FixStep"]:
        """The fix as steps (prose plus optional code), parsed from the text the rule wrote."""
        return parse_fix(self.fix)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "code": self.code,
            "status": self.status.value,
            "title": self.title,
            "summary": self.summary,
            "evidence": self.evidence,
            "cause": self.cause,
            "fix": self.fix,  # the text as the rule wrote it; `fix_steps` is the same, structured
            "fix_steps": [step.to_dict() for step in self.fix_steps],
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


# ---------------------------------------------------------------------------------------------
# Fixes as structure. Rules write a fix as text: prose, numbered steps ("1. ...", "2. ..."), and
# code either in ``` fences (```yaml) or as lines indented under the prose line that introduces
# them. `parse_fix` is the one reader of that text; each report format renders the steps its way.


@dataclass(frozen=True)
class FixStep:
    """One thing to do: prose (may hold `inline code`) plus an optional block of code."""

    text: str
    code: Optional[str] = None
    lang: Optional[str] = None  # "shell", "yaml", "python", ... or None when unknown
    number: Optional[int] = None  # the rule's own step number ("2. start with ..."), if any

    def to_dict(self) -> Dict[str, Any]:
        return {"text": self.text, "code": self.code, "lang": self.lang, "number": self.number}


_FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)\s*$")
_YAML_KEY = re.compile(r"^[A-Za-z_][\w.\-]*:(\s|$)")
_NUMBERED = re.compile(r"^(\d{1,2})[.)]\s+(.*)$")
_LANG_ALIASES = {"sh": "shell", "bash": "shell", "console": "shell", "yml": "yaml", "py": "python"}


def guess_lang(code: str) -> str:
    """yaml for `key:` blocks, python for imports/calls with keywords, shell otherwise."""
    lines = [line.strip() for line in code.splitlines() if line.strip()]
    if lines and all(re.match(r"^(- )?[\w.\-\"']+:(\s|$)", line) or line.startswith("#") for line in lines):
        return "yaml"
    if lines and re.match(r"^(import |from \w+ import |\w+(\.\w+)*\()", lines[0]):
        return "python"
    return "shell"


def _dedent(lines: List[str]) -> str:
    widths = [len(line) - len(line.lstrip()) for line in lines if line.strip()]
    cut = min(widths) if widths else 0
    return "\n".join(line[cut:].rstrip() for line in lines).strip("\n")


def _read_fence(lines: List[str], start: int) -> Tuple[str, str, int]:
    """(code, lang, index after the closing fence) for the fence opened at lines[start]."""
    opener = _FENCE.match(lines[start])
    marker, lang = opener.group(1), opener.group(2).lower()
    body: List[str] = []
    index = start + 1
    while index < len(lines):
        closing = _FENCE.match(lines[index])
        if closing and closing.group(1)[0] == marker[0] and len(closing.group(1)) >= len(marker) \
                and not closing.group(2):
            return _dedent(body), _LANG_ALIASES.get(lang, lang), index + 1
        body.append(lines[index])
        index += 1
    return _dedent(body), _LANG_ALIASES.get(lang, lang), index  # unclosed: the rest is code


def parse_fix(text: str) -> List[FixStep]:
    """Steps of a fix text. Never raises; text without structure is one step of prose."""
    lines = (text or "").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    steps: List[FixStep] = []
    prose: List[str] = []
    number: Optional[int] = None
    index = 0

    def close(code: Optional[str] = None, lang: Optional[str] = None) -> None:
        nonlocal prose, number
        if prose or code:
            steps.append(FixStep(" ".join(part.strip() for part in prose if part.strip()), code or None,
                                 (lang or guess_lang(code)) if code else None, number))
        prose, number = [], None

    while index < len(lines):
        line = lines[index]
        if _FENCE.match(line):
            code, lang, index = _read_fence(lines, index)
            close(code, lang)
            continue
        indented = line[:1] in (" ", "\t") and line.strip()
        # A YAML block written flush left right after "... set `key: value`:" is code too.
        yaml_after_colon = bool(prose) and prose[-1].rstrip().endswith(":") and bool(_YAML_KEY.match(line))
        if (indented and (prose or steps)) or yaml_after_colon:
            block = []
            while index < len(lines) and not _FENCE.match(lines[index]) and (
                    lines[index][:1] in (" ", "\t") or not lines[index].strip()
                    or (yaml_after_colon and _YAML_KEY.match(lines[index]))):
                block.append(lines[index])
                index += 1
            close(_dedent(block), "yaml" if yaml_after_colon else None)
            continue
        index += 1
        if not line.strip():
            continue
        numbered = _NUMBERED.match(line.strip())
        if numbered or prose:
            close()
        if numbered:
            number, line = int(numbered.group(1)), numbered.group(2)
        prose.append(line)
    close()
    return [step for step in steps if step.text or step.code]
