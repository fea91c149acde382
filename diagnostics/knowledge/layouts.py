"""Rewrite layouts that hide Python's own traceback lines into the lines Python prints.

`logtext.py` strips what a layout adds around each line; this module undoes layouts that change
the lines themselves:
- JSON error reports (an application's or a web UI's report file, an API answer): the traceback
  is a JSON string, or an array of strings, with escaped quotes and newlines, and the exception is
  in fields such as `exception_type` / `exception_message`. The strings are decoded into their
  lines and a `Type: message` line is put after the report, where Python would print it;
- tracebacks flattened onto one line (a log shipper, a web form, a JSON field printed raw): split
  at each `File "...", line N, in f` and chain marker, and joined first when the paste broke the
  one long line in two;
- IPython and Jupyter/Colab tracebacks (`----> 22 code` arrows, `path.py in f()` or
  `File path.py:22, in f()` locations, Colab's Markdown links around paths) into `File "..."`
  frames with their code lines;
- an error line in Markdown emphasis (`**ImportError: ...**`).

`expand_layouts(lines)` returns the rewritten lines and, for each one, the 1-based line of the
input it came from. Standard library only; never raises on odd input.
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Optional, Tuple

from .records import CHAIN, EXC_LINE, looks_like_exception_type

HEADER = "Traceback (most recent call last):"
Lines = Tuple[List[str], List[int]]

# --- JSON reports -----------------------------------------------------------------------------------

_MEMBER = re.compile(r'^\s*"(?P<key>[^"\\]{1,60})"\s*:\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*,?\s*$')
_ELEMENT = re.compile(r'^\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*,?\s*$')
_JSONISH = re.compile(r'^\s*(?:[{}\[\]"]|$)')
TYPE_KEYS = ("exception_type", "exc_type", "error_type", "exception_class", "exception_name", "type")
MESSAGE_KEYS = ("exception_message", "exc_message", "error_message", "message", "msg", "value", "detail", "error")
TRACE_KEYS = ("traceback", "stacktrace", "stack_trace", "stack", "trace", "exc_info", "formatted_traceback")


def _decode(value: str) -> Optional[str]:
    try:
        decoded = json.loads(f'"{value}"')
    except ValueError:
        return None
    return decoded if isinstance(decoded, str) else None


def _looks_like_trace(text: str) -> bool:
    return HEADER in text or bool(re.search(r'^\s*File "[^"]+", line \d+', text, re.M))


class _Report:
    """The exception fields of one JSON report, read line by line."""

    def __init__(self) -> None:
        self.fields: Dict[str, str] = {}
        self.origin = 0

    def note(self, key: str, value: str, origin: int) -> None:
        key = key.lower()
        if (key in TYPE_KEYS or key in MESSAGE_KEYS) and key not in self.fields:
            self.fields[key] = value
            self.origin = self.origin or origin

    def exception_lines(self) -> List[str]:
        """`Type: message` and the message's further lines, as Python prints them; [] if unknown."""
        exc_type = next((self.fields[k] for k in TYPE_KEYS if self.fields.get(k)), "")
        generic = not any(self.fields.get(k) for k in TYPE_KEYS[:-1])  # only a field called "type"
        message = next((self.fields[k] for k in MESSAGE_KEYS if self.fields.get(k)), "")
        first, *rest = message.splitlines() or [""]
        found = EXC_LINE.match(first)
        if found and found.group("msg") and looks_like_exception_type(found.group("type")):
            return [first] + rest  # the message already reads `Type: message`
        if exc_type and re.fullmatch(r"(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*", exc_type) and looks_like_exception_type(exc_type):
            if first:
                return [f"{exc_type}: {first}"] + rest
            return [] if generic else [exc_type]
        return []


