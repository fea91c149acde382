"""The part of a large log that explain reads in full.

A failure is at the end of a log; a web UI or a training job may have written tens of megabytes
before it. `select(text)` keeps the last TAIL_CHARS characters as they are and, from everything
before, only the lines that name an error, an exception, a warning or a traceback (what side notes
are made of); each kept line keeps its line number in the log. Redaction, parsing and matching
then cost what the window holds, not what the log holds. Standard library only.
"""

from __future__ import annotations

import bisect
import re
from itertools import accumulate
from operator import add
from typing import List, Optional, Sequence, Tuple

TAIL_CHARS = 2 * 1024 * 1024
# Lines before the tail that may still matter: earlier tracebacks' headers and exception lines,
# warnings, loaders' notices (`No module 'xformers'`).
_HEAD_KEEP = re.compile(r"Traceback \(most recent|Error|Exception|Warning|warning|error:|No module|[Kk]illed")


def line_starts(lines: Sequence[str]) -> List[int]:
    """The offset of each line in `"\\n".join(lines)` (computed without a Python-level loop)."""
    if not lines:
        return []
    ends = list(accumulate(map(len, lines)))
    return list(map(add, [0] + ends[:-1], range(len(lines))))


def select(text: str, tail_chars: Optional[int] = None) -> Tuple[str, Optional[List[int]]]:
    """(text to read, the 1-based log line of each of its lines) or (text, None) when it is whole."""
    tail_chars = tail_chars or TAIL_CHARS
    if len(text) <= tail_chars:
        return text, None
    cut = text.rfind("\n", 0, len(text) - tail_chars)
    if cut < 0:
        return text, None
    head_lines = text[:cut].splitlines()
    tail = text[cut + 1:]
    head = "\n".join(head_lines)
    starts = line_starts(head_lines)
    kept: List[int] = []
    for found in _HEAD_KEEP.finditer(head):
        index = bisect.bisect_right(starts, found.start()) - 1
        if not kept or kept[-1] != index:
            kept.append(index)
    numbers = [index + 1 for index in kept]
    offset = len(head_lines)
    numbers.extend(range(offset + 1, offset + 1 + len(tail.splitlines())))
    window = "\n".join([head_lines[index] for index in kept] + [tail])
    return window, numbers
