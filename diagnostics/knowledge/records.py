"""What a parsed log holds: tracebacks (chains of exception records with their frames), bare
error lines and warnings; and the line patterns every parser shares. Standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

CHAIN = {
    "The above exception was the direct cause of the following exception:": "cause",
    "During handling of the above exception, another exception occurred:": "context",
}
EXC_TYPE = r"(?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*"
EXC_LINE = re.compile(rf"^(?P<type>{EXC_TYPE})(?::\s?(?P<msg>.*))?$")
# The ^^^^ / ~~~~ markers Python 3.11+ prints under a frame's code line (both traceback layouts).
CARET = re.compile(r"^\s*[\^~]+[\s\^~]*$")


def looks_like_exception_type(name: str) -> bool:
    """Exception classes are CamelCase (`OSError`, `errors.GatedRepoError`); log words are not."""
    last = name.rsplit(".", 1)[-1]
    return bool(last) and (last[0].isupper() or last[0] == "_")


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
        if not head:
            return msg  # a layout that prints the message without its type (ComfyUI, popups)
        return f"{head}: {msg}" if msg else head

    @property
    def found(self) -> bool:
        """An exception line, or a message a layout printed without its type."""
        return bool(self.exception_type or self.message)

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
            if link.found:
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
    lines: List[str]  # the log's lines, cleaned
    text_lines: List[str] = field(default_factory=list)  # the same with wrapped lines joined
    origins: List[int] = field(default_factory=list)  # 1-based line in `lines` of each text line
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
        return [(t, link) for t in self.tracebacks for link in t.links if link.found]

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
    found = _LIB_DIRS.search(path)
    if found:
        rest = re.split(r"[/\\]", path[found.end():], maxsplit=1)[0]
        return "user" if rest in MODEL_PACKAGES else "library"
    if _STDLIB.search(path) or _WIN_STDLIB.search(path):
        return "stdlib"
    return "user"