def _walk_json(value: Any, report: _Report, out: List[str], origin: int, depth: int = 0) -> None:
    """A report printed as one JSON document on one line."""
    if depth > 4:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str):
                if str(key).lower() in TRACE_KEYS or _looks_like_trace(item):
                    out.extend(item.splitlines())
                else:
                    report.note(str(key), item, origin)
            elif isinstance(item, list) and all(isinstance(piece, str) for piece in item) and (
                    str(key).lower() in TRACE_KEYS or _looks_like_trace("".join(item))):
                out.extend("".join(item).splitlines())
            else:
                _walk_json(item, report, out, origin, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _walk_json(item, report, out, origin, depth + 1)


def expand_json(lines: List[str]) -> Lines:
    """Decode the traceback strings of JSON reports and add the exception line after each report."""
    out: List[str] = []
    origins: List[int] = []
    report: Optional[_Report] = None

    def close() -> None:
        found = report.exception_lines() if report is not None else []
        out.extend(found)
        origins.extend([report.origin] * len(found) if report is not None else [])

    for number, line in enumerate(lines, 1):
        if report is not None and not _JSONISH.match(line):
            close()
            report = None
        stripped = line.strip()
        if stripped[:1] not in ('{', '"'):
            out.append(line)
            origins.append(number)
            continue
        if stripped.startswith("{") and stripped.endswith("}") and len(stripped) > 2:
            try:
                document = json.loads(stripped)
            except ValueError:
                document = None
            if isinstance(document, dict):
                one = _Report()
                decoded: List[str] = []
                _walk_json(document, one, decoded, number)
                decoded += one.exception_lines()
                if decoded:
                    out.extend(decoded)
                    origins.extend([number] * len(decoded))
                    continue
        member = _MEMBER.match(line)
        element = None if member else _ELEMENT.match(line)
        found = member or element
        value = _decode(found.group("value")) if found and "\\" in found.group("value") else None
        if member:
            report = report or _Report()
            plain = value if value is not None else _decode(member.group("value"))
            if plain is not None and not _looks_like_trace(plain):
                report.note(member.group("key"), plain, number)
        is_field = bool(member) and member.group("key").lower() in TYPE_KEYS + MESSAGE_KEYS
        if value is not None and not is_field and ("\n" in value or _looks_like_trace(value)):
            pieces = value.splitlines() or [""]
            out.extend(pieces)
            origins.extend([number] * len(pieces))
            continue
        out.append(line)
        origins.append(number)
    close()
    return out, origins


# --- one-line tracebacks ----------------------------------------------------------------------------

_FLAT_FRAME = re.compile(r'File "[^"]+", line \d+(?:, in (?:<[\w.-]+>|[A-Za-z_][\w.]*))?')
_MARKERS = (HEADER,) + tuple(CHAIN)
# The exception at the end of a flattened traceback: a dotted CamelCase class and its message.
_FLAT_EXC = re.compile(r"\s(?P<exc>(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Exit|Interrupt|Enabled|Warning)"
                       r"|(?:[a-z_]\w*\.){2,}[A-Z]\w*): (?=\S)")


_FRAME_THEN_TEXT = re.compile(r'File "[^"]+", line \d+, in (?:<[\w.-]+>|[A-Za-z_][\w.]*)\s+\S')
_FRAME_PIECE = re.compile(r'File "|^[^"]*", line \d+')


def _is_flat(line: str) -> bool:
    """Python prints nothing after `in function` on a frame line: text there means one line holds
    a frame and what follows it."""
    return bool(_FRAME_THEN_TEXT.search(line)) or len(_FLAT_FRAME.findall(line)) >= 2


_WHOLE_FRAME = re.compile(r'File "[^"]+", line \d+, in \S+')


def _ends_in_frame(line: str) -> bool:
    """The line was broken inside its last frame's `File "...", line N, in f`."""
    at = line.rfind('File "')
    return at >= 0 and not _WHOLE_FRAME.match(line, at)


def _join(line: str, piece: str) -> str:
    """Two pieces of a broken line; a space the break (or a trailing-space trim) took is put back
    where the frame it cut needs one to be whole."""
    at = line.rfind('File "')
    if at >= 0 and not _WHOLE_FRAME.match(line, at):
        for sep in ("", " "):
            if _WHOLE_FRAME.match(line + sep + piece, at):
                return line + sep + piece
    return line + piece


def _continues_flat(line: str) -> bool:
    """The next piece of a flattened traceback the paste broke: it holds frame text."""
    stripped = line.strip()
    return (bool(stripped) and bool(_FRAME_PIECE.search(stripped)) and not stripped.startswith(("File ", "Traceback"))
            and HEADER not in stripped)


def _split_flat(line: str) -> List[str]:
    """One flattened traceback line as Python's lines."""
    pieces = [line]
    for marker in _MARKERS:
        pieces = [part for piece in pieces for part in _split_keep(piece, marker)]
    out: List[str] = []
    for piece in pieces:
        if piece in _MARKERS:
            out.append(piece)
            continue
        frames = list(_FLAT_FRAME.finditer(piece))
        if not frames:
            out.append(piece)
            continue
        if piece[: frames[0].start()].strip():
            out.append(piece[: frames[0].start()].strip())
        for index, frame in enumerate(frames):
            end = frames[index + 1].start() if index + 1 < len(frames) else len(piece)
            out.append("  " + frame.group(0))
            rest = piece[frame.end(): end].strip()
            if index + 1 == len(frames):
                exc = None
                for exc in _FLAT_EXC.finditer(" " + rest):
                    pass
                if exc is not None and looks_like_exception_type(exc.group("exc")):
                    code, rest = rest[: max(0, exc.start() - 1)].strip(), rest[exc.start():].strip()
                    if code:
                        out.append("    " + code)
                    out.append(rest)
                    continue
            if rest:
                out.append("    " + rest)
    return out


def _split_keep(text: str, marker: str) -> List[str]:
    if marker not in text or text.strip() == marker:
        return [text]
    out: List[str] = []
    for index, part in enumerate(text.split(marker)):
        if index:
            out.append(marker)
        if part.strip():
            out.append(part.strip())
    return out


def expand_flat(lines: List[str]) -> Lines:
    out: List[str] = []
    origins: List[int] = []
    i = 0
    while i < len(lines):
        line, origin = lines[i], i + 1
        i += 1
        if 'File "' not in line:
            out.append(line)
            origins.append(origin)
            continue
        if not _is_flat(line):
            if i < len(lines) and _ends_in_frame(line) and _is_flat(_join(line, lines[i])):
                line = _join(line, lines[i])  # broken inside the first frame
                i += 1
            else:
                out.append(line)
                origins.append(origin)
                continue
        # A paste that broke the one long line: the next line goes on with more frame text.
        while i < len(lines) and (_continues_flat(lines[i]) or (
                _ends_in_frame(line) and lines[i].strip() and not lines[i].lstrip().startswith(("File ", "Traceback")))):
            line = _join(line, lines[i])
            i += 1
        pieces = _split_flat(line)
        out.extend(pieces)
        origins.extend([origin] * len(pieces))
    return out, origins


# --- IPython / Jupyter / Colab ----------------------------------------------------------------------

_IPY_HEADER = re.compile(r"^(?P<type>(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*)\s{2,}Traceback \(most recent call last\)\s*$")
_IPY_PATH = r"(?:[A-Za-z]:)?[^\s\[\]()]+?\.py|<ipython-input-[^>]+>|~[^\s\[\]()]*?\.py"
_IPY_LOCATION = (
    re.compile(rf"^\[?(?P<file>{_IPY_PATH})\]?(?:\([^)]*\))?\s+in\s+(?P<func><[\w.-]+>|[A-Za-z_][\w.]*)\(.*\)\s*$"),
    re.compile(rf"^File\s+\[?(?P<file>{_IPY_PATH})\]?(?:\([^)]*\))?:(?P<line>\d+)(?:,\s+in\s+(?P<func><[\w.-]+>|"
               r"[A-Za-z_][\w.]*)(?:\(.*\))?)?\s*$"),
    re.compile(r"^(?P<file>Cell\s+In\s*\[\d+\]), line (?P<line>\d+)\s*$"),
)
_IPY_CODE = re.compile(r"^\s*(?P<arrow>-*>)?\s*(?P<number>\d+)(?:\s(?P<code>.*))?$")
_BOLD = re.compile(r"^\*\*(?P<body>[A-Za-z_][^*]*?)(?:\*\*)?\s*$")


def _ipython_location(line: str):
    if ".py" not in line and "Cell In" not in line and "<ipython-input" not in line:
        return None
    for pattern in _IPY_LOCATION:
        found = pattern.match(line.strip())
        if found:
            return found
    return None


def _ipython_frame(lines: List[str], i: int, found) -> Tuple[Optional[List[str]], int]:
    """The Python lines of one IPython frame at `i`, and the index after its code lines."""
    number = found.groupdict().get("line")
    code = ""
    j = i + 1
    while j < len(lines):
        row = _IPY_CODE.match(lines[j])
        if not row:
            break
        if row.group("arrow"):
            number, code = row.group("number"), (row.group("code") or "").strip()
        j += 1
    if not number or j == i + 1:
        return None, i + 1
    func = found.groupdict().get("func") or "<module>"
    frame = [f'  File "{found.group("file")}", line {number}, in {func}']
    return frame + ([f"    {code}"] if code else []), j


def expand_ipython(lines: List[str]) -> Lines:
    out: List[str] = []
    origins: List[int] = []
    i = 0
    while i < len(lines):
        line, origin = lines[i], i + 1
        header = _IPY_HEADER.match(line.strip()) if "Traceback (most" in line else None
        found = None if header else _ipython_location(line)
        frame, after = _ipython_frame(lines, i, found) if found else (None, i + 1)
        if header:
            out.append(HEADER)
            origins.append(origin)
        elif frame:
            out.extend(frame)
            origins.extend([origin] * len(frame))
        elif line.lstrip().startswith("-" * 20) and i + 1 < len(lines) and _IPY_HEADER.match(lines[i + 1].strip()):
            pass
        else:
            bold = _BOLD.match(line.strip()) if "**" in line else None
            exc = EXC_LINE.match(bold.group("body")) if bold else None
            if exc and exc.group("msg") is not None and looks_like_exception_type(exc.group("type")):
                line = bold.group("body").rstrip("* ")
            out.append(line)
            origins.append(origin)
        i = after
    return out, origins


# --- all of them ------------------------------------------------------------------------------------


def _compose(first: List[int], second: List[int]) -> List[int]:
    """Origins of a second rewrite expressed in the lines before the first."""
    return [first[k - 1] if 0 < k <= len(first) else k for k in second]


def expand_layouts(lines: List[str]) -> Lines:
    """Every rewrite above, in turn; origins are 1-based lines of `lines`."""
    origins = list(range(1, len(lines) + 1))
    text = "\n".join(lines)
    rewrites = []
    if '\\n' in text or '"' in text:
        rewrites.append(expand_json)
    if 'File "' in text:
        rewrites.append(expand_flat)
    if "--->" in text or "->" in text or "**" in text:
        rewrites.append(expand_ipython)
    for rewrite in rewrites:
        lines, step = rewrite(lines)
        origins = _compose(origins, step)
    return lines, origins
