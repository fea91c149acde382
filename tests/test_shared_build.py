"""tests/shared_build.py: a build shared by the processes of one pytest run happens once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import shared_build

ROOT = Path(__file__).resolve().parents[1]

WORKER = r"""
import json, sys
from pathlib import Path
from tests.shared_build import build_once

class Factory:  # what build_once reads of pytest's tmp_path_factory
    def getbasetemp(self):
        return Path(sys.argv[1])

def build(folder):
    with open(sys.argv[2], "a") as log:
        log.write("built\n")
    (folder / "made.txt").write_text("x")
    return {"folder": str(folder), "by": sys.argv[1]}

print(json.dumps(build_once(Factory(), "thing", build)))
"""


class Factory:
    def __init__(self, base: Path) -> None:
        self.base = base

    def getbasetemp(self) -> Path:
        return self.base


def test_xdist_workers_of_one_run_build_once_and_share_the_result(tmp_path):
    log = tmp_path / "builds.log"
    workers = []
    for name in ("gw0", "gw1", "gw2"):
        env = dict(os.environ, PYTEST_XDIST_WORKER=name, PYTHONPATH=str(ROOT))
        workers.append(subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path / ("popen-" + name)), str(log)],
                                        env=env, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True))
    answers = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        answers.append(json.loads(out.strip().splitlines()[-1]))
    assert log.read_text().splitlines() == ["built"]
    assert len({json.dumps(a, sort_keys=True) for a in answers}) == 1  # everyone got the builder's result
    assert answers[0]["folder"] == str(tmp_path / "thing") and (tmp_path / "thing" / "made.txt").exists()


def test_without_xdist_the_build_goes_into_the_runs_own_basetemp(tmp_path, monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.setattr(shared_build, "_MEMO", {})
    calls = []
    result = shared_build.build_once(Factory(tmp_path), "alone", lambda folder: calls.append(folder) or [str(folder)])
    again = shared_build.build_once(Factory(tmp_path), "alone", lambda folder: calls.append(folder) or ["twice"])
    assert result == again == [str(tmp_path / "alone")] and calls == [tmp_path / "alone"]


def test_a_failed_build_leaves_no_result_and_the_next_caller_builds_again(tmp_path, monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.setattr(shared_build, "_MEMO", {})

    def broken(folder):
        (folder / "half-written").write_text("x")
        raise RuntimeError("the build failed")

    with pytest.raises(RuntimeError):
        shared_build.build_once(Factory(tmp_path), "flaky", broken)
    assert not (tmp_path / "flaky.json").exists()
    result = shared_build.build_once(Factory(tmp_path), "flaky", lambda folder: sorted(os.listdir(str(folder))))
    assert result == []  # a clean folder: the failed build's leftovers are gone


def test_the_exclusive_create_lock_is_released_after_the_block(tmp_path, monkeypatch):
    """The lock used where fcntl does not exist (Windows)."""
    monkeypatch.setitem(sys.modules, "fcntl", None)  # `import fcntl` raises ImportError
    lock = tmp_path / "x.lock"
    with shared_build.file_lock(lock):
        assert lock.exists()
    assert not lock.exists()
    with shared_build.file_lock(lock):  # taken again
        pass
