"""Report sections that summarise: the per-area status (the `flutter doctor`-style table and the
Current Status section), the headline, Remaining Issues and Files Involved."""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence, Tuple

from ..findings import Finding, Status, worst
from ..registry import AREA_TITLES
from ..util import fmt_bytes
from .actions import Action
from .fixes import user_text

# How a skipped area reads when the reason is a missing option (one line instead of N skips).
_SKIP_BECAUSE = {
    "ckpt": ("checkpoint", "no --checkpoint given"),
    "config": ("config", "no --config given"),
    "model": ("model", "no --config given"),
}
_PROBLEMS = (Status.FAIL, Status.ERROR, Status.WARN)


@dataclass
class AreaStatus:
    area: str
    title: str
    status: Status
    line: str  # one line: what the area says overall
    passed: int
    checked: int
    problems: List[Finding] = field(default_factory=list)
    skipped: int = 0
    skipped_line: str = ""  # "8 checkpoint checks not run: no --checkpoint given"

    def to_dict(self) -> Dict[str, Any]:
        return {"area": self.area, "title": self.title, "status": self.status.value, "line": self.line,
                "passed": self.passed, "checked": self.checked, "skipped": self.skipped,
                "skipped_line": self.skipped_line, "problems": [f.code for f in self.problems]}


def first_clause(text: str, limit: int = 110) -> str:
    """The start of a summary for a one-line table cell: up to the first ': ' or '. ', at most `limit`."""
    text = user_text(text).strip()
    for mark in (". ", ": "):
        cut = text.find(mark)
        if 20 <= cut < limit:
            return text[:cut]
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def _skip_reason(area: str, skips: Sequence[Finding], options) -> str:
    option_missing = _SKIP_BECAUSE.get(area)
    if option_missing:
        what, reason = option_missing
        if not getattr(options, "checkpoint" if what == "checkpoint" else "config", None):
            return reason
    common, _ = Counter(first_clause(f.summary, 90).rstrip(".") for f in skips).most_common(1)[0]
    return common


def area_statuses(findings: Sequence[Finding], options) -> List[AreaStatus]:
    areas: "OrderedDict[str, List[Finding]]" = OrderedDict()
    for f in findings:
        areas.setdefault(f.code.split(".", 1)[0], []).append(f)
    rows = []
    for area, members in areas.items():
        title = AREA_TITLES.get(area, area)
        skips = [f for f in members if f.status is Status.SKIP]
        checked = [f for f in members if f.status is not Status.SKIP]
        passed = sum(1 for f in checked if f.status in (Status.OK, Status.INFO))
        problems = sorted((f for f in checked if f.status in _PROBLEMS), key=lambda f: -f.status.severity)
        status = worst(f.status for f in members)
        skipped_line = ""
        if skips:
            noun = "check" if len(skips) == 1 else "checks"
            skipped_line = f"{len(skips)} {title} {noun} not run: {_skip_reason(area, skips, options)}"
        if not checked:
            line = f"not checked: {_skip_reason(area, skips, options)}"
        elif problems:
            line = f"{len(problems)} of {len(checked)} with problems: {first_clause(problems[0].summary, 90)}"
        else:
            line = f"{passed} of {len(checked)} passed"
        rows.append(AreaStatus(area, title, status, line, passed, len(checked), problems, len(skips), skipped_line))
    return rows


def headline(actions: Sequence[Action], findings: Sequence[Finding]) -> str:
    """The Issue line: how many causes (not findings), and the first one."""
    blocking = [a for a in actions if a.blocking]
    failing = sum(1 for f in findings if f.blocking)
    if blocking:
        noun = "cause" if len(blocking) == 1 else "causes"
        checks = f" ({failing} failing check{'s' if failing != 1 else ''})" if failing > len(blocking) else ""
        return f"{len(blocking)} blocking {noun}{checks}; first: {blocking[0].title}"
    warnings = [a for a in actions if not a.blocking]
    if warnings:
        return f"Nothing blocking; {len(warnings)} thing{'s' if len(warnings) != 1 else ''} to review."
    return "No problem found: the deployment checks pass."


