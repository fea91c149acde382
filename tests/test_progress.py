"""Live progress: what a slow step does and for how long, on a terminal and off one."""

import io
import json
import sys
from pathlib import Path

import pytest

from diagnostics import progress
from diagnostics.context import run_command

MARK = "@@ldm-diagnostics@@ "

# A child that reports stages the way the model child does (begin/end events with its own times).
STAGED_CHILD = r"""
import json, sys, time
MARK = "@@ldm-diagnostics@@ "
def emit(**event):
    print(MARK + json.dumps(event), flush=True)
emit(event="begin", stage="import")
time.sleep(0.2)
emit(event="end", stage="import", data={"seconds": 0.2})
emit(event="begin", stage="smoke")
emit(event="end", stage="smoke", data={"parts": {"unet": {"seconds": 0.25}, "vae": {"seconds": 0.5}}})
emit(event="done")
"""


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_off_a_terminal_a_step_prints_one_line_at_start_and_one_at_end():
    lines, clock = [], FakeClock()
    reporter = progress.PlainProgress(lines.append, clock=clock)
    with progress.use(reporter):
        with progress.step("tokenizer: loading openai/clip-vit-large-patch14", timeout=60) as step:
            clock.now += 2.5
            step.done("vocabulary 49408")
    assert lines == ["[ ] tokenizer: loading openai/clip-vit-large-patch14 (timeout 60 s)...",
                     "[+] tokenizer: loading openai/clip-vit-large-patch14: vocabulary 49408 (2.5 s)"]


def test_stage_times_come_from_the_childs_events_as_they_arrive():
    lines, seen = [], []
    reporter = progress.PlainProgress(lines.append)
    argv = [sys.executable, "-c", STAGED_CHILD]
    with progress.use(reporter):
        with progress.step("model: building it in a child process", timeout=30) as step:
            result = progress.run_child(run_command, argv, 30, None,
                                        lambda ev: (seen.append(ev["event"]), step.child_event(ev)), MARK)
    assert result.returncode == 0 and seen == ["begin", "end", "begin", "end", "done"]
    assert step.stages == {"import": 0.2, "smoke": 0.75}  # the child's numbers, not our clock
    assert lines[0] == "[ ] model: building it in a child process (timeout 30 s)..."
    assert lines[1].startswith("[+] model: building it in a child process: done; import 0.2 s, smoke 0.8 s (")


def test_an_injected_runner_still_feeds_the_events():
    from diagnostics.context import CommandResult

    stdout = MARK + json.dumps({"event": "error", "stage": "instantiate", "seconds": 1.5}) + "\n"
    step = progress.NullProgress().step("model")
    with step as running:
        progress.run_child(lambda argv, timeout, env: CommandResult(1, stdout), ["x"], 5, None,
                           running.child_event, MARK)
    assert running.failed and running.stages == {"instantiate": 1.5} and running.result == "instantiate failed"


def test_streaming_runner_keeps_run_commands_contract():
    assert progress.run_streaming([sys.executable, "-c", "print('a'); import sys; sys.stderr.write('b')"], 30).stdout == "a\n"
    slow = progress.run_streaming([sys.executable, "-c", "import time; time.sleep(30)"], 0.5)
    assert slow.timed_out and slow.returncode is None
    missing = progress.run_streaming(["/nonexistent/binary"], 5)
    assert missing.returncode is None and "FileNotFoundError" in missing.error


class TTY(io.StringIO):
    def isatty(self):
        return True


def test_on_a_terminal_quick_steps_leave_nothing_and_slow_ones_their_result():
    stream, clock = TTY(), FakeClock()
    reporter = progress.LiveProgress(stream, clock=clock, interval=60)
    with progress.use(reporter):
        with progress.step("quick"):
            clock.now += 0.1
        with progress.step("network: DNS, TCP, TLS and HTTP"):
            clock.now += 3.0
    kept = [line.split("\r\x1b[2K")[-1] for line in stream.getvalue().split("\n")]
    assert [line for line in kept if line] == ["[+] network: DNS, TCP, TLS and HTTP: done (3.0 s)"]
    assert isinstance(progress.for_stream(TTY()), progress.LiveProgress)
    assert isinstance(progress.for_stream(io.StringIO()), progress.PlainProgress)
    assert isinstance(progress.for_stream(io.StringIO(), enabled=False), progress.NullProgress)


def test_hashing_progress_is_one_step_per_label_in_gib():
    lines, clock = [], FakeClock()
    bytes_progress = progress.BytesProgress(progress.PlainProgress(lines.append, clock=clock))
    bytes_progress(0, 2 * 2**30, "sha256")
    clock.now += 4
    bytes_progress(2 * 2**30, 2 * 2**30, "sha256")
    assert lines == ["[ ] checkpoint: sha256 of 2.00 GiB...", "[+] checkpoint: sha256 of 2.00 GiB: done (4.0 s)"]


def test_report_off_a_terminal_shows_the_model_build_with_the_tables_stage_times(tmp_path_factory):
    """The real model child (ldm, an SD 1.x config) in the seed scenario: CLIP cannot load. The command
    line's run is shared with tests/test_model_ldm.py, which checks its findings."""
    pytest.importorskip("torch")
    pytest.importorskip("ldm")
    from tests.ldm_factory import seed_report

    run = seed_report(tmp_path_factory)
    assert run["returncode"] == 1, run["stderr"]
    lines = run["stderr"].splitlines()  # stderr is a pipe here: start and end lines, no \r
    assert "\r" not in run["stderr"]
    start = lines.index("[ ] model: building it in a child process (timeout 60 s)...")
    end = next(line for line in lines[start:] if line.startswith(("[+] model:", "[x] model:")))
    facts = json.loads(Path(run["report"]).read_text())["facts"]["model"]
    for stage, data in facts["stages"].items():
        assert f"{stage} {data['seconds']:.1f} s" in end  # the same numbers as the report's table
    assert "[ ] tokenizer: loading openai/clip-vit-large-patch14 in a child process (timeout 60 s)..." in lines
