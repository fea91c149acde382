"""Headless Chromium for tests: dump the DOM after scripts ran, and take screenshots.

Uses Debian's `chromium` (installed by .ci/run); tests skip with the reason where it is absent.
The flags keep it off the network (this machine's network is closed; without them Chromium keeps
trying Google's hosts).
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--hide-scrollbars"]


def chromium_binary():
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _run(args, profile: Path, timeout=90):
    binary = chromium_binary()
    if binary is None:
        pytest.skip("Chromium is not installed (Debian package `chromium`)")
    profile.mkdir(parents=True, exist_ok=True)
    return subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=timeout)


def dump_dom(page: Path, profile: Path) -> str:
    """The DOM as serialised after the page's scripts (if any) ran."""
    proc = _run(["--virtual-time-budget=3000", "--dump-dom", page.resolve().as_uri()], profile)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def screenshot(page: Path, png: Path, profile: Path, size="1280,2400") -> Path:
    proc = _run(["--virtual-time-budget=3000", f"--window-size={size}", f"--screenshot={png}",
                 page.resolve().as_uri()], profile)
    assert proc.returncode == 0 and png.is_file() and png.stat().st_size > 1000, proc.stderr[-2000:]
    return png
