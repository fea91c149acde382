"""Find Python tracebacks in a pasted log and turn them into plain data.

Real logs are messy, so `parse_log` survives:
- every layout `logtext.py` cleans: prefixes on every line, ANSI codes, indentation, `***` and `|`
  markers, lines wrapped at any width;
- chained exceptions ("During handling of the above exception, another exception occurred:",
  "The above exception was the direct cause of the following exception:");
- several tracebacks in one log (the last one is taken as the failure, all are searched);
- pytest's failure formats (`pytest_format.py`);
- frames printed without indentation, and code lines cut off by wrapping;
- layouts that print the message first and the frames after, without a final `Type: message`
  line (ComfyUI's "Error occurred when executing NODE:");
- `warnings` lines (`file.py:12: UserWarning: ...`), which are collected apart;
- Windows paths, truncated logs (no header, or no exception line), Python 3.11+ caret lines and
  exception groups;
- logs with no traceback at all, where a bare `SomeError: message` line is still picked up.

Everything here is the standard library only and never raises on odd input. Which class a method
belongs to is recovered by `qualnames.py`.
"""

from __future__ import annotations

import re
from typing import Callable, List, Optional, Tuple

from . import pytest_format as pytest_fmt
from .layouts import expand_layouts
from .logtext import (GROUP_HEADER, HEADER, Prefixer, clean_lines, is_log_record_start, strip_known_prefix,
                      unwrap)
from .qualnames import qualname_from_source, resolve_qualname
from .records import (CARET, CHAIN, EXC_LINE, ExceptionRecord, Frame, LogWarning, ParsedLog, Traceback, frame_kind,
                      looks_like_exception_type)

__all__ = ["ExceptionRecord", "Frame", "LogWarning", "ParsedLog", "Traceback", "clean_lines", "frame_kind",
           "parse_log", "qualname_from_source", "resolve_qualname", "strip_known_prefix"]

MAX_MESSAGE_LINES = 60
FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+)(?:, in (?P<func>.+))?\s*$')
REPEAT = re.compile(r"^\s*\[Previous line repeated \d+ more times?\]\s*$")
GROUP_MARK = re.compile(r"^(?:\s*[+|]\s?|\s*\+[-+ \d.]*(?:\s|$))")
# A bare error line anywhere in a log: needs an exception-looking name and a message.
BARE_EXC = re.compile(r"^(?P<type>(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Exit|Interrupt)): (?P<msg>\S.*)$")
FENCE = re.compile(r"^\s*(?:```|~~~)")
# Layouts that print the error message before the frames (ComfyUI's executor, before 2024).
MESSAGE_FIRST = re.compile(r"^(?:Error occurred when executing [^:]+:|!!! Exception during processing !!!)\s*(?P<rest>.*)$")


