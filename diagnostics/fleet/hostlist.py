"""Slurm host list expressions: `n[1-4,7]`, `gpu[01-03]-ib`, `a,b[1-2]`.

Slurm names node sets this way in `SLURM_JOB_NODELIST`, `sinfo` and srun's messages
(https://slurm.schedmd.com/slurm.conf.html#OPT_NodeName). Only the one-bracket-per-name form that
Slurm itself prints is expanded; anything else is taken as one literal name.
"""

from __future__ import annotations

import re
from typing import Dict, Iterable, List, Tuple

_BRACKET = re.compile(r"^(?P<prefix>[^\[\]]*)\[(?P<ranges>[0-9,\-]+)\](?P<suffix>[^\[\]]*)$")


def split_top_level(expression: str) -> List[str]:
    """Split at commas outside brackets."""
    parts, depth, current = [], 0, []
    for char in expression:
        if char == "[":
            depth += 1
        elif char == "]":
            depth = max(depth - 1, 0)
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def expand(expression: str) -> List[str]:
    """`n[1-3,5]` -> ['n1', 'n2', 'n3', 'n5']; zero padding is kept (`[01-03]`)."""
    names: List[str] = []
    for part in split_top_level(expression or ""):
        match = _BRACKET.match(part)
        if not match:
            names.append(part)
            continue
        for item in match.group("ranges").split(","):
            if not item:
                continue
            low, _, high = item.partition("-")
            high = high or low
            if not (low.isdigit() and high.isdigit()) or int(high) < int(low) or int(high) - int(low) > 100000:
                names.append(part)  # not a range we understand: keep the text
                break
            width = len(low) if low.startswith("0") else 0
            names.extend(f"{match.group('prefix')}{number:0{width}d}{match.group('suffix')}"
                         for number in range(int(low), int(high) + 1))
    return names


_NUMBERED = re.compile(r"^(?P<prefix>.*?)(?P<number>\d+)(?P<suffix>\D*)$")


def compress(names: Iterable[str]) -> str:
    """The inverse for display: ['n1', 'n2', 'n3', 'n5', 'x'] -> 'n[1-3,5],x' (order: first seen).
    Zero-padded numbers share a range with longer unpadded ones: node[001-1000]."""
    names = list(names)
    padding: Dict[Tuple[str, str], int] = {}
    for name in names:
        match = _NUMBERED.match(name)
        if match and match.group("number").startswith("0") and len(match.group("number")) > 1:
            key = (match.group("prefix"), match.group("suffix"))
            padding[key] = max(padding.get(key, 0), len(match.group("number")))
    groups: Dict[Tuple[str, str, int], List[int]] = {}
    literal: List[str] = []
    order: List[object] = []
    for name in names:
        match = _NUMBERED.match(name)
        if not match:
            if name not in literal:
                literal.append(name)
                order.append(name)
            continue
        digits, prefix, suffix = match.group("number"), match.group("prefix"), match.group("suffix")
        width = padding.get((prefix, suffix), 0)
        if digits.startswith("0") and len(digits) > 1:
            width = len(digits)
        elif len(digits) < width:
            width = 0  # `node5` beside `node005`: not the same family
        key = (prefix, suffix, width)
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(int(digits))
    pieces = []
    for item in order:
        if isinstance(item, str):
            pieces.append(item)
            continue
        prefix, suffix, width = item
        numbers = sorted(set(groups[item]))
        if len(numbers) == 1:
            pieces.append(f"{prefix}{numbers[0]:0{width}d}{suffix}")
            continue
        ranges, start, previous = [], numbers[0], numbers[0]
        for number in numbers[1:] + [None]:
            if number is not None and number == previous + 1:
                previous = number
                continue
            ranges.append(f"{start:0{width}d}" if start == previous else f"{start:0{width}d}-{previous:0{width}d}")
            if number is not None:
                start = previous = number
        pieces.append(f"{prefix}[{','.join(ranges)}]{suffix}")
    return ",".join(pieces)
