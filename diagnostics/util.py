"""Small helpers shared by rules and renderers."""

from __future__ import annotations

from typing import Optional


def parse_version(text: Optional[str]):
    """`packaging.version.Version` for `text`, or None when absent or not PEP 440."""
    if not text:
        return None
    from packaging.version import InvalidVersion, Version

    try:
        return Version(text)
    except InvalidVersion:
        return None


def version_at_least(text: Optional[str], minimum: str) -> Optional[bool]:
    """Whether `text` >= `minimum` (release part only: 2.6.0+cu124 counts as 2.6.0); None if unknown."""
    v = parse_version(text)
    if v is None:
        return None
    return v.release >= parse_version(minimum).release


def fmt_bytes(n: Optional[float]) -> str:
    if n is None:
        return "unknown"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover
