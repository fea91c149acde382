"""The terminal summary, in the style of `flutter doctor`: one line per area, hints under problems."""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterable, List

from ..findings import Status, worst
from ..registry import AREA_TITLES, CheckResult

UNICODE_MARKS = {"ok": "✓", "info": "✓", "warn": "!", "fail": "✗", "error": "☠", "skip": "-"}
ASCII_MARKS = {"ok": "+", "info": "+", "warn": "!", "fail": "x", "error": "E", "skip": "-"}


def marks_for(stream) -> dict:
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        "✓✗☠".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return ASCII_MARKS
    return UNICODE_MARKS


def render_terminal(results: Iterable[CheckResult], marks=UNICODE_MARKS, verbose: bool = False) -> List[str]:
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
            lines.append(f"    {marks[f.status.value]} {f.code}: {f.summary}")
            if f.fix and f.status is not Status.OK:
                first, *rest = f.fix.splitlines()
                lines.append(f"      fix: {first}")
                lines.extend(f"           {line}" for line in rest)  # keep yaml snippets under the fix
            if verbose and f.status is Status.ERROR and f.evidence.get("traceback"):
                lines.extend("      " + line for line in f.evidence["traceback"].rstrip().splitlines())
    lines.append("")
    lines.append("No issues found." if problems == 0 else
                 f"Found issues in {problems} area{'s' if problems != 1 else ''}.")
    return lines
