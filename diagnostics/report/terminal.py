"""The terminal summary, in the style of `flutter doctor`: one line per area, hints under problems."""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterable, List

from ..findings import Status, worst
from ..registry import AREA_TITLES, CheckResult
from .fixes import fix_terminal, user_text

UNICODE_MARKS = {"ok": "✓", "info": "✓", "warn": "!", "fail": "✗", "error": "☠", "skip": "-"}
ASCII_MARKS = {"ok": "+", "info": "+", "warn": "!", "fail": "x", "error": "E", "skip": "-"}


def marks_for(stream) -> dict:
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        "✓✗☠".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return ASCII_MARKS
    return UNICODE_MARKS


def render_actions(actions, marks=UNICODE_MARKS) -> List[str]:
    """The ordered action list: one numbered step per cause, with its fix, code indented."""
    if not actions:
        return []
    lines = ["", "What to do, in this order:"]
    for number, action in enumerate(actions, 1):
        tag = "" if action.blocking else " (not blocking)"
        lines.append(f"{number:>2}. {user_text(action.title)}{tag}")
        lines.append(f"    {user_text(action.summary)}")
        lines.extend(fix_terminal(action.steps, "    fix: ", "         "))
        if action.secondary:
            lines.extend(fix_terminal(action.secondary, "    ", "    "))
    return lines


def render_terminal(results: Iterable[CheckResult], marks=UNICODE_MARKS, verbose: bool = False,
                    actions=None) -> List[str]:
    """One line per area, problems under it. With `actions` (the report's ordered action list) the
    fixes are shown once, in that list; without, under each problem."""
    areas: "OrderedDict[str, List]" = OrderedDict()
    for r in results:
        for f in r.findings:
            areas.setdefault(f.code.split(".", 1)[0], []).append(f)
    lines: List[str] = []
    problems = 0
    for area, findings in areas.items():
        status = worst(f.status for f in findings)
        title = AREA_TITLES.get(area, area)
        counted = [f for f in findings if f.status is not Status.SKIP]
        if status is Status.SKIP:
            head = f"{title}: {findings[0].summary}"
        else:
            ok = sum(1 for f in counted if f.status in (Status.OK, Status.INFO))
            head = f"{title} ({ok}/{len(counted)} passed)"
        lines.append(f"[{marks[status.value]}] {head}")
        if status in (Status.WARN, Status.FAIL, Status.ERROR):
            problems += 1
        for f in findings:
            show = f.status in (Status.WARN, Status.FAIL, Status.ERROR) or (verbose and f.status is not Status.SKIP)
            if not show:
                continue
            lines.append(f"    {marks[f.status.value]} {f.code}: {user_text(f.summary)}")
            if f.fix and f.status is not Status.OK and actions is None:
                lines.extend(fix_terminal(f.fix_steps, "      fix: ", "           "))
            if verbose and f.status is Status.ERROR and f.evidence.get("traceback"):
                lines.extend("      " + line for line in f.evidence["traceback"].rstrip().splitlines())
    lines.extend(render_actions(actions or [], marks))
    lines.append("")
    lines.append("No issues found." if problems == 0 else
                 f"Found issues in {problems} area{'s' if problems != 1 else ''}.")
    return lines
