"""Find Python tracebacks in a pasted log and turn them into plain data.

Real logs are messy, so `parse_log` survives:
- log prefixes on every line (timestamps, levels, `docker compose` container names, syslog);
- ANSI colour codes and other control characters;
- chained exceptions ("During handling of the above exception, another exception occurred:",
  "The above exception was the direct cause of the following exception:");
- several tracebacks in one log (the last one is taken as the failure, all are searched);
- pytest's failure formats (`--tb=long`, `short`, `line`, `native` and the default `auto`);
- `warnings` lines (`file.py:12: UserWarning: ...`), which are collected apart;
- Windows paths, truncated logs (no header, or no exception line), Python 3.11+ caret lines and
  exception groups;
- logs with no traceback at all, where a bare `SomeError: message` line is still picked up.

Everything here is the standard library only and never raises on odd input. Which class a method
belongs to is not printed by Python (`in __init__`), so `resolve_qualname` recovers it from the
source file when it can be read (see `explain.py`, which knows where the user's `ldm` code is).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

# --- cleaning -------------------------------------------------------------------------------------

_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor movement
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: titles, hyperlinks
    r"|\x1b[@-Z\\-_]"  # other two-byte escapes
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_HEADER = "Traceback (most recent call last):"
# Keep a hostile or binary log from turning into one multi-megabyte "line".
MAX_LINE = 4000
MAX_MESSAGE_LINES = 60


def clean_lines(text: str) -> List[str]:
    """Split `text` into lines without ANSI escapes or control characters (tabs are kept)."""
    text = _ANSI.sub("", text.replace("\r\n", "\n"))
    out = []
    for line in text.splitlines():
        line = _CONTROL.sub("", line).rstrip()
        if len(line) > MAX_LINE:
            line = line[:MAX_LINE] + " [...]"
        # numpy's "compiled using NumPy 1.x" notice prints the header and the first frame on one line.
        at = line.find(_HEADER)
        if at >= 0 and line[at + len(_HEADER):].strip():
            out.append(line[: at + len(_HEADER)])
            line = line[at + len(_HEADER):]
        out.append(line)
    return out


# --- data -----------------------------------------------------------------------------------------


@dataclass
class Frame:
    """One `File "...", line N, in func` entry, innermost last."""

    file: str
    line: Optional[int]
    function: str = ""
    code: str = ""
    qualname: str = ""  # Class.method when known, else the function name
    qualname_source: str = ""  # how the class was found: pytest locals, source file, ...
    self_class: str = ""  # pytest --tb=long shows `self = <module.Class object at ...>`

    @property
    def kind(self) -> str:
        return frame_kind(self.file)

    @property
    def display_name(self) -> str:
        return self.qualname or self.function

    def to_dict(self) -> Dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "function": self.function,
            "qualname": self.display_name,
            "code": self.code,
            "kind": self.kind,
        }


@dataclass
class ExceptionRecord:
    """One link of an exception chain: its frames and the exception that ended them."""

    frames: List[Frame] = field(default_factory=list)
    exception_type: str = ""  # as printed, e.g. "huggingface_hub.errors.GatedRepoError"
    message: str = ""
    relation: str = ""  # how it follows the previous link: "cause", "context" or ""
    log_line: Optional[int] = None  # 1-based line of the exception line in the log
    truncated: bool = False  # frames without an exception line, or an exception without header

    @property
    def short_type(self) -> str:
        return self.exception_type.rsplit(".", 1)[-1]

    @property
    def text(self) -> str:
        """`Type: message` on one line, whitespace collapsed: what signatures are matched against."""
        head = self.exception_type or ""
        msg = " ".join(self.message.split())
        return f"{head}: {msg}" if msg else head

    def to_dict(self) -> Dict[str, Any]:
        return {
            "exception_type": self.exception_type,
            "message": self.message,
            "relation": self.relation,
            "log_line": self.log_line,
            "truncated": self.truncated,
            "frames": [f.to_dict() for f in self.frames],
        }


@dataclass
class Traceback:
    """One printed traceback: a chain of exceptions, the one raised last at the end."""

    links: List[ExceptionRecord] = field(default_factory=list)
    start_line: int = 0  # 1-based, in the log
    end_line: int = 0
    fmt: str = "python"  # python | pytest | bare (an exception line without frames)
    truncated: bool = False

    @property
    def final(self) -> ExceptionRecord:
        for link in reversed(self.links):
            if link.exception_type:
                return link
        return self.links[-1]

    def frames(self) -> List[Frame]:
        """All frames, outermost first, of the link that ends in the final exception."""
        return list(self.final.frames)

    def innermost(self, kind: str) -> Optional[Frame]:
        """Innermost frame of `kind` ("user" or "library"), searching the final link first."""
        for link in [self.final] + [l for l in reversed(self.links) if l is not self.final]:
            for frame in reversed(link.frames):
                if frame.kind == kind:
                    return frame
        return None

    def to_dict(self) -> Dict[str, Any]:
        return {
            "format": self.fmt,
            "start_line": self.start_line,
            "end_line": self.end_line,
            "truncated": self.truncated,
            "links": [l.to_dict() for l in self.links],
        }


@dataclass
class LogWarning:
    """A `warnings` line: `path:12: UserWarning: message`."""

    category: str
    message: str
    file: str
    line: int
    log_line: int

    @property
    def text(self) -> str:
        return f"{self.category}: {self.message}"

    def to_dict(self) -> Dict[str, Any]:
        return {"category": self.category, "message": self.message, "file": self.file, "line": self.line,
                "log_line": self.log_line}


@dataclass
class ParsedLog:
    lines: List[str]
    tracebacks: List[Traceback] = field(default_factory=list)
    warnings: List[LogWarning] = field(default_factory=list)

    @property
    def primary(self) -> Optional[Traceback]:
        """The failure the log ends with: the last traceback with frames, else the last bare error."""
        with_frames = [t for t in self.tracebacks if t.fmt != "bare"]
        if with_frames:
            return with_frames[-1]
        return self.tracebacks[-1] if self.tracebacks else None

    @property
    def has_traceback(self) -> bool:
        return any(t.fmt != "bare" for t in self.tracebacks)

    def exceptions(self) -> List[Tuple[Traceback, ExceptionRecord]]:
        return [(t, link) for t in self.tracebacks for link in t.links if link.exception_type]

    def to_dict(self) -> Dict[str, Any]:
        return {
            "lines": len(self.lines),
            "tracebacks": [t.to_dict() for t in self.tracebacks],
            "warnings": [w.to_dict() for w in self.warnings],
        }


# --- frame classification --------------------------------------------------------------------------

# The model code people deploy is often pip-installed (stable-diffusion-sdkit puts `ldm` into
# site-packages), but it is still the code whose line the report must point at.
MODEL_PACKAGES = ("ldm", "sgm", "scripts")
_LIB_DIRS = re.compile(r"[/\\](?:site|dist)-packages[/\\]", re.I)
_STDLIB = re.compile(r"[/\\]lib[/\\]python\d(?:\.\d+)?[/\\](?!site-packages|dist-packages)[^/\\]+", re.I)
_WIN_STDLIB = re.compile(r"^[A-Za-z]:\\.*\\Lib\\(?!site-packages)[^\\]+", re.I)


def frame_kind(path: str) -> str:
    """`user`, `library` (third-party), `stdlib` or `internal` (`<frozen ...>`, `<string>`)."""
    if path.startswith("<") and path.endswith(">"):
        return "internal" if path.startswith("<frozen") else "user"
    m = _LIB_DIRS.search(path)
    if m:
        rest = re.split(r"[/\\]", path[m.end():], maxsplit=1)[0]
        return "user" if rest in MODEL_PACKAGES else "library"
    if _STDLIB.search(path) or _WIN_STDLIB.search(path):
        return "stdlib"
    return "user"


# --- prefixes ---------------------------------------------------------------------------------------

# Pieces a logging setup puts before the message; stripped one after the other from a line start.
_PREFIX_PIECES = [
    re.compile(r"^[\w.-]+(?:[-_]\d+)?\s+\|\s?"),  # docker compose: "app-1  | "
    re.compile(r"^\[(?:pod|container)/[^\]]+\]\s"),  # kubectl logs --prefix
    re.compile(r"^\[?\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?\]?\s*"),
    re.compile(r"^\[?\d{2}:\d{2}:\d{2}(?:[.,]\d+)?\]?\s+"),
    re.compile(r"^[A-Z][a-z]{2}\s+\d{1,2}\s+\d{2}:\d{2}:\d{2}\s+\S+\s+[\w./-]+(?:\[\d+\])?:\s"),  # syslog
    re.compile(r"^\[?(?:DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL)\]?(?:\s*[:|-]\s*|\s+)"),
    re.compile(r"^(?:DEBUG|INFO|WARNING|ERROR|CRITICAL):[\w.]*:"),  # logging.basicConfig default
    re.compile(r"^(?:stdout|stderr)\s*[|:]\s?"),
]
_GROUP_HEADER = "Exception Group Traceback (most recent call last):"
_CHAIN = {
    "The above exception was the direct cause of the following exception:": "cause",
    "During handling of the above exception, another exception occurred:": "context",
}


def _shape(text: str) -> str:
    return re.sub(r"\d", "0", text)


def strip_known_prefix(line: str) -> str:
    """Remove log-record prefixes (container, timestamp, level) from the start of `line`."""
    changed = True
    while changed:
        changed = False
        for pat in _PREFIX_PIECES:
            m = pat.match(line)
            if m and m.end() > 0:
                line = line[m.end():]
                changed = True
    return line


class _Prefixer:
    """Strips the prefix the traceback's header line had from the lines that follow it.

    A fixed-width prefix (same shape once digits are ignored, e.g. a timestamp) is cut by width;
    otherwise known prefix pieces are stripped; lines without a prefix (logging.exception prints
    only the first line with one) pass unchanged.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.shape = _shape(prefix)

    def __call__(self, line: str) -> str:
        return self.split(line)[0]

    def split(self, line: str) -> Tuple[str, bool]:
        """(line without prefix, whether it carried the header's own prefix)."""
        if not self.prefix:
            return line, True
        if _shape(line[: len(self.prefix)]) == self.shape:
            return line[len(self.prefix):], True
        return strip_known_prefix(line), False


