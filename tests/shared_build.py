"""Expensive test inputs (model fixtures, checkpoints, captured logs) built once per pytest run.

A module- or session-scoped fixture runs once per process, so under pytest-xdist every worker that
runs a test needing it would build it again. `build_once` follows pytest-xdist's recipe for that
(https://pytest-xdist.readthedocs.io/en/stable/how-to.html#making-session-scoped-fixtures-execute-only-once):
the workers' base temporary directories share one parent per run, so the first worker to take the
lock there builds into a folder beside it and writes the result as JSON; the others wait on the lock
and read it. Without xdist the folder is in the run's own base temporary directory.

The lock is `fcntl.flock` where the platform has it, else a lock file created with
`O_CREAT | O_EXCL`. A build that raises writes no result: the exception reaches the test, and the
next test that asks builds again.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator

_MEMO: Dict[str, Any] = {}
LOCK_WAIT = 1800.0  # seconds to wait for another worker's O_EXCL lock before giving up


def shared_root(tmp_path_factory) -> Path:
    """The directory all processes of this pytest run share: the workers' basetemp parent under xdist."""
    base = Path(tmp_path_factory.getbasetemp())
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes, held for the `with` block."""
    try:
        import fcntl
    except ImportError:  # Windows
        fcntl = None
    if fcntl is not None:
        with open(str(path), "a+") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    else:
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fd = os.open(str(path), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                break
            except FileExistsError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{path} is still held after {LOCK_WAIT:g} s")
                time.sleep(0.2)
        os.close(fd)
        try:
            yield
        finally:
            os.unlink(str(path))


def build_once(tmp_path_factory, name: str, build: Callable[[Path], Any]) -> Any:
    """`build(folder)` once per pytest run (whichever process asks first); returns its JSON-able result.

    `folder` is an empty directory named `name` in the shared root; what the build writes there stays
    for the whole run, so tests must treat it as read-only.
    """
    root = shared_root(tmp_path_factory)
    key = str(root / name)
    if key in _MEMO:
        return _MEMO[key]
    result_file = root / (name + ".json")
    with file_lock(root / (name + ".lock")):
        if result_file.exists():
            result = json.loads(result_file.read_text(encoding="utf-8"))
        else:
            folder = root / name
            if folder.exists():  # what a failed build left
                shutil.rmtree(str(folder))
            folder.mkdir(parents=True)
            result = build(folder)
            partial = root / (name + ".json.partial")
            partial.write_text(json.dumps(result), encoding="utf-8")
            os.replace(str(partial), str(result_file))
    _MEMO[key] = result
    return result
