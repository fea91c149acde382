"""Which class a method belongs to: Python prints only `in __init__`, so the class of a frame's
function is recovered from the source file when it can be read, else from a table of known
locations (see `signatures.locations`). Standard library only; never raises on odd input.
"""

from __future__ import annotations

import ast
import re
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .records import Frame


def _enclosing_qualnames(source: str, function: str) -> List[Tuple[str, int, int]]:
    """(qualname, first line, last line) of every def named `function` in `source`."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    found: List[Tuple[str, int, int]] = []

    def visit(node: ast.AST, scope: List[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, scope + [child.name])
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if child.name == function:
                    end = getattr(child, "end_lineno", None) or child.lineno
                    found.append((".".join(scope + [child.name]), child.lineno, end))
                visit(child, scope + [child.name, "<locals>"])
            else:
                visit(child, scope)

    visit(tree, [])
    return found


def qualname_from_source(source: str, function: str, line: Optional[int], code: str) -> Optional[Tuple[str, bool]]:
    """Qualified name of the def holding the frame, and whether the line number matched exactly.

    The line is trusted only when the source at that line is the frame's code; otherwise (the
    file here is another version of the user's) the def whose body contains the code is used,
    and only when exactly one does."""
    candidates = _enclosing_qualnames(source, function)
    if not candidates:
        return None
    src_lines = source.splitlines()
    want = code.strip()
    if line and 0 < line <= len(src_lines) and (not want or src_lines[line - 1].strip() == want):
        inside = [c for c in candidates if c[1] <= line <= c[2]]
        if inside:
            return min(inside, key=lambda c: c[2] - c[1])[0], True
    if want:
        holding = {c[0] for c in candidates if any(l.strip() == want for l in src_lines[c[1] - 1:c[2]])}
        if len(holding) == 1:
            return holding.pop(), False
    if len({c[0] for c in candidates}) == 1 and not want:
        return candidates[0][0], False
    return None


def resolve_qualname(frame: Frame, read_source: Callable[[str], Optional[Tuple[str, str]]],
                     known: Sequence[Dict[str, str]] = ()) -> None:
    """Fill `frame.qualname` (Class.method) in place.

    `read_source(path)` returns (source text, where it came from) or None; `known` is a table of
    known locations ({"path": suffix, "function", "code": regex, "qualname"}) used last."""
    if not frame.function or frame.function.startswith("<"):
        frame.qualname = frame.function
        return
    if frame.self_class:
        frame.qualname, frame.qualname_source = f"{frame.self_class}.{frame.function}", "pytest locals"
        return
    try:
        found = read_source(frame.file)
    except Exception:  # a resolver must never break parsing
        found = None
    if found:
        source, origin = found
        result = qualname_from_source(source, frame.function, frame.line, frame.code)
        if result:
            qualname, exact = result
            frame.qualname = qualname  # Python's __qualname__ style: Class.method, outer.<locals>.inner
            frame.qualname_source = origin if exact else f"{origin} (matched by code line)"
            return
    norm = frame.file.replace("\\", "/")
    for entry in known:
        if norm.endswith(entry["path"]) and frame.function == entry["function"] and re.search(
            entry.get("code", ""), frame.code
        ):
            frame.qualname, frame.qualname_source = entry["qualname"], "known ldm layout"
            return
    frame.qualname = frame.function