# --- line patterns ----------------------------------------------------------------------------------

_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+)(?:, in (?P<func>.+))?\s*$')
_CARET = re.compile(r"^\s*[\^~]+[\s\^~]*$")
_REPEAT = re.compile(r"^\s*\[Previous line repeated \d+ more times?\]\s*$")
_GROUP_MARK = re.compile(r"^(?:\s*[+|]\s?|\s*\+[-+ \d.]*(?:\s|$))")
_EXC_TYPE = r"(?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*"
_EXC_LINE = re.compile(rf"^(?P<type>{_EXC_TYPE})(?::\s?(?P<msg>.*))?$")
# A bare error line anywhere in a log: needs an exception-looking name and a message.
_BARE_EXC = re.compile(
    r"^(?P<type>(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Exit|Interrupt))"
    r": (?P<msg>\S.*)$"
)
_WARNING = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?P<cat>(?:[\w.]+\.)?\w*Warning): (?P<msg>.*)$")
_PYTEST_SECTION = re.compile(r"^_{3,} .+ _{3,}$")
_PYTEST_SEP = re.compile(r"^(?:_ )+_\s*$")
_PYTEST_RULE = re.compile(r"^={3,}.*={3,}$|^={5,}$")
_PYTEST_LOC = re.compile(r"^(?P<file>(?:[A-Za-z]:\\)?[^\s:][^:]*?\.py[cwx]?|<[^>]+>):(?P<line>\d+):(?: (?P<rest>.*))?$")
_PYTEST_E = re.compile(r"^E(?: +|$)(?P<text>.*)$")
_PYTEST_SELF = re.compile(r"^self = <(?P<cls>[\w.]+) object at 0x[0-9a-fA-F]+>")
_PYTEST_DEF = re.compile(r"^\s*(?:async\s+)?def (?P<name>\w+)\s*\(")
_FENCE = re.compile(r"^\s*(?:```|~~~)")


