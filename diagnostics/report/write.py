"""Writing report files atomically: a reader never sees half a report, a crash leaves the old one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def current_umask() -> int:
    """The process umask (read by setting it, then restoring it at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path, text: str) -> None:
    """Write via a temporary file and a rename. mkstemp creates the file 0600; the report gets the
    mode any new file would get under the user's umask (0644 under umask 022), like pytest-html's."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        try:
            os.fchmod(fd, 0o666 & ~current_umask())
        except (AttributeError, OSError):  # no fchmod on Windows; the mode stays mkstemp's
            pass
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def check_writable_dir(path) -> str:
    """'' when `path` is (or can be created as) a writable directory, else the reason it is not."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create {path}: {exc.strerror or exc}"
    if not path.is_dir():
        return f"{path} is not a directory"
    try:
        fd, tmp = tempfile.mkstemp(prefix=".write-test.", dir=str(path))
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        return f"cannot write in {path}: {exc.strerror or exc}"
    return ""
