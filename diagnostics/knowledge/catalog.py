"""The knowledge base's table for docs/finding-codes-explain.md.

`python -m diagnostics.knowledge.catalog` prints the "Signatures and the codes behind them"
table; the committed document holds it (a test compares them).
"""

from __future__ import annotations

from typing import List

from .signatures import SIGNATURES

HEADER = ("| id | slug | failure | how it is recognised | finding codes that confirm it | blocks |\n"
          "|---|---|---|---|---|---|")


def _recognised_by(sig) -> str:
    kinds = []
    for pattern in sig.patterns:
        if pattern.analysis:
            kind = f"key analysis `{pattern.analysis}`"
        elif pattern.operation:
            kind = f"operation `{pattern.operation}`"
        else:
            kind = "wording"
        if kind not in kinds:
            kinds.append(kind)
    return ", ".join(kinds)


def signature_rows() -> List[str]:
    rows = []
    for sig in SIGNATURES:
        codes = ", ".join(f"`{code}`" for code in sig.codes)
        versions = any(n.versions for c in sig.causes for n in c.needs)
        if versions:
            codes = f"{codes}; installed versions" if codes else "installed versions"
        rows.append(f"| {sig.id} | `{sig.slug}` | {sig.title} | {_recognised_by(sig)} | {codes} | "
                    f"{'yes' if sig.blocking else 'no'} |")
    return rows


def signature_table() -> str:
    return HEADER + "\n" + "\n".join(signature_rows())


if __name__ == "__main__":
    print(signature_table())