def _looks_like_exception_type(name: str) -> bool:
    """Exception classes are CamelCase (`OSError`, `errors.GatedRepoError`); log words are not."""
    last = name.rsplit(".", 1)[-1]
    return bool(last) and (last[0].isupper() or last[0] == "_")


def _is_log_record_start(line: str) -> bool:
    """A line that starts a new log record (timestamp or level prefix): ends an exception message."""
    return strip_known_prefix(line) != line


# --- the parser -------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, lines: List[str]) -> None:
        self.lines = lines
        self.tracebacks: List[Traceback] = []
        self.warnings: List[LogWarning] = []
        self.consumed = [False] * len(lines)

    # Python's own format --------------------------------------------------------------------------

    def _parse_python(self, start: int, prefix: str, group: bool, truncated_start: bool = False) -> int:
        """Parse a chain starting at line `start` (its header, or its first frame when truncated)."""
        strip = _Prefixer(prefix)
        tb = Traceback(start_line=start + 1, fmt="python", truncated=truncated_start)
        link = ExceptionRecord(truncated=truncated_start)
        i = start if truncated_start else start + 1
        n = len(self.lines)

        def text_at(k: int) -> str:
            t = strip(self.lines[k])
            if group:
                t = _GROUP_MARK.sub("", t, count=1)
            return t

        while i < n:
            line = text_at(i)
            fm = _FRAME.match(line)
            if fm:
                frame = Frame(file=fm.group("file"), line=int(fm.group("line")), function=(fm.group("func") or "").strip())
                i += 1
                # Source lines follow, indented deeper; skip carets (3.11+) and anything else indented.
                while i < n:
                    nxt = text_at(i)
                    if _FRAME.match(nxt) or not nxt.startswith(" ") or _REPEAT.match(nxt):
                        break
                    if not frame.code and not _CARET.match(nxt) and nxt.strip():
                        frame.code = nxt.strip()  # the first source line; carets and the rest skipped
                    i += 1
                link.frames.append(frame)
                continue
            if _REPEAT.match(line) or (not line.strip() and link.frames and not link.exception_type):
                i += 1
                continue
            if line.strip() in (_HEADER, _GROUP_HEADER) and link.frames == [] and not link.exception_type:
                i += 1
                continue
            stripped = line.strip()
            if stripped in _CHAIN or (stripped.startswith("+") and group):
                i += 1
                continue
            m = _EXC_LINE.match(line)
            if m and line and not line.startswith(" ") and _looks_like_exception_type(m.group("type")):
                link.exception_type = m.group("type")
                msg_lines = [m.group("msg") or ""]
                link.log_line = i + 1
                i += 1
                i = self._message_continuation(i, text_at, msg_lines, prefix)
                link.message = "\n".join(msg_lines).strip("\n")
                tb.links.append(link)
                # A chain marker (after optional blank lines) continues the same traceback.
                j = i
                while j < n and not text_at(j).strip():
                    j += 1
                if j < n and text_at(j).strip() in _CHAIN:
                    relation = _CHAIN[text_at(j).strip()]
                    j += 1
                    while j < n and not text_at(j).strip():
                        j += 1
                    if j < n and text_at(j).strip() in (_HEADER, _GROUP_HEADER):
                        link = ExceptionRecord(relation=relation)
                        i = j + 1
                        continue
                    link = ExceptionRecord(relation=relation, truncated=True)
                    i = j
                    continue
                break
            # Anything else ends the traceback: the log was cut before the exception line.
            break
        if link.frames and all(link is not l for l in tb.links):
            link.truncated = True
            tb.links.append(link)
            tb.truncated = True
        if not tb.links:
            return start + 1
        tb.end_line = i
        for k in range(start, min(i, n)):
            self.consumed[k] = True
        self.tracebacks.append(tb)
        return max(i, start + 1)

    def _message_continuation(self, i: int, text_at: Callable[[int], str], msg_lines: List[str], prefix: str) -> int:
        """Append the lines of a multi-line exception message; return the index after it."""
        n = len(self.lines)
        blank_run = 0
        while i < n and len(msg_lines) < MAX_MESSAGE_LINES:
            raw = self.lines[i]
            line = text_at(i)
            s = line.strip()
            if s in _CHAIN or s in (_HEADER, _GROUP_HEADER) or _HEADER in raw:
                break
            if _FENCE.match(line) or _PYTEST_RULE.match(s) or _PYTEST_SECTION.match(s):
                break
            if _FRAME.match(line) or _WARNING.match(line):
                break
            if not s:
                blank_run += 1
                if blank_run >= 2:
                    break
                # A blank line then a chain marker ends the message; a blank line inside a
                # message (huggingface_hub errors have them) does not.
                j = i + 1
                if j >= n or text_at(j).strip() in _CHAIN or not text_at(j).strip():
                    break
                msg_lines.append("")
                i += 1
                continue
            blank_run = 0
            # The next log record starts: a line with a prefix of another shape than the
            # traceback's own (log shippers prefix every line alike; a logger prefixes a record).
            _, same_prefix = _Prefixer(prefix).split(raw)
            if (prefix and not same_prefix) or (not prefix and _is_log_record_start(raw)):
                break
            if prefix and _is_log_record_start(line):
                break
            msg_lines.append(line)
            i += 1
        while msg_lines and not msg_lines[-1].strip():
            msg_lines.pop()
        return i

    # pytest's formats ----------------------------------------------------------------------------

    def _parse_pytest(self, start: int) -> int:
        """Parse one pytest failure section (from its `___ name ___` header or a fragment)."""
        n = len(self.lines)
        tb = Traceback(start_line=start + 1, fmt="pytest")
        link = ExceptionRecord()
        pending_code = ""
        pending_def = ""
        pending_self = ""
        e_lines: List[str] = []
        i = start + 1 if _PYTEST_SECTION.match(self.lines[start].strip()) else start
        last_frame_waiting_code: Optional[Frame] = None

        def flush_e() -> None:
            nonlocal e_lines
            if not e_lines:
                return
            indent = min((len(l) - len(l.lstrip(" ")) for l in e_lines if l.strip()), default=0)
            texts = [l[indent:] for l in e_lines]
            m = _EXC_LINE.match(texts[0]) if texts else None
            if m and _looks_like_exception_type(m.group("type")):
                link.exception_type = m.group("type")
                link.message = "\n".join([m.group("msg") or ""] + texts[1:]).strip("\n")
            e_lines = []

        while i < n:
            raw = self.lines[i]
            line = strip_known_prefix(raw) if not raw.startswith((" ", "E", ">")) else raw
            s = line.strip()
            if _PYTEST_SECTION.match(s) and i > start or _PYTEST_RULE.match(s):
                break
            if _HEADER in line:
                break  # --tb=native: Python's own format follows; let that parser take it
            if s in _CHAIN:
                flush_e()
                if link.exception_type or link.frames:
                    tb.links.append(link)
                link = ExceptionRecord(relation=_CHAIN[s])
                pending_code = pending_def = pending_self = ""
                last_frame_waiting_code = None
                i += 1
                continue
            em = _PYTEST_E.match(line)
            if em:
                e_lines.append(em.group("text"))
                last_frame_waiting_code = None
                i += 1
                continue
            loc = _PYTEST_LOC.match(line)
            if loc and not _WARNING.match(line):
                flush_e()
                rest = (loc.group("rest") or "").strip()
                frame = Frame(file=loc.group("file"), line=int(loc.group("line")))
                if rest.startswith("in "):  # short format: the code comes on the next line
                    frame.function = rest[3:].strip()
                    last_frame_waiting_code = frame
                else:  # long format: the code (">" line) and def came before
                    frame.function = pending_def
                    frame.code = pending_code
                    frame.self_class = pending_self
                    if rest:
                        m = _EXC_LINE.match(rest)
                        if m and _looks_like_exception_type(m.group("type")):
                            if not link.exception_type:
                                link.exception_type = m.group("type")
                            if m.group("msg") and not link.message:
                                link.message = m.group("msg")  # --tb=line
                link.frames.append(frame)
                pending_code = pending_def = pending_self = ""
                i += 1
                continue
            if _PYTEST_SEP.match(s) or not s:
                last_frame_waiting_code = None  # the short entry ended; a long one may follow
                i += 1
                continue
            sm = _PYTEST_SELF.match(line)
            if sm:
                pending_self = sm.group("cls").rsplit(".", 1)[-1]
                i += 1
                continue
            if line.startswith(">"):
                pending_code = line[1:].strip()
                i += 1
                continue
            if last_frame_waiting_code is not None and line.startswith("    ") and s:
                if not _CARET.match(line) and not last_frame_waiting_code.code:
                    last_frame_waiting_code.code = s
                i += 1
                continue
            dm = _PYTEST_DEF.match(line)
            if dm and line.startswith("    ") and not pending_def:
                pending_def = dm.group("name")
            i += 1
        flush_e()
        if link.exception_type or link.frames:
            tb.links.append(link)
        if not tb.links or not any(l.exception_type or l.frames for l in tb.links):
            return start + 1
        tb.end_line = i
        for k in range(start, min(i, n)):
            self.consumed[k] = True
        self.tracebacks.append(tb)
        return max(i, start + 1)

    # driver ----------------------------------------------------------------------------------------

    def run(self) -> None:
        n = len(self.lines)
        i = 0
        in_pytest_failures = False
        while i < n:
            raw = self.lines[i]
            if _GROUP_HEADER in raw:
                i = self._parse_python(i, raw[: raw.index(_GROUP_HEADER)].rstrip("+| "), group=True)
                continue
            if _HEADER in raw:
                prefix = raw[: raw.index(_HEADER)]
                i = self._parse_python(i, prefix, group=False)
                continue
            s = raw.strip()
            if _PYTEST_RULE.match(s):
                in_pytest_failures = " FAILURES " in s or " ERRORS " in s
                i += 1
                continue
            if _PYTEST_SECTION.match(s):
                nxt = self._next_nonblank(i + 1)
                if nxt is not None and _HEADER in self.lines[nxt]:
                    i += 1  # --tb=native section: Python's format follows
                    continue
                i = self._parse_pytest(i)
                continue
            body = strip_known_prefix(raw)
            if _FRAME.match(body):  # a traceback whose header was cut off
                i = self._parse_python(i, raw[: len(raw) - len(body)], group=False, truncated_start=True)
                continue
            loc = _PYTEST_LOC.match(body)
            if (loc and (loc.group("rest") or "").startswith("in ")) or (
                in_pytest_failures and _PYTEST_E.match(raw)
            ) or (_PYTEST_E.match(raw) and _BARE_EXC.match(_PYTEST_E.match(raw).group("text").strip())) or (
                in_pytest_failures and loc and _is_exception_rest(loc.group("rest"))
            ):  # the last: pytest < 9's --tb=line prints only `file:line: Type: message`
                i = self._parse_pytest(i)
                continue
            wm = _WARNING.match(body)
            if wm:
                self.warnings.append(LogWarning(wm.group("cat"), wm.group("msg").strip(), wm.group("file"),
                                                int(wm.group("line")), i + 1))
                self.consumed[i] = True
                i += 1
                continue
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
        n = len(self.lines)
        seen = set()
        i = 0
        while i < n:
            if self.consumed[i]:
                i += 1
                continue
            body = strip_known_prefix(self.lines[i]).strip()
            m = _BARE_EXC.match(body)
            if not m or _WARNING.match(body) or m.group("type").endswith("Warning"):
                i += 1
                continue
            msg_lines = [m.group("msg")]
            start = i
            i += 1
            i = self._message_continuation(i, lambda k: self.lines[k], msg_lines, "")
            record = ExceptionRecord(exception_type=m.group("type"), message="\n".join(msg_lines).strip(),
                                     log_line=start + 1)
            key = record.text
            if key in seen:
                continue
            seen.add(key)
            self.tracebacks.append(Traceback(links=[record], start_line=start + 1, end_line=i, fmt="bare"))
        self.tracebacks.sort(key=lambda t: t.start_line)


def _is_exception_rest(rest: Optional[str]) -> bool:
    m = _EXC_LINE.match((rest or "").strip())
    return bool(m and _looks_like_exception_type(m.group("type")))


def parse_log(text: str) -> ParsedLog:
    """Every traceback, bare error line and warning in `text`, in log order."""
    lines = clean_lines(text)
    parser = _Parser(lines)
    parser.run()
    return ParsedLog(lines=lines, tracebacks=parser.tracebacks, warnings=parser.warnings)


# --- which class a method belongs to --------------------------------------------------------------


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
