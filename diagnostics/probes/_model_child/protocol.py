"""The child's event protocol: one line `@@ldm-diagnostics@@ {json}` per event on the real stdout.

Events, in the order a run writes them:

  start   {"pid", "python"}
  begin   {"stage"}                       a stage starts
  end     {"stage", "data"}               it finished; `data` is what the stage measured
  skip    {"stage", "reason"}             it was not run, and why
  error   {"stage", "seconds", "error"}   it failed; `error` has `kind`, `type`, `message` (+ traceback)
  done    {}                              the child reached its end (a killed child never writes it)
  layout  {"ok", "format", "tensors", "extras" | "error"}   the answer of `layout CKPT`

Every event object carries its name under "event". The line starts with a newline so an event is
never glued to what the user's code printed without one. `parse_event_line` is the reading side
(the parent, and anything that follows a run live).
"""

from __future__ import annotations

import json
import sys
import traceback

MARK = "@@ldm-diagnostics@@ "
TRACEBACK_KEPT = 20000  # characters; longer ones keep their head and (most of) their tail
VERSIONED = ("torch", "pytorch_lightning", "transformers", "huggingface_hub", "open_clip", "omegaconf", "xformers")


def emit(event, **data):
    """Write one event line to the real stdout (the user's code may have replaced sys.stdout)."""
    data["event"] = event
    out = sys.__stdout__
    out.write("\n" + MARK + json.dumps(data, default=str) + "\n")
    out.flush()


def parse_event_line(line):
    """The event object of one stdout line, or None when the line is not a well-formed event."""
    if not line.startswith(MARK):
        return None
    try:
        event = json.loads(line[len(MARK):])
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


class StageError(Exception):
    """A stage failed in a way we describe ourselves (no user traceback)."""

    def __init__(self, kind, message, **extra):
        Exception.__init__(self, message)
        self.kind = kind
        self.extra = extra

    def as_error(self, **fields):
        """The `error` object of an event for this failure."""
        error = {"kind": self.kind}
        error.update(fields)
        error["message"] = str(self)
        error.update(self.extra)
        return error


def loaded_versions():
    """Versions of the key packages as imported here (the path may hold other copies than pip's metadata says)."""
    versions = {}
    for name in VERSIONED:
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = str(getattr(module, "__version__", None) or "unknown")
    return versions


def error_info(exc):
    """The `error` object for an exception raised by the user's code (call it inside the `except`)."""
    text = traceback.format_exc()
    if len(text) > TRACEBACK_KEPT:
        text = text[:4000] + "\n...\n" + text[-15000:]
    frames = traceback.extract_tb(exc.__traceback__)
    last = frames[-1] if frames else None
    return {
        "type": type(exc).__name__,
        "module": type(exc).__module__,
        "message": str(exc)[:4000],
        "traceback": text,
        "where": {"file": last.filename, "line": last.lineno, "function": last.name, "code": last.line} if last else None,
        "versions": loaded_versions(),
    }


def peak_rss():
    """Peak resident memory of this process in bytes, or None where it cannot be read."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def is_oom(exc):
    """Whether an exception means the process ran out of (GPU or host) memory."""
    text = str(exc).lower()
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in text \
        or "can't allocate memory" in text or isinstance(exc, MemoryError)
