"""Hostile text in our HTML report and in the pytest-html report is inert in a real browser.

Payloads come through the ways untrusted text reaches a report: finding summaries and evidence
(error logs, checkpoint key names, yaml values) and file paths given on the command line. Each
payload, if it ever ran, would change the page (title, a data attribute); the test asserts that
it did not, that the payload is shown as text, and keeps a screenshot next to the report.
"""

import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.browser import Browser, dump_dom, measure_layout, screenshot

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "<script>document.title='PWNED';document.documentElement.setAttribute('data-pwned','script')</script>"
IMG = "<img src=x onerror=\"document.documentElement.setAttribute('data-pwned','img')\">"
LINK = "<a href=\"javascript:document.documentElement.setAttribute('data-pwned','link')\">click</a>"
PAYLOADS = (SCRIPT, IMG, LINK)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One Chromium for every page of this module."""
    chromium = Browser(tmp_path_factory.mktemp("chromium") / "profile")
    yield chromium
    chromium.close()


class _Elements(HTMLParser):
    """Every element of a serialised DOM with its attributes (script bodies are data, not tags)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.elements = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        self._in_title = tag == "title"

    def handle_data(self, data):
        if self._in_title:
            self.title += data

    def handle_endtag(self, tag):
        self._in_title = False


def assert_inert(dom: str):
    parsed = _Elements()
    parsed.feed(dom)
    assert "PWNED" not in parsed.title
    for tag, attrs in parsed.elements:
        assert "data-pwned" not in attrs, (tag, attrs)
        for name, value in attrs.items():  # no payload became an event handler or a link
            if name.startswith("on") or name in ("href", "src"):
                assert "data-pwned" not in (value or ""), (tag, attrs)
                assert "alert(" not in (value or ""), (tag, attrs)
        assert not (tag == "img" and attrs.get("src") == "x"), (tag, attrs)


FAKE_CHECKS = f"""
from diagnostics.findings import Finding, Status
from diagnostics.registry import Check

CHECKS = [
    Check("ckpt.hostile-keys", "hostile", lambda ctx: [Finding(
        "ckpt.hostile-keys", Status.FAIL, {"Key names " + IMG!r}, {"unexpected key model." + SCRIPT!r},
        evidence={{"keys": [{LINK!r}], "yaml": {{"target": {SCRIPT!r}}}}}, cause={"log said " + IMG!r},
        fix={"see " + LINK!r})], reads=("ctx",)),
]
"""


