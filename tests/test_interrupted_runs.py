"""Interrupted and failing runs: the last complete report survives, an incomplete one is written."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SLOW_CHECKS = '''
import os, time
from pathlib import Path
from diagnostics.findings import Finding, Status
from diagnostics.registry import Check

def _slow(ctx):
    if os.environ.get("SLOW_MARKER"):
        Path(os.environ["SLOW_MARKER"]).write_text("started")
        time.sleep(60)
    return [Finding("env.slow", Status.OK, "slow", "finished")]

def _crash(ctx):
    if os.environ.get("CRASH"):
        raise RuntimeError("the probe fell over")
    return [Finding("env.crashy", Status.OK, "crashy", "fine")]

CHECKS = [Check("env.crashy", "crashy", _crash, reads=("ctx",)), Check("env.slow", "slow", _slow, reads=("ctx",))]
'''

RUNNER = ("import sys, diagnostics.registry as r\n"
          "r.CHECK_MODULES = ('diagnostics.rules.environment', 'extrachecks')\n"
          "from diagnostics.cli import main\nsys.exit(main(sys.argv[1:]))\n")


def _cmd(tmp_path, env_extra=None):
    (tmp_path / "extrachecks.py").write_text(SLOW_CHECKS)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(tmp_path)]), **(env_extra or {}))
    return [sys.executable, "-c", RUNNER, "report", "--out", "out"], env


@pytest.fixture(scope="module")
def complete_out(tmp_path_factory):
    """`out/` of one complete run, made once: each test starts from a copy of it."""
    base = tmp_path_factory.mktemp("complete")
    cmd, env = _cmd(base)
    proc = subprocess.run(cmd, cwd=str(base), env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, 1), proc.stderr
    return base / "out"


def _complete_report(tmp_path, complete_out):
    shutil.copytree(str(complete_out), str(tmp_path / "out"))
    return {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}


@pytest.mark.skipif(os.name == "nt", reason="POSIX signals")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_keeps_the_last_report_and_writes_an_incomplete_one(tmp_path, complete_out, sig):
    before = _complete_report(tmp_path, complete_out)
    marker = tmp_path / "started"
    cmd, env = _cmd(tmp_path, {"SLOW_MARKER": str(marker)})
    proc = subprocess.Popen(cmd, cwd=str(tmp_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Interrupted after" in out and "Traceback" not in err
    after = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir() if ".incomplete." not in p.name}
    assert after == before  # byte for byte
    data = json.loads((tmp_path / "out" / "resolution-report.incomplete.json").read_text())
    assert data["incomplete"] is True
    assert "env.slow" not in [c["check"] for c in data["checks"]]
    md = (tmp_path / "out" / "resolution-report.incomplete.md").read_text(encoding="utf-8")
    assert "INCOMPLETE" in md
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]


def test_a_crashing_check_marks_the_report_incomplete(tmp_path, complete_out):
    before = _complete_report(tmp_path, complete_out)
    cmd, env = _cmd(tmp_path, {"CRASH": "1"})
    proc = subprocess.run(cmd, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, 1)
    assert "env.crashy crashed" in proc.stdout and "Traceback" not in proc.stdout + proc.stderr
    data = json.loads((tmp_path / "out" / "resolution-report.incomplete.json").read_text())
    crash = [f for f in data["findings"] if f["code"] == "env.crashy"][0]
    assert crash["status"] == "error" and "the probe fell over" in crash["summary"]
    assert "env.slow" in [c["check"] for c in data["checks"]]  # the other checks still ran
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir() if ".incomplete." not in p.name} == before
