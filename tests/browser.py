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


# Measures the page as Chromium laid it out and writes the numbers into the DOM, which --dump-dom
# then shows. Only a copy of the page gets the script (and loses its CSP, which forbids scripts).
_MEASURE = """<script>
function ldmMeasure() {
  var out = {viewport: [window.innerWidth, window.innerHeight], bottoms: {}, hidden: {}};
  MEASURE_BOTTOMS.forEach(function (sel) {
    var el = document.querySelector(sel);
    out.bottoms[sel] = el ? el.getBoundingClientRect().bottom + window.scrollY : null;
  });
  MEASURE_HIDDEN.forEach(function (sel) {
    var els = Array.prototype.slice.call(document.querySelectorAll(sel));
    out.hidden[sel] = [els.length, els.filter(function (e) {
      return e.checkVisibility ? !e.checkVisibility() : e.getClientRects().length === 0;
    }).length];
  });
  document.body.setAttribute('data-layout', JSON.stringify(out));
}
window.addEventListener('load', function () { setTimeout(ldmMeasure, 500); });
</script>"""


def measure_layout(page: Path, profile: Path, bottoms, hidden=(), size="1400,900") -> dict:
    """{"viewport": [w, h], "bottoms": {selector: px from the top of the page},
    "hidden": {selector: [how many, how many not rendered]}} for `page` at `size`."""
    import json
    import re

    text = page.read_text(encoding="utf-8")
    text = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", text)
    script = _MEASURE.replace("MEASURE_BOTTOMS", json.dumps(list(bottoms))).replace("MEASURE_HIDDEN", json.dumps(list(hidden)))
    copy = page.with_name(page.stem + ".measure.html")
    copy.write_text(text.replace("</body>", script + "</body>", 1), encoding="utf-8")
    proc = _run(["--virtual-time-budget=5000", f"--window-size={size}", "--dump-dom", copy.resolve().as_uri()], profile)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r'data-layout="([^"]*)"', proc.stdout)
    assert found, "the measuring script did not run"
    import html

    return json.loads(html.unescape(found.group(1)))
