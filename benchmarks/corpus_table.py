"""Per-family and per-layout table of the public-log corpus: cases, and how many get the right
cause first.

    python benchmarks/corpus_table.py [CASES_JSON]

CASES_JSON (default tests/logs/public/cases.json) lists {"file", "layout", "family",
"expected_codes", ...}; a case is right when the top-ranked explaining match points to one of its
expected codes. Matching only: no check runs, so the table is the same on every machine.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_CASES = ROOT / "tests" / "logs" / "public" / "cases.json"


def top_codes(text: str) -> Tuple[Optional[str], List[str]]:
    """The top explaining signature of `text` and the codes it points to."""
    from diagnostics.knowledge.matching import match_signatures, rank
    from diagnostics.knowledge.traceback import parse_log

    ranked = rank(match_signatures(parse_log(text)))
    explaining = [m for m in ranked if m.weight >= 3] or ranked
    if not explaining:
        return None, []
    return explaining[0].signature.id, list(explaining[0].signature.codes)


def evaluate(cases_path: Path) -> List[Dict[str, Any]]:
    cases = json.loads(cases_path.read_text())
    out = []
    for case in cases:
        text = (cases_path.parent / case["file"]).read_text(encoding="utf-8", errors="replace")
        signature, codes = top_codes(text)
        out.append(dict(case, got_signature=signature, got_codes=codes,
                        right=bool(set(codes) & set(case.get("expected_codes") or []))))
    return out


def table(rows: List[Dict[str, Any]], key: str) -> str:
    counts: Dict[str, List[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        counts[row.get(key) or "?"][0] += 1
        counts[row.get(key) or "?"][1] += int(row["right"])
    lines = [f"| {key} | cases | right first |", "|---|---|---|"]
    for name in sorted(counts):
        total, right = counts[name]
        lines.append(f"| {name} | {total} | {right} |")
    total = sum(c[0] for c in counts.values())
    right = sum(c[1] for c in counts.values())
    lines.append(f"| all | {total} | {right} ({100 * right / max(1, total):.0f}%) |")
    return "\n".join(lines)


def main(argv: List[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else DEFAULT_CASES
    if not path.exists():
        print(f"no corpus at {path}")
        return 2
    rows = evaluate(path)
    print(table(rows, "family"))
    print()
    print(table(rows, "layout"))
    misses = [r for r in rows if not r["right"]]
    if misses:
        print("\nnot right first:")
        for row in misses:
            print(f"- {row['file']}: got {row['got_signature']} {row['got_codes'][:3]}, expected "
                  f"{row.get('expected_codes')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