def test_our_html_report_is_inert_in_chromium(tmp_path, browser):
    (tmp_path / "hostilechecks.py").write_text(FAKE_CHECKS)
    hostile_name = tmp_path / "<img src=x onerror=alert(1)>.ckpt"
    hostile_name.write_bytes(bytes(range(256)))  # binary junk: a bad checkpoint (a text file is a usage error)
    runner = (
        "import sys, diagnostics.registry as r\n"
        "r.CHECK_MODULES = r.CHECK_MODULES + ('hostilechecks',)\n"
        "from diagnostics.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(tmp_path)]))
    proc = subprocess.run([sys.executable, "-c", runner, "report", "--out", "out", "--checkpoint", str(hostile_name)],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    page = tmp_path / "out" / "resolution-report.html"
    dom = dump_dom(page, browser)
    assert_inert(dom)
    assert "Key names &lt;img src=x onerror=" in dom  # shown as text
    assert "&lt;img src=x onerror=alert(1)&gt;.ckpt" in dom
    png = screenshot(page, tmp_path / "out" / "resolution-report.png", browser)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(sys.version_info < (3, 9), reason="pytest-html 4 needs Python 3.9")
def test_pytest_html_report_is_inert_in_chromium(pytester, monkeypatch, browser):
    pytest.importorskip("pytest_html")
    pytester.makepyfile(hostilechecks=FAKE_CHECKS)
    pytester.makeconftest("import diagnostics.registry as r\n"
                          "r.CHECK_MODULES = r.CHECK_MODULES + ('hostilechecks',)\n"
                          "pytest_plugins = ['diagnostics.pytest_plugin']\n")
    pytester.makepyfile(test_hostile="def test_key_names(diag):\n    diag.check('ckpt.hostile-keys')\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(pytester.path)]))
    monkeypatch.setenv("BUILD_URL", IMG)  # pytest-metadata puts CI variables in the Environment table
    monkeypatch.setenv("JENKINS_URL", "http://ci")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--html=reports/", "--self-contained-html")
    assert result.ret == 1
    page = pytester.path / "reports" / "report.html"
    dom = dump_dom(page, browser)
    assert_inert(dom)
    assert "unexpected key model." in dom  # the extras rendered (pytest-html's own JS ran)
    screenshot(page, pytester.path / "reports" / "report.png", browser)


def test_our_html_report_opens_with_status_actions_and_the_area_table(tmp_path, browser):
    """At 1400x900 the action list and the per-area table are on the first screen; skips are collapsed."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), HOME=str(tmp_path), HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "diagnostics", "report", "--out", "out", "--no-progress"],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 1), proc.stderr
    page = tmp_path / "out" / "resolution-report.html"
    layout = measure_layout(page, tmp_path / "profile", bottoms=("ol.todo", "table.areas", "nav.toc"),
                            hidden=(".finding.s-skip", "details.evidence pre"))
    fold = layout["viewport"][1]  # the visible height of a 1400x900 window (less than 900 with browser chrome)
    assert 700 <= fold <= 900, layout
    for selector in ("ol.todo", "table.areas"):
        assert layout["bottoms"][selector] is not None and layout["bottoms"][selector] <= fold, layout
    skipped, not_rendered = layout["hidden"][".finding.s-skip"]
    assert skipped > 0 and not_rendered == skipped, layout  # every skipped check sits in a closed <details>
    evidence, closed = layout["hidden"]["details.evidence pre"]
    assert closed == evidence, layout
    dom = dump_dom(page, browser)
    assert "<details class=\"skipped\" open" not in dom
    screenshot(page, tmp_path / "out" / "first-screen.png", browser, size="1400,900")


@pytest.mark.skipif(sys.version_info < (3, 9), reason="pytest-html 4 needs Python 3.9")
def test_pytest_html_report_opens_with_actions_and_collapsed_skips(pytester, tmp_path, monkeypatch, browser):
    pytest.importorskip("pytest_html")
    pytester.makepyfile(fewchecks="""
from diagnostics.findings import Finding, Status
from diagnostics.registry import Check
def _one(code, status, summary, fix=""):
    return lambda ctx: [Finding(code, status, code, summary, fix=fix, evidence={"n": 1})]
CHECKS = [Check("ckpt.a-fail", "a", _one("ckpt.a-fail", Status.FAIL, "broken",
                fix="Set it:\\n```yaml\\nmodel:\\n  params: {}\\n```"), reads=("ctx",))] + [
    Check(f"cuda.s{i}", "s", _one(f"cuda.s{i}", Status.SKIP, "No NVIDIA GPU"), reads=("ctx",)) for i in range(12)]
""")
    pytester.makeconftest("import diagnostics.registry as r\n"
                          "r.CHECK_MODULES = r.CHECK_MODULES + ('fewchecks',)\n"
                          "pytest_plugins = ['diagnostics.pytest_plugin']\n")
    pytester.makepyfile(test_few="import pytest\n"
                        "@pytest.mark.parametrize('cid', ['ckpt.a-fail'] + ['cuda.s%d' % i for i in range(12)])\n"
                        "def test_c(diag, cid):\n    diag.check(cid)\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(pytester.path)]))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--html=reports/", "--self-contained-html")
    assert result.ret == 1
    page = pytester.path / "reports" / "report.html"
    layout = measure_layout(page, tmp_path / "profile", bottoms=("ol.ldm-todo", "table.ldm-areas"),
                            hidden=("tbody.skipped .extras-row", "tbody.skipped .logwrapper",
                                    "tbody.failed .extras-row"))
    for selector in ("ol.ldm-todo", "table.ldm-areas"):
        assert layout["bottoms"][selector] is not None and layout["bottoms"][selector] <= layout["viewport"][1], layout
    rows, hidden = layout["hidden"]["tbody.skipped .extras-row"]
    assert rows == 12 and hidden == 12, layout  # skips collapsed
    rows, hidden = layout["hidden"]["tbody.failed .extras-row"]
    assert rows == 1 and hidden == 0, layout  # the failure stays open
    screenshot(page, pytester.path / "reports" / "first-screen.png", browser, size="1400,900")
