"""docs/finding-codes.md, generated from the registry: `python -m diagnostics.catalog > docs/finding-codes.md`.

The registry is the only source of the catalog; a test fails when the committed file differs, so
a new check (or a renamed title) shows up in the docs in the same commit.
"""

from __future__ import annotations

import sys
from typing import Dict, List

from .registry import AREA_TITLES, Check, all_checks, other_codes

INTRO = """\
# Finding codes

Every finding has a stable `code`: extend this list, never rename an entry (scripts match on it).
Codes are `area.name`; the area picks the report section and the pytest marker. Each registered
check is named after the code of its main finding. This file is generated from the check
declarations (`python -m diagnostics.catalog > docs/finding-codes.md`); a test keeps it in step.
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _runs_when(check: Check) -> str:
    conditions = [p.name for p in check.requires] + [f"after `{code}`" for code in check.needs]
    return ", ".join(conditions) or "always"


def render_catalog() -> str:
    by_area: Dict[str, List[Check]] = {}
    for check in all_checks():
        by_area.setdefault(check.area, []).append(check)
    lines = [INTRO]
    for area, checks in by_area.items():
        lines += [f"## {AREA_TITLES.get(area, area)} (`{area}.*`)", "", "| code | check | runs when |", "|---|---|---|"]
        for check in checks:
            lines.append(f"| `{check.code}` | {_cell(check.title)} | {_cell(_runs_when(check))} |")
            for doc in check.emits:
                lines.append(f"| `{doc.code}` | {_cell(doc.title)} | emitted by `{check.code}`: {_cell(doc.meaning)} |")
        lines.append("")
    lines += ["## Codes outside the registered checks", "", "| code | title | meaning |", "|---|---|---|"]
    check_emitted = {doc.code for check in all_checks() for doc in check.emits}
    for doc in other_codes():
        if doc.code not in check_emitted:
            lines.append(f"| `{doc.code}` | {_cell(doc.title)} | {_cell(doc.meaning)} |")
    lines += ["", "The `explain.*` codes and their evidence are described in "
              "[finding-codes-explain.md](finding-codes-explain.md).", ""]
    return "\n".join(lines)


def main() -> int:
    sys.stdout.write(render_catalog())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