class _Parser:
    def __init__(self, lines: List[str], origins: List[int]) -> None:
        self.lines = lines
        self.origins = origins
        self.tracebacks: List[Traceback] = []
        self.warnings: List[LogWarning] = []
        self.consumed = [False] * len(lines)

    def origin(self, index: int) -> int:
        """1-based line in the log of the parsed line at `index` (past the end: the last line + 1)."""
        if 0 <= index < len(self.origins):
            return self.origins[index]
        return (self.origins[-1] + 1) if self.origins else index + 1

    # Python's own format --------------------------------------------------------------------------

    def _frame(self, i: int, found, text_at: Callable[[int], str]) -> Tuple[int, Frame]:
        """A frame line and its source lines; returns the index after them."""
        frame = Frame(file=found.group("file"), line=int(found.group("line")),
                      function=(found.group("func") or "").strip())
        i += 1
        count = len(self.lines)
        while i < count:
            nxt = text_at(i)
            if FRAME.match(nxt) or REPEAT.match(nxt):
                break
            if not nxt.startswith(" "):
                # Frames printed without indentation: the code line is the next line when it is
                # neither an exception line nor a marker and more of the traceback follows.
                if frame.code or not nxt.strip() or self._exception_line(nxt) or nxt.strip() in CHAIN:
                    break
                if not self._traceback_continues(i + 1, text_at):
                    break
            if not frame.code and not CARET.match(nxt) and nxt.strip():
                frame.code = nxt.strip()  # the first source line; carets and the rest skipped
            i += 1
        return i, frame

    def _traceback_continues(self, i: int, text_at: Callable[[int], str], within: int = 3) -> bool:
        """A frame or an exception line follows within `within` lines."""
        for k in range(i, min(i + within, len(self.lines))):
            text = text_at(k)
            if FRAME.match(text) or self._exception_line(text):
                return True
        return False

    @staticmethod
    def _exception_line(line: str):
        found = EXC_LINE.match(line)
        if found and line and not line.startswith(" ") and looks_like_exception_type(found.group("type")):
            return found
        return None

    def _parse_python(self, start: int, prefix: str, group: bool, truncated_start: bool = False) -> int:
        """Parse a chain starting at line `start` (its header, or its first frame when truncated)."""
        strip = Prefixer(prefix)
        tb = Traceback(start_line=self.origin(start), fmt="python", truncated=truncated_start)
        link = ExceptionRecord(truncated=truncated_start)
        i = start if truncated_start else start + 1
        count = len(self.lines)

        def text_at(k: int) -> str:
            text = strip(self.lines[k])
            return GROUP_MARK.sub("", text, count=1) if group else text

        while i < count:
            line = text_at(i)
            found = FRAME.match(line)
            if found:
                i, frame = self._frame(i, found, text_at)
                link.frames.append(frame)
                continue
            stripped = line.strip()
            if REPEAT.match(line) or (not stripped and link.frames and not link.exception_type):
                i += 1
                continue
            if stripped in (HEADER, GROUP_HEADER) and not link.frames and not link.exception_type:
                i += 1
                continue
            if stripped in CHAIN or (stripped.startswith("+") and group):
                i += 1
                continue
            exc = self._exception_line(line)
            if exc:
                i, link = self._exception(i, exc, link, tb, text_at, prefix)
                if link is None:
                    break
                continue
            if link.frames and self._traceback_continues(i + 1, text_at, within=2):
                i += 1  # a piece of a line cut by wrapping
                continue
            break  # anything else ends the traceback: the log was cut before the exception line
        return self._close_python(tb, link, start, i, truncated_start)

    def _exception(self, i: int, exc, link: ExceptionRecord, tb: Traceback, text_at, prefix: str):
        """The exception line and its message; returns (next index, the next link or None at the end)."""
        count = len(self.lines)
        link.exception_type = exc.group("type")
        msg_lines = [exc.group("msg") or ""]
        link.log_line = self.origin(i)
        i = self._message_continuation(i + 1, text_at, msg_lines, prefix)
        link.message = "\n".join(msg_lines).strip("\n")
        tb.links.append(link)
        # A chain marker (after optional blank lines) continues the same traceback.
        j = i
        while j < count and not text_at(j).strip():
            j += 1
        if j < count and text_at(j).strip() in CHAIN:
            relation = CHAIN[text_at(j).strip()]
            j += 1
            while j < count and not text_at(j).strip():
                j += 1
            if j < count and text_at(j).strip() in (HEADER, GROUP_HEADER):
                return j + 1, ExceptionRecord(relation=relation)
            return j, ExceptionRecord(relation=relation, truncated=True)
        return i, None

    def _close_python(self, tb: Traceback, link: Optional[ExceptionRecord], start: int, i: int,
                      truncated_start: bool) -> int:
        if link is not None and link.frames and all(link is not kept for kept in tb.links):
            link.truncated = True
            # No exception line (the log is cut): the message may stand before the frames or the
            # header, as in layouts that print it first.
            if not link.exception_type and (truncated_start or not any(kept.found for kept in tb.links)):
                self._message_before(start, link)
            tb.links.append(link)
            tb.truncated = True
        if not tb.links:
            return start + 1
        tb.end_line = self.origin(i - 1) if i > start else self.origin(start)
        for k in range(start, min(i, len(self.lines))):
            self.consumed[k] = True
        self.tracebacks.append(tb)
        return max(i, start + 1)

    def _message_before(self, start: int, link: ExceptionRecord) -> None:
        """Frames without a header or exception line: the message may stand before them (ComfyUI)."""
        k = start - 1
        while k >= 0 and not self.lines[k].strip():
            k -= 1
        block: List[str] = []
        while k >= 0 and self.lines[k].strip() and not self.consumed[k] and len(block) < MAX_MESSAGE_LINES:
            line = strip_known_prefix(self.lines[k]).strip()
            header = MESSAGE_FIRST.match(line)
            if header:
                if header.group("rest"):
                    block.insert(0, header.group("rest"))
                break
            block.insert(0, line)
            k -= 1
            if k >= 0 and not self.lines[k].strip():
                j = k
                while j >= 0 and not self.lines[j].strip():
                    j -= 1
                if j >= 0 and MESSAGE_FIRST.match(strip_known_prefix(self.lines[j]).strip()):
                    k = j
        if not block or any(HEADER in line for line in block):
            return
        exc = EXC_LINE.match(block[0])
        if exc and exc.group("msg") and looks_like_exception_type(exc.group("type")):
            link.exception_type, block[0] = exc.group("type"), exc.group("msg")
        link.message = "\n".join(block).strip()
        link.log_line = self.origin(k + 1)

    def _message_continuation(self, i: int, text_at: Callable[[int], str], msg_lines: List[str], prefix: str) -> int:
        """Append the lines of a multi-line exception message; return the index after it."""
        count = len(self.lines)
        blank_run = 0
        while i < count and len(msg_lines) < MAX_MESSAGE_LINES:
            raw = self.lines[i]
            line = text_at(i)
            stripped = line.strip()
            if stripped in CHAIN or stripped in (HEADER, GROUP_HEADER) or HEADER in raw:
                break
            if FENCE.match(line) or pytest_fmt.RULE.match(stripped) or pytest_fmt.SECTION.match(stripped):
                break
            if FRAME.match(line) or pytest_fmt.WARNING.match(line):
                break
            if not stripped:
                blank_run += 1
                # A blank line then a chain marker ends the message; a blank line inside a
                # message (huggingface_hub errors have them) does not.
                if blank_run >= 2 or i + 1 >= count or text_at(i + 1).strip() in CHAIN or not text_at(i + 1).strip():
                    break
                msg_lines.append("")
                i += 1
                continue
            blank_run = 0
            # The next log record starts: a line with a prefix of another shape than the
            # traceback's own (log shippers prefix every line alike; a logger prefixes a record).
            _, same_prefix = Prefixer(prefix).split(raw)
            wrapped_piece = len(self.lines[i - 1]) >= 60 and not is_log_record_start(raw) and bool(msg_lines[-1])
            if (prefix and not same_prefix and not wrapped_piece) or (not prefix and is_log_record_start(raw)):
                break
            if prefix and is_log_record_start(line):
                break
            msg_lines.append(line)
            i += 1
        while msg_lines and not msg_lines[-1].strip():
            msg_lines.pop()
        return i

    # pytest ----------------------------------------------------------------------------------------

    def _parse_pytest(self, start: int) -> int:
        section = pytest_fmt.PytestSection(self.lines, start)
        end = section.read()
        if not section.found:
            return start + 1
        tb = section.traceback
        tb.start_line, tb.end_line = self.origin(start), self.origin(end - 1)
        for k in range(start, min(end, len(self.lines))):
            self.consumed[k] = True
        self.tracebacks.append(tb)
        return max(end, start + 1)

    def _starts_pytest_fragment(self, raw: str, body: str, in_failures: bool) -> bool:
        loc = pytest_fmt.LOCATION.match(body)
        e_line = pytest_fmt.E_LINE.match(raw)
        return bool(
            (loc and (loc.group("rest") or "").startswith("in "))
            or (in_failures and e_line)
            or (e_line and BARE_EXC.match(e_line.group("text").strip()))
            # pytest < 9's --tb=line prints only `file:line: Type: message`
            or (in_failures and loc and pytest_fmt.is_exception_rest(loc.group("rest")))
        )

    # driver ----------------------------------------------------------------------------------------

    def run(self) -> None:
        count = len(self.lines)
        i = 0
        in_failures = False
        while i < count:
            raw = self.lines[i]
            if GROUP_HEADER in raw:
                i = self._parse_python(i, raw[: raw.index(GROUP_HEADER)].rstrip("+| "), group=True)
                continue
            if HEADER in raw:
                i = self._parse_python(i, raw[: raw.index(HEADER)], group=False)
                continue
            stripped = raw.strip()
            if pytest_fmt.RULE.match(stripped):
                in_failures = " FAILURES " in stripped or " ERRORS " in stripped
                i += 1
                continue
            if pytest_fmt.SECTION.match(stripped):
                nxt = self._next_nonblank(i + 1)
                i = i + 1 if nxt is not None and HEADER in self.lines[nxt] else self._parse_pytest(i)
                continue
            body = strip_known_prefix(raw)
            if FRAME.match(body):  # a traceback whose header was cut off
                i = self._parse_python(i, raw[: len(raw) - len(body)], group=False, truncated_start=True)
                continue
            if self._starts_pytest_fragment(raw, body, in_failures):
                i = self._parse_pytest(i)
                continue
            warning = pytest_fmt.WARNING.match(body)
            if warning:
                self.warnings.append(LogWarning(warning.group("cat"), warning.group("msg").strip(),
                                                warning.group("file"), int(warning.group("line")), self.origin(i)))
                self.consumed[i] = True
            i += 1
        self._bare_errors()

    def _next_nonblank(self, i: int) -> Optional[int]:
        while i < len(self.lines):
            if self.lines[i].strip():
                return i
            i += 1
        return None

    def _bare_errors(self) -> None:
        """`SomeError: message` lines outside any traceback (a logger printed only the message)."""
        count = len(self.lines)
        seen = set()
        i = 0
        while i < count:
            if self.consumed[i]:
                i += 1
                continue
            body = strip_known_prefix(self.lines[i]).strip()
            found = BARE_EXC.match(body)
            if not found or pytest_fmt.WARNING.match(body) or found.group("type").endswith("Warning"):
                i += 1
                continue
            msg_lines = [found.group("msg")]
            start = i
            i = self._message_continuation(i + 1, lambda k: self.lines[k], msg_lines, "")
            record = ExceptionRecord(exception_type=found.group("type"), message="\n".join(msg_lines).strip(),
                                     log_line=self.origin(start))
            if record.text in seen:
                continue
            seen.add(record.text)
            self.tracebacks.append(Traceback(links=[record], start_line=self.origin(start),
                                             end_line=self.origin(i - 1), fmt="bare"))
        self.tracebacks.sort(key=lambda t: t.start_line)


def _renumber(origins: List[int], numbers: List[int]) -> List[int]:
    """Origins (1-based lines of the cleaned text) as lines of the log the text was taken from."""
    last = numbers[-1] if numbers else 0
    return [numbers[k - 1] if 0 < k <= len(numbers) else last + k - len(numbers) for k in origins]


def parse_log(text: str, line_numbers: Optional[List[int]] = None) -> ParsedLog:
    """Every traceback, bare error line and warning in `text`, in log order. `line_numbers`: the
    log line of each line of `text` when it holds only part of the log (`window.select`)."""
    lines = clean_lines(text)
    expanded, expanded_origins = expand_layouts(lines)
    text_lines, unwrapped_origins = unwrap(expanded)
    origins = _renumber(unwrapped_origins, expanded_origins)
    if line_numbers:
        origins = _renumber(origins, line_numbers)
    parser = _Parser(text_lines, origins)
    parser.run()
    return ParsedLog(lines=lines, text_lines=text_lines, origins=origins, tracebacks=parser.tracebacks,
                     warnings=parser.warnings)
