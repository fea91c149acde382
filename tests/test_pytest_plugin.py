"""The pytest front-end, black-box with pytester: a tiny project with checks of every outcome."""

import html
import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FAKE_CHECKS = '''
from diagnostics.findings import Finding, Status
from diagnostics.registry import Check

def _one(code, status, summary, **kw):
    return lambda ctx: [Finding(code, status, code, summary, **kw)]

def _crash(ctx):
    raise ValueError("probe exploded")

CHECKS = [
    Check("fake.ok", "ok check", _one("fake.ok", Status.OK, "all good"), reads=("ctx",)),
    Check("fake.warn", "warn check", _one("fake.warn", Status.WARN, "degraded but works", fix="tune it"), reads=("ctx",)),
    Check("fake.fail", "fail check", _one("fake.fail", Status.FAIL, "cache is empty <script>alert(1)</script>",
                                          fix="run `hf download x`", evidence={"path": "<img src=x onerror=alert(2)>"}), reads=("ctx",)),
    Check("fake.skip", "skip check", _one("fake.skip", Status.SKIP, "no GPU on this machine"), reads=("ctx",)),
    Check("fake.crash", "crash check", _crash, reads=("ctx",)),
]
'''

CONFTEST = '''
import diagnostics.registry as registry
registry.CHECK_MODULES = registry.CHECK_MODULES + ("fakechecks",)
pytest_plugins = ["diagnostics.pytest_plugin"]
'''

TESTS = '''
import pytest

@pytest.mark.parametrize("check_id", ["fake.ok", "fake.warn", "fake.fail", "fake.skip", "fake.crash"])
def test_check(diag, check_id):
    diag.check(check_id)

def test_options_reach_the_context(diag):
    assert diag.context.options.checkpoint == "model.ckpt"
    assert diag.context.options.code_root == "from-env"
'''


@pytest.fixture
def project(pytester, monkeypatch):
    pytester.makepyfile(fakechecks=FAKE_CHECKS)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_checks=TESTS)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(pytester.path)]))
    monkeypatch.setenv("LDM_DIAG_CODE_ROOT", "from-env")
    return pytester


def _run(project, *args):
    return project.runpytest_subprocess("-p", "no:cacheprovider", "--checkpoint", "model.ckpt", *args)


def test_outcomes_follow_the_finding_status(project):
    result = _run(project, "-rsw")
    result.assert_outcomes(passed=3, failed=2, skipped=1, warnings=1)
    out = result.stdout.str()
    assert "fake.fail: cache is empty" in out and "fix: run `hf download x`" in out
    assert "fake.crash: The check itself crashed: ValueError: probe exploded" in out
    assert "no GPU on this machine" in out  # the skip reason
    assert "degraded but works" in out  # the warning


def test_findings_json_lands_in_reports_by_default(project):
    _run(project)
    data = json.loads((project.path / "reports" / "findings.json").read_text())
    assert data["schema"] == "ldm-diagnostics/1"
    assert {f["code"]: f["status"] for f in data["findings"]} == {
        "fake.ok": "ok", "fake.warn": "warn", "fake.fail": "fail", "fake.skip": "skip", "fake.crash": "error"}


@pytest.mark.skipif(sys.version_info < (3, 9), reason="pytest-html 4 needs Python 3.9")
@pytest.mark.parametrize("exists", [True, False], ids=["reports-exists", "reports-absent"])
def test_html_dir_is_rewritten_to_report_html(project, exists):
    pytest.importorskip("pytest_html")
    if exists:
        (project.path / "reports").mkdir()
    result = _run(project, "--html=reports/")
    assert result.ret == 1  # the failing checks, not an IsADirectoryError
    assert "IsADirectoryError" not in result.stdout.str() + result.stderr.str()
    report = project.path / "reports" / "report.html"
    assert report.is_file()
    assert (project.path / "reports" / "findings.json").is_file()
    text = report.read_text()
    # Our extras reach pytest-html escaped: after the JSON blob's own attribute escaping is undone,
    # the markup is still escaped once, so the browser shows it as text.
    blob = html.unescape(text)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in blob
    assert "&lt;img src=x onerror=alert(2)&gt;" in blob
    assert "<script>alert(1)" not in blob and "<img src=x onerror" not in blob


def test_markers_are_registered(project):
    result = project.runpytest_subprocess("--markers")
    out = result.stdout.str()
    for marker in ("env:", "network:", "cache:", "checkpoint:", "cuda:", "model:"):
        assert "@pytest.mark." + marker in out
