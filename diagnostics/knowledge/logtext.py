"""Turn pasted log text into clean lines, whatever layout it came in.

What people paste is rarely a bare Python traceback. This module removes what the layout added,
so that the parser in `traceback.py` sees Python's own lines:
- ANSI colour codes, OSC titles, other control characters, CRLF and lone CR (progress bars);
- log-record prefixes on every line, in any mix and order: timestamps (ISO, `[12:00:01]`,
  `[03/14/24 10:01:02]`), levels, logger names, `docker compose` container names, `kubectl`
  prefixes, syslog, AUTOMATIC1111's `***` markers, table and panel bars (`|`, `│`);
- the location column that `rich`'s log handler prints at the right (`module.py:123`);
- lines wrapped by a terminal or a web page at a fixed width, also in the middle of a word
  (`unwrap`), which Python would never print.

Everything here is the standard library only and never raises on odd input.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import List, Tuple

from .records import CARET, EXC_LINE, looks_like_exception_type

ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor movement
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: titles, hyperlinks
    r"|\x1b[@-Z\\-_]"  # other two-byte escapes
)
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
HEADER = "Traceback (most recent call last):"
GROUP_HEADER = "Exception Group Traceback (most recent call last):"
# Keep a hostile or binary log from turning into one multi-megabyte "line".
MAX_LINE = 100_000
# rich's RichHandler prints the record's origin right-aligned after at least two spaces.
_RICH_LOCATION = re.compile(r"\s{2,}[\w.<>-]+\.py:\d+\s*$")


def clean_lines(text: str) -> List[str]:
    """Split `text` into lines without ANSI escapes or control characters (tabs are kept)."""
    text = ANSI.sub("", text.replace("\r\n", "\n"))
    out = []
    for line in text.splitlines():
        line = CONTROL.sub("", line).rstrip()
        if len(line) > MAX_LINE:
            line = line[:MAX_LINE] + " [...]"
        if ".py:" in line and not line.lstrip().startswith("File "):
            line = _RICH_LOCATION.sub("", line)
        # numpy's "compiled using NumPy 1.x" notice prints the header and the first frame on one line.
        # (Not in an escaped string, `Traceback ...:\n  File ...`: layouts.py decodes those.)
        at = line.find(HEADER)
        if at >= 0 and line[at + len(HEADER):].strip() and not line[at + len(HEADER):].startswith("\\"):
            out.append(line[: at + len(HEADER)])
            line = line[at + len(HEADER):]
        out.append(line)
    return out


# --- prefixes ---------------------------------------------------------------------------------------

_LEVEL = r"(?:DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL|TRACE|NOTICE)"
# Pieces a logging setup puts before the message; stripped one after the other from a line start.
PREFIX_PIECES = [
    re.compile(r"^[\w.-]+(?:[-_]\d+)?\s+\|\s?"),  # docker compose: "app-1  | "
    re.compile(r"^\[(?:pod|container)/[^\]]+\]\s"),  # kubectl logs --prefix
    re.compile(r"^\[?\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?\]?\s*"),
    re.compile(r"^\[?\d{1,2}/\d{1,2}/\d{2,4}[ T,]\s*\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\s*(?:[AP]M)?\]?\s*"),  # rich
    re.compile(r"^\[?\d{2}:\d{2}:\d{2}(?:[.,]\d+)?\]?\s+"),
    re.compile(r"^[A-Z][a-z]{2}\s+\d{1,2}\s+\d{2}:\d{2}:\d{2}\s+\S+\s+[\w./-]+(?:\[\d+\])?:\s"),  # syslog
    re.compile(rf"^\[?{_LEVEL}\]?(?:\s*[:|-]\s*|\s+)"),
    re.compile(rf"^{_LEVEL}:[\w.]*:"),  # logging.basicConfig default
    re.compile(r"^(?:stdout|stderr)\s*[|:]\s?"),
    re.compile(r"^\*{3}(?:\s|$)"),  # AUTOMATIC1111's extension and script loaders
    re.compile(r"^[|│┃](?:\s|$)"),  # table cells, rich panels, quoted blocks
]


# One pattern for all pieces: a line costs one match per piece it carries, not one per piece known.
_ANY_PREFIX = re.compile("|".join(f"(?:{piece.pattern.lstrip('^')})" for piece in PREFIX_PIECES))


def shape(text: str) -> str:
    """The text with every digit as 0: two timestamps of one logger have the same shape."""
    return re.sub(r"\d", "0", text)


def strip_known_prefix(line: str) -> str:
    """Remove log-record prefixes (container, timestamp, level, markers) from the start of `line`."""
    while True:
        found = _ANY_PREFIX.match(line)
        if not found or found.end() == 0:
            return line
        line = line[found.end():]


def is_log_record_start(line: str) -> bool:
    """A line that starts a new log record (timestamp or level prefix): ends an exception message."""
    return strip_known_prefix(line) != line


class Prefixer:
    """Strips the prefix the traceback's header line had from the lines that follow it.

    A fixed-width prefix (same shape once digits are ignored, e.g. a timestamp) is cut by width; so
    is blank space of that width (a log handler that indents a record's continuation lines);
    otherwise known prefix pieces are stripped; lines without a prefix (logging.exception prints
    only the first line with one) pass unchanged.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.shape = shape(prefix)

    def __call__(self, line: str) -> str:
        return self.split(line)[0]

    def split(self, line: str) -> Tuple[str, bool]:
        """(line without prefix, whether it carried the header's own prefix)."""
        if not self.prefix:
            return line, True
        head = line[: len(self.prefix)]
        if shape(head) == self.shape:
            return line[len(self.prefix):], True
        if len(head) == len(self.prefix) and not head.strip() and self.prefix.strip():
            return line[len(self.prefix):], True  # continuation indent of the record
        return strip_known_prefix(line), False


# --- lines wrapped at a fixed width -----------------------------------------------------------------

_FRAME_START = re.compile(r'^\s*File "')
_FRAME_WHOLE = re.compile(r'^\s*File "[^"]+", line \d+(?:, in .+)?$')


def wrap_width(lines: List[str]) -> int:
    """The width a log was hard-wrapped at, or 0 when it was not.

    A wrapped log has many lines of exactly the same, largest length (the wrap width) while
    Python's own lines have every length. Where few lines are that long (lines cut before a space
    lose it to the trailing-space strip), cuts tell: an indented traceback line at the width
    followed by a piece at the line start that Python would not print there."""
    lengths = Counter(len(line) for line in set(lines) if 30 <= len(line) <= 400)
    if not lengths:
        return 0
    width = max(lengths)
    at_width = lengths[width]
    longer_share = at_width / max(1, sum(count for length, count in lengths.items() if length >= width - 20))
    if at_width >= 3 and longer_share >= 0.5:
        return width
    cuts = sum(1 for line, following in zip(lines, lines[1:])
               if len(line) == width and strip_known_prefix(line)[:1].isspace() and following[:1].strip()
               and not _starts_structure(following) and not _exception_line(following))
    return width if cuts >= 2 else 0


def unwrap(lines: List[str]) -> Tuple[List[str], List[int]]:
    """Undo fixed-width wrapping; returns the lines and each one's 1-based line in the input.

    Lines exactly as long as the wrap width continue on the next line (joined without a space:
    the wrap may cut a word). A `File "...", line N, in f` line cut anywhere is joined with what
    follows until it is whole, whatever the width."""
    width = wrap_width(lines)
    out: List[str] = []
    origins: List[int] = []
    i = 0
    count = len(lines)
    while i < count:
        line = lines[i]
        origin = i + 1
        i += 1
        piece = line
        while width and len(piece) >= width and i < count and _continues(piece, lines[i]):
            piece = lines[i]
            line += piece
            i += 1
        body = strip_known_prefix(line) if 'File "' in line else ""
        if body and _FRAME_START.match(body) and not _FRAME_WHOLE.match(body):
            joined, i = _join_frame_line(body, lines, i)
            line = line[: len(line) - len(body)] + joined
        out.append(line)
        origins.append(origin)
    return out, origins


def _starts_structure(line: str) -> bool:
    """A line Python starts itself (a header, a frame, a chain marker): never a wrapped piece."""
    body = strip_known_prefix(line).strip()
    return (body.startswith(("Traceback (most recent call last)", "File \"", "During handling of the above",
                             "The above exception was"))
            or HEADER in line)


_FRAME_WITH_FUNCTION = re.compile(r'^\s*File "[^"]+", line \d+, in \S+$')


def _exception_line(line: str) -> bool:
    """`SomeError: message` at the start of a line, as Python prints after a traceback's last frame."""
    match = EXC_LINE.match(line)
    if not match or not looks_like_exception_type(match.group("type")):
        return False
    return match.group("msg") is not None or match.group("type").endswith(("Error", "Exception", "Interrupt", "Exit"))


def _continues(piece: str, following: str) -> bool:
    """Whether `following` is the rest of `piece`, a line as long as the wrap width.

    Python's own lines can be that long by chance: a caret line (its wrapped rest would be more
    carets), a frame's code or caret line followed by the exception line, a whole frame line
    followed by its indented code line (a cut name continues without indentation)."""
    if not following.strip() or _starts_structure(following):
        return False
    body = strip_known_prefix(piece)
    if CARET.match(body):
        return bool(CARET.match(following))
    if body[:1].isspace() and not following[:1].isspace() and _exception_line(following):
        return False
    return not (_FRAME_WITH_FUNCTION.match(body) and following[:1].isspace())


def _join_frame_line(line: str, lines: List[str], i: int) -> Tuple[str, int]:
    """A frame line cut by wrapping, joined with up to 3 following lines (with or without a space)."""
    candidates = [line]
    for j in range(i, min(i + 3, len(lines))):
        piece = lines[j].strip()
        candidates = [c + sep + piece for c in candidates for sep in ("", " ")][:16]
        for candidate in candidates:
            if _FRAME_WHOLE.match(candidate):
                return candidate, j + 1
    return line, i