def remaining_issues(findings: Sequence[Finding]) -> List[Finding]:
    """Every unresolved blocking failure, then errors and warnings."""
    blocking = [f for f in findings if f.blocking]
    rest = [f for f in findings if not f.blocking and f.status in _PROBLEMS]
    return blocking + sorted(rest, key=lambda f: -f.status.severity)


def action_index(actions: Sequence[Action]) -> Dict[str, int]:
    """finding code -> number of the action that resolves it (1-based)."""
    return {code: number for number, a in enumerate(actions, 1) for code in a.codes}


# ---------------------------------------------------------------------------------------------
# Files Involved: the user's files, and what was found in each


def _checkpoint_found(ckpt: Dict[str, Any]) -> str:
    if not ckpt or not ckpt.get("analysed"):
        return "could not be analysed (see the checkpoint checks)" if ckpt else "not analysed"
    family = " ".join(str(x) for x in (ckpt.get("family"), ckpt.get("variant")) if x and x != "unknown")
    te = ckpt.get("text_encoder") or {}
    clip = "with its text encoder" if te.get("present") else "without a text encoder"
    return f"{ckpt.get('format')}, {fmt_bytes(ckpt.get('size_bytes'))}, {family or 'unknown model'}, {clip}"


def _config_found(facts: Dict[str, Any]) -> str:
    config = facts.get("ldm_config") or {}
    if config and not config.get("loaded"):
        return "could not be read (see config.load)"
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    target = str(((data or {}).get("model") or {}).get("target") or "").rsplit(".", 1)[-1]
    needed = [m.get("ref") for m in ((facts.get("needed_models") or {}).get("models") or []) if m.get("ref")]
    parts = [p for p in (target and f"builds {target}", needed and "needs " + ", ".join(needed)) if p]
    return "; ".join(parts) or "read"


def _cache_found(facts: Dict[str, Any], findings: Sequence[Finding]) -> List[Tuple[str, str, str]]:
    locations = (facts.get("cache") or {}).get("locations") or {}
    seen, rows = set(), []
    missing = [f for f in findings if f.code == "cache.model-missing" and f.status is not Status.OK]
    for name in ("transformers", "hub"):
        loc = locations.get(name) or {}
        path = loc.get("path")
        if not path or path in seen:
            continue
        seen.add(path)
        what = f"{'; '.join(str(f.evidence.get('model')) + ' not complete here' for f in missing)}" if missing else \
            "the needed files are here"
        rows.append((str(path), "Hugging Face cache", f"{what} (chosen by {loc.get('decided_by', 'default')})"))
    return rows


def files_involved(options, facts: Dict[str, Any], findings: Sequence[Finding],
                   remedy_files: Sequence[Tuple[str, str]] = ()) -> List[Tuple[str, str, str]]:
    """(path, role, what was found there) for the user's files: never the report itself."""
    rows: List[Tuple[str, str, str]] = []
    if options.checkpoint:
        rows.append((str(options.checkpoint), "checkpoint", _checkpoint_found(facts.get("checkpoint") or {})))
    if options.config:
        rows.append((str(options.config), "LDM config", _config_found(facts)))
    ldm = facts.get("ldm") or {}
    if options.code_root:
        rows.append((str(options.code_root), "code root",
                     "holds the ldm package" if ldm.get("found") else "no ldm package found"))
    if ldm.get("found") and ldm.get("path") and ldm.get("path") != options.code_root:
        rows.append((str(ldm["path"]), "ldm package", f"imported from {ldm.get('source') or 'sys.path'}"))
    rows.extend(_cache_found(facts, findings))
    if options.error_log:
        problem = facts.get("original_problem") or {}
        first = str(problem.get("error_message") or "").strip().splitlines()[:1]
        rows.append((str(options.error_log), "error log", first[0] if first else "no traceback found"))
    rows.extend((path, role, "written by the remedy") for path, role in remedy_files)
    return rows
