"""Headless Chromium for tests: dump the DOM after scripts ran, and take screenshots.

Uses Debian's `chromium` (installed by .ci/run); tests skip with the reason where it is absent.
The flags keep it off the network (this machine's network is closed; without them Chromium keeps
trying Google's hosts).

`Browser` is one Chromium for many pages, driven over the DevTools protocol on a pipe
(`--remote-debugging-pipe`: commands on its fd 3, replies on its fd 4, each a JSON text ended by a
NUL byte; https://chromedevtools.github.io/devtools-protocol/). Each page opens in its own browser
context (no storage shared with the pages before it) and is read the way `--dump-dom` and
`--screenshot` read it: after a virtual-time budget (`Emulation.setVirtualTimePolicy`), the DOM as
`document.documentElement.outerHTML`, the screenshot at the window size given. `measure_layout`
keeps a Chromium of its own: it measures a real `--window-size` window, whose browser chrome the
DevTools windows do not have.
"""

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--hide-scrollbars"]

_DOM = ("(document.doctype ? new XMLSerializer().serializeToString(document.doctype) + '\\n' : '')"
        " + document.documentElement.outerHTML")


def chromium_binary():
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _binary():
    binary = chromium_binary()
    if binary is None:
        pytest.skip("Chromium is not installed (Debian package `chromium`)")
    return binary


def _run(args, profile: Path, timeout=90):
    binary = _binary()
    profile.mkdir(parents=True, exist_ok=True)
    return subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=timeout)


class Browser:
    """One headless Chromium; `close()` ends it."""

    def __init__(self, profile: Path, timeout: float = 90) -> None:
        binary = _binary()
        profile.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self._log = tempfile.TemporaryFile()
        # The shell hands our pipes to Chromium as fds 3 and 4 (no preexec_fn: pytest-xdist runs threads).
        self._proc = subprocess.Popen(
            ["sh", "-c", 'exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>/dev/null', binary, *FLAGS,
             f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log)
        self._buffer = b""
        self._last_id = 0
        self._events = []

    # ------------------------------------------------------------ the protocol

    def _log_tail(self) -> str:
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-2000:]

    def _message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready = select.select([self._proc.stdout], [], [], max(left, 0))[0] if left > 0 else []
            if not ready:
                raise AssertionError(f"Chromium did not answer in {self.timeout}s: {self._log_tail()}")
            chunk = os.read(self._proc.stdout.fileno(), 1 << 16)
            if not chunk:
                raise AssertionError(f"Chromium exited with {self._proc.wait()}: {self._log_tail()}")
            self._buffer += chunk
        text, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(text)

    def call(self, method: str, params=None, session=None) -> dict:
        self._last_id += 1
        message = {"id": self._last_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        self._proc.stdin.write(json.dumps(message).encode() + b"\0")
        self._proc.stdin.flush()
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._message(deadline)
            if reply.get("id") == self._last_id:
                assert "error" not in reply, (method, reply["error"], self._log_tail())
                return reply.get("result", {})
            self._events.append(reply)

    def wait_for(self, event: str, session: str) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            for i, message in enumerate(self._events):
                if message.get("method") == event and message.get("sessionId") == session:
                    return self._events.pop(i)
            self._events.append(self._message(deadline))

    # ------------------------------------------------------------ pages

    def render(self, page: Path, budget_ms: int = 3000, size=None, dom: bool = True, png=None):
        """The DOM of `page` (None when not asked) after `budget_ms` of virtual time; with `png`, a
        screenshot of the window at `size` ("W,H") written there."""
        context = self.call("Target.createBrowserContext")["browserContextId"]
        target = self.call("Target.createTarget", {"url": "about:blank", "browserContextId": context})["targetId"]
        try:
            session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            if size is not None:
                width, height = (int(n) for n in size.split(","))
                self.call("Emulation.setDeviceMetricsOverride",
                          {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session)
            self.call("Emulation.setVirtualTimePolicy", {"policy": "pause"}, session)
            self.call("Page.navigate", {"url": page.resolve().as_uri()}, session)
            self.call("Emulation.setVirtualTimePolicy", {"policy": "pauseIfNetworkFetchesPending",
                                                         "budget": budget_ms}, session)
            self.wait_for("Emulation.virtualTimeBudgetExpired", session)
            text = None
            if dom:
                text = self.call("Runtime.evaluate", {"expression": _DOM, "returnByValue": True},
                                 session)["result"]["value"]
            if png is not None:
                data = self.call("Page.captureScreenshot", {"format": "png"}, session)["data"]
                Path(png).write_bytes(base64.b64decode(data))
            return text
        finally:
            self.call("Target.closeTarget", {"targetId": target})
            self.call("Target.disposeBrowserContext", {"browserContextId": context})

    def close(self) -> None:
        try:
            self.call("Browser.close")
            self._proc.wait(timeout=30)
        except (AssertionError, OSError, subprocess.TimeoutExpired):
            self._proc.kill()
            self._proc.wait()
        finally:
            self._proc.stdin.close()
            self._proc.stdout.close()
            self._log.close()


def dump_dom(page: Path, browser: Browser) -> str:
    """The DOM as serialised after the page's scripts (if any) ran."""
    return browser.render(page, budget_ms=3000)


def screenshot(page: Path, png: Path, browser: Browser, size="1280,2400") -> Path:
    browser.render(page, budget_ms=3000, size=size, dom=False, png=png)
    assert png.is_file() and png.stat().st_size > 1000, png
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
