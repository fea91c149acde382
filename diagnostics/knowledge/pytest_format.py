"""pytest's failure formats (`--tb=long`, `short`, `line` and the default `auto`) as tracebacks.

`--tb=native` prints Python's own format, which `traceback.py` parses. One section runs from a
`___ test_name ___` header (or a fragment: a `file.py:12: in f` line, an `E   Type: msg` line) to
the next section or rule. Standard library only; never raises on odd input.
"""

from __future__ import annotations

import re
from typing import List, Optional

from .logtext import HEADER, strip_known_prefix
from .records import CARET, CHAIN, EXC_LINE, ExceptionRecord, Frame, Traceback, looks_like_exception_type

SECTION = re.compile(r"^_{3,} .+ _{3,}$")
SEPARATOR = re.compile(r"^(?:_ )+_\s*$")
RULE = re.compile(r"^={3,}.*={3,}$|^={5,}$")
LOCATION = re.compile(r"^(?P<file>(?:[A-Za-z]:\\)?[^\s:][^:]*?\.py[cwx]?|<[^>]+>):(?P<line>\d+):(?: (?P<rest>.*))?$")
E_LINE = re.compile(r"^E(?: +|$)(?P<text>.*)$")
SELF_LOCAL = re.compile(r"^self = <(?P<cls>[\w.]+) object at 0x[0-9a-fA-F]+>")
DEF_LINE = re.compile(r"^\s*(?:async\s+)?def (?P<name>\w+)\s*\(")
WARNING = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?P<cat>(?:[\w.]+\.)?\w*Warning): (?P<msg>.*)$")


def is_exception_rest(rest: Optional[str]) -> bool:
    found = EXC_LINE.match((rest or "").strip())
    return bool(found and looks_like_exception_type(found.group("type")))


class PytestSection:
    """The state of one section while its lines are read."""

    def __init__(self, lines: List[str], start: int) -> None:
        self.lines = lines
        self.start = start
        self.traceback = Traceback(start_line=start + 1, fmt="pytest")
        self.link = ExceptionRecord()
        self.pending_code = self.pending_def = self.pending_self = ""
        self.e_lines: List[str] = []
        self.waiting_for_code: Optional[Frame] = None

    def flush_e_lines(self) -> None:
        """The `E` lines gathered so far are the exception line and its message."""
        if not self.e_lines:
            return
        indent = min((len(t) - len(t.lstrip(" ")) for t in self.e_lines if t.strip()), default=0)
        texts = [t[indent:] for t in self.e_lines]
        found = EXC_LINE.match(texts[0]) if texts else None
        if found and looks_like_exception_type(found.group("type")):
            self.link.exception_type = found.group("type")
            self.link.message = "\n".join([found.group("msg") or ""] + texts[1:]).strip("\n")
        self.e_lines = []

    def new_link(self, relation: str) -> None:
        self.flush_e_lines()
        if self.link.exception_type or self.link.frames:
            self.traceback.links.append(self.link)
        self.link = ExceptionRecord(relation=relation)
        self.pending_code = self.pending_def = self.pending_self = ""
        self.waiting_for_code = None

    def location(self, found) -> None:
        """A `file.py:12: ...` line: a frame (short format: `in f`; long: `Type: msg` or nothing)."""
        self.flush_e_lines()
        rest = (found.group("rest") or "").strip()
        frame = Frame(file=found.group("file"), line=int(found.group("line")))
        if rest.startswith("in "):  # short format: the code comes on the next line
            frame.function = rest[3:].strip()
            self.waiting_for_code = frame
        else:  # long format: the code (">" line) and def came before
            frame.function, frame.code, frame.self_class = self.pending_def, self.pending_code, self.pending_self
            exc = EXC_LINE.match(rest) if rest else None
            if exc and looks_like_exception_type(exc.group("type")):
                self.link.exception_type = self.link.exception_type or exc.group("type")
                if exc.group("msg") and not self.link.message:
                    self.link.message = exc.group("msg")  # --tb=line
        self.link.frames.append(frame)
        self.pending_code = self.pending_def = self.pending_self = ""

    def other_line(self, line: str, text: str) -> None:
        """Source lines, `self = <...>` locals and `def` lines that belong to the next frame."""
        if SEPARATOR.match(text) or not text:
            self.waiting_for_code = None  # the short entry ended; a long one may follow
            return
        found_self = SELF_LOCAL.match(line)
        if found_self:
            self.pending_self = found_self.group("cls").rsplit(".", 1)[-1]
        elif line.startswith(">"):
            self.pending_code = line[1:].strip()
        elif self.waiting_for_code is not None and line.startswith("    "):
            if not CARET.match(line) and not self.waiting_for_code.code:
                self.waiting_for_code.code = text
        else:
            found_def = DEF_LINE.match(line)
            if found_def and line.startswith("    ") and not self.pending_def:
                self.pending_def = found_def.group("name")

    def read(self) -> int:
        """Read the section; returns the index of the first line after it."""
        count = len(self.lines)
        i = self.start + 1 if SECTION.match(self.lines[self.start].strip()) else self.start
        while i < count:
            raw = self.lines[i]
            line = strip_known_prefix(raw) if not raw.startswith((" ", "E", ">")) else raw
            text = line.strip()
            if (SECTION.match(text) and i > self.start) or RULE.match(text) or HEADER in line:
                break  # the next section, a summary rule, or --tb=native's own format
            i += 1
            if text in CHAIN:
                self.new_link(CHAIN[text])
                continue
            found_e = E_LINE.match(line)
            if found_e:
                self.e_lines.append(found_e.group("text"))
                self.waiting_for_code = None
                continue
            found_location = LOCATION.match(line)
            if found_location and not WARNING.match(line):
                self.location(found_location)
                continue
            self.other_line(line, text)
        self.flush_e_lines()
        if self.link.exception_type or self.link.frames:
            self.traceback.links.append(self.link)
        self.traceback.end_line = i
        return i

    @property
    def found(self) -> bool:
        return any(link.exception_type or link.frames for link in self.traceback.links)
