"""Where the user's `ldm` code is, and what its sources import, read as text (never imported)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any, Dict, Optional

RANK_ZERO_IMPORT = re.compile(r"from\s+pytorch_lightning\.utilities\.distributed\s+import\s+[^\n]*\brank_zero_only\b")


def locate_ldm(code_root: Optional[str]) -> Dict[str, Any]:
    """Find the `ldm` package: under --code-root first, else wherever `import ldm` would find it."""
    path = None
    source = None
    if code_root:
        candidate = Path(code_root) / "ldm"
        if candidate.is_dir():
            path, source = candidate, "code root"
    if path is None:
        try:
            spec = importlib.util.find_spec("ldm")  # top-level: locates without executing it
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.submodule_search_locations:
            path, source = Path(list(spec.submodule_search_locations)[0]), "sys.path"
    if path is None:
        return {"found": False, "path": None, "source": None, "rank_zero_only_import": None}
    rank_zero = []
    for rel in ("models/diffusion/ddpm.py", "models/diffusion/ddpm_edit.py"):
        try:
            text = (path / rel).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            if RANK_ZERO_IMPORT.search(line):
                rank_zero.append({"file": f"ldm/{rel}", "line": lineno, "code": line.strip()})
    return {"found": True, "path": str(path), "source": source, "rank_zero_only_import": rank_zero}


def probe_ldm(ctx) -> Dict[str, Any]:
    return locate_ldm(ctx.options.code_root)
