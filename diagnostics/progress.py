"""Live, honest progress for the slow steps (model and tokenizer children, network probes, deep
scan, hashing): what runs now and for how long.

- On a terminal (`LiveProgress`): one line, redrawn in place, shows the running step and its
  elapsed time; when a step that took a second or more ends, the line resolves to its result and
  stays; quicker ones leave nothing behind, so no scroll-back clutter.
- Off a terminal (`PlainProgress`, CI logs): one line when a slow step starts and one when it ends.
- Without a front-end (library use, tests): `NullProgress`, nothing is written.

Probes call the module-level `step(...)`, which goes to the reporter the front-end installed with
`use(...)`; probes never know where (or whether) progress is shown. The model child's stages come
from the child's own events (`run_child`), so the times shown are the ones the report's table has.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional

SLOW_SECONDS = 1.0  # a step at least this long leaves a line on a terminal
_SPINNER = "|/-\\"


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


class Step:
    """One running step. `update` says what it does now; `done` gives the result line."""

    def __init__(self, reporter: "Reporter", label: str, timeout: Optional[float]) -> None:
        self.reporter, self.label, self.timeout = reporter, label, timeout
        self.started = reporter.clock()
        self.detail = ""
        self.result = ""
        self.failed = False
        self.stages: Dict[str, float] = {}  # stage -> seconds, as the child measured them

    @property
    def elapsed(self) -> float:
        return self.reporter.clock() - self.started

    def update(self, detail: str) -> None:
        self.detail = detail
        self.reporter.refresh(self)

    def done(self, result: str, failed: bool = False) -> None:
        self.result, self.failed = result, failed

    def child_event(self, event: Dict[str, Any]) -> None:
        """A stage event of the model child: `begin` shows the stage, `end` records its time."""
        kind, stage = event.get("event"), str(event.get("stage") or "")
        if kind == "begin":
            self.update(f"{stage}...")
        elif kind == "end":
            seconds = _stage_seconds(event.get("data") or {})
            if seconds is not None:
                self.stages[stage] = seconds
        elif kind == "error":
            self.failed = True
            if isinstance(event.get("seconds"), (int, float)):
                self.stages[stage] = float(event["seconds"])
            self.result = f"{stage} failed"

    def bytes_done(self, done: int, total: int, label: str) -> None:
        """The checkpoint readers' callback (done, total, label): bytes hashed or scanned so far."""
        rate = done / max(self.elapsed, 1e-6)
        self.update(f"{label} {_gib(done)} of {_gib(total)} ({rate / 2**20:.0f} MiB/s)")

    def stage_text(self) -> str:
        return ", ".join(f"{name} {secs:.1f} s" for name, secs in self.stages.items())


def _stage_seconds(data: Dict[str, Any]) -> Optional[float]:
    if isinstance(data.get("seconds"), (int, float)):
        return float(data["seconds"])
    parts = [p.get("seconds") for p in (data.get("parts") or {}).values() if isinstance(p, dict)]
    parts = [p for p in parts if isinstance(p, (int, float))]
    return float(sum(parts)) if parts else None


class Reporter:
    """Base: knows the running steps; subclasses decide what to write."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.current: Optional[Step] = None

    @contextlib.contextmanager
    def step(self, label: str, timeout: Optional[float] = None) -> Iterator[Step]:
        step = Step(self, label, timeout)
        outer, self.current = self.current, step
        self.check_steps = getattr(self, "check_steps", 0) + 1
        self.started(step)
        try:
            yield step
        except BaseException:
            step.done(step.result or "interrupted", failed=True)
            raise
        finally:
            self.current = outer
            self.ended(step)

    def started(self, step: Step) -> None:
        pass

    def ended(self, step: Step) -> None:
        pass

    def refresh(self, step: Step) -> None:
        pass

    def check(self, check_id: str) -> None:
        """A check starts (quick ones are shown only on the live line)."""
        self.check_id, self.check_steps = check_id, 0

    def check_done(self, check_id: str, status: str, seconds: float) -> None:
        """A check ended: one that took a second or more without a step of its own gets a line."""
        if seconds >= SLOW_SECONDS and not getattr(self, "check_steps", 0):
            self.line(f"[{'x' if status in ('fail', 'error') else '+'}] check {check_id}: {status} ({seconds:.1f} s)")

    def line(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


class NullProgress(Reporter):
    pass


class BytesProgress:
    """The checkpoint readers' `progress(done, total, label)` callback as steps: one step per label
    ("sha256", "scan"), started on its first call and ended when done reaches total."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.open: Dict[str, Any] = {}

    def __call__(self, done: int, total: int, label: str) -> None:
        if label not in self.open:
            manager = self.reporter.step(f"checkpoint: {label} of {_gib(total)}")
            self.open[label] = (manager, manager.__enter__())
        manager, running = self.open[label]
        running.bytes_done(done, total, label)
        if done >= total:
            del self.open[label]
            manager.__exit__(None, None, None)

    def close(self) -> None:
        for manager, _ in list(self.open.values()):
            manager.__exit__(None, None, None)
        self.open.clear()


def _result_line(step: Step) -> str:
    detail = step.stage_text()
    result = step.result or ("failed" if step.failed else "done")
    parts = [p for p in (result, detail) if p]
    mark = "x" if step.failed else "+"
    return f"[{mark}] {step.label}: {'; '.join(parts)} ({step.elapsed:.1f} s)"


class PlainProgress(Reporter):
    """Off a terminal: a line when a step starts and one when it ends, flushed at once."""

    def __init__(self, write: Callable[[str], None], clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(clock)
        self.write = write

    def started(self, step: Step) -> None:
        limit = f" (timeout {step.timeout:g} s)" if step.timeout else ""
        self.write(f"[ ] {step.label}{limit}...")

    def ended(self, step: Step) -> None:
        self.write(_result_line(step))

    def line(self, text: str) -> None:
        self.write(text)


class LiveProgress(Reporter):
    """On a terminal: one line redrawn in place by a ticker thread; slow steps leave their result."""

    def __init__(self, stream, clock: Callable[[], float] = time.monotonic, interval: float = 0.2) -> None:
        super().__init__(clock)
        self.stream = stream
        self.lock = threading.Lock()
        self.status = ""
        self.ticks = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._tick, args=(interval,), daemon=True)
        self.thread.start()

    def _draw(self, text: str) -> None:
        width = 118
        self.stream.write("\r\x1b[2K" + text[:width])
        self.stream.flush()

    def _line(self) -> str:
        step = self.current
        if step is None:
            return self.status
        limit = f" / timeout {step.timeout:g} s" if step.timeout else ""
        detail = f": {step.detail}" if step.detail else ""
        return f"{_SPINNER[self.ticks % len(_SPINNER)]} {step.label}{detail} {step.elapsed:.0f} s{limit}"

    def _tick(self, interval: float) -> None:
        while not self.stop.wait(interval):
            with self.lock:
                self.ticks += 1
                if self.current is not None:
                    self._draw(self._line())

    def refresh(self, step: Step) -> None:
        with self.lock:
            self._draw(self._line())

    def started(self, step: Step) -> None:
        self.refresh(step)

    def ended(self, step: Step) -> None:
        with self.lock:
            if step.elapsed >= SLOW_SECONDS or step.failed:
                self.stream.write("\r\x1b[2K" + _result_line(step) + "\n")
            self._draw(self._line())

    def line(self, text: str) -> None:
        with self.lock:
            self.stream.write("\r\x1b[2K" + text + "\n")
            self._draw(self._line())

    def check(self, check_id: str) -> None:
        super().check(check_id)
        with self.lock:
            self.status = f"  checking {check_id}..."
            if self.current is None:
                self._draw(self.status)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(1.0)
        with self.lock:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()


_CURRENT: Reporter = NullProgress()


def current() -> Reporter:
    return _CURRENT


@contextlib.contextmanager
def use(reporter: Reporter) -> Iterator[Reporter]:
    """Install `reporter` for the steps run inside the block (the front-end calls this)."""
    global _CURRENT
    outer, _CURRENT = _CURRENT, reporter
    try:
        yield reporter
    finally:
        _CURRENT = outer
        reporter.close()


def step(label: str, timeout: Optional[float] = None):
    """`with progress.step("tokenizer: loading ...", timeout=60) as st: ...; st.done("vocab 49408")`."""
    return _CURRENT.step(label, timeout)


def for_stream(stream=None, enabled: bool = True) -> Reporter:
    """LiveProgress on a terminal, PlainProgress otherwise (NullProgress when disabled)."""
    stream = stream if stream is not None else sys.stderr
    if not enabled:
        return NullProgress()
    if getattr(stream, "isatty", lambda: False)():
        return LiveProgress(stream)

    def write(line: str) -> None:
        stream.write(line + "\n")
        stream.flush()

    return PlainProgress(write)


# ---------------------------------------------------------------------------------------------
# child processes whose lines are read as they come


def run_streaming(argv, timeout: float, env=None, on_line: Optional[Callable[[str], None]] = None):
    """Like `context.run_command` (same result, never raises), but each stdout line reaches
    `on_line` as the child prints it."""
    from .context import CommandResult

    try:
        proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(env) if env is not None else None, stdin=subprocess.DEVNULL,
                                errors="replace")
    except OSError as exc:
        return CommandResult(None, error=f"{type(exc).__name__}: {exc}")
    out: List[str] = []
    err: List[str] = []

    def read_out() -> None:
        for line in proc.stdout:
            out.append(line)
            if on_line is not None:
                try:
                    on_line(line.rstrip("\n"))
                except Exception:  # progress must never break the probe
                    pass

    readers = [threading.Thread(target=read_out, daemon=True),
               threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        for reader in readers:
            reader.join(2.0)
        return CommandResult(None, "".join(out), "".join(err), timed_out=True, error=f"timed out after {timeout:g} s")
    for reader in readers:
        reader.join(5.0)
    return CommandResult(proc.returncode, "".join(out), "".join(err))


def run_child(runner, argv, timeout: float, env, on_event: Callable[[Dict[str, Any]], None], mark: str):
    """Run a child that prints `mark + json` event lines, passing each event to `on_event` as it
    comes (the default runner) or after the run (an injected runner, e.g. in tests)."""
    from .context import run_command

    def on_line(line: str) -> None:
        if line.startswith(mark):
            try:
                on_event(json.loads(line[len(mark):]))
            except ValueError:
                pass

    if runner is run_command:
        return run_streaming(argv, timeout, env, on_line)
    result = runner(argv, timeout, env)
    for line in (result.stdout or "").splitlines():
        on_line(line)
    return result
