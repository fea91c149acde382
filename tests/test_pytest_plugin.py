"""The pytest front-end, black-box with pytester: a tiny project with checks of every outcome."""

import html
import json
import os
import re
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
    (pytester.path / "from-env").mkdir()
    (pytester.path / "model.ckpt").write_bytes(b"PK\x03\x04" + bytes(range(256)))  # a (broken) zip, not text
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
    blob = html.unescape(re.search(r'data-jsonblob="([^"]*)"', text).group(1))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in blob
    assert "&lt;img src=x onerror=alert(2)&gt;" in blob
    assert "<script>alert(1)" not in blob and "<img src=x onerror" not in blob
    # the action list above the results is page HTML: escaped once
    assert "<script>alert(1)" not in text and "cache is empty &lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_markers_are_registered(project):
    result = project.runpytest_subprocess("--markers")
    out = result.stdout.str()
    for marker in ("env:", "network:", "cache:", "checkpoint:", "cuda:", "model:"):
        assert "@pytest.mark." + marker in out


YAML_FIX_CHECKS = FAKE_CHECKS.replace("CHECKS = [", """CHECKS = [
    Check("fake.yaml", "yaml fix", _one("fake.yaml", Status.FAIL, "version is wrong",
          fix="1. in v1-inference.yaml set `version`:\\n```yaml\\nmodel:\\n  params:\\n    version: /models/clip\\n```\\n"
              "2. start with `HF_HUB_OFFLINE=1`"), reads=("ctx",)),""")


@pytest.mark.skipif(sys.version_info < (3, 9), reason="pytest-html 4 needs Python 3.9")
def test_pytest_html_gets_a_title_the_stack_readable_fixes_and_collapsed_skips(project):
    pytest.importorskip("pytest_html")
    project.makepyfile(fakechecks=YAML_FIX_CHECKS)
    project.makepyfile(test_yaml="def test_yaml(diag):\n    diag.check('fake.yaml')\n")
    result = _run(project, "--html=reports/", "--self-contained-html")
    assert result.ret == 1
    blob = html.unescape((project.path / "reports" / "report.html").read_text())
    assert '<title id="head-title">LDM deployment checks</title>' in blob
    assert re.search(r'"LDM stack": "torch [^"]*transformers ', blob)  # one row of the Environment table
    assert "<h2>What to do</h2><ol class='ldm-todo'><li><b>" in blob  # the action list, above the results
    assert '"renderCollapsed": ["passed", "skipped"]' in blob
    # the YAML fix keeps its lines, in a code block; the prose is text with <code>, no backticks
    # (the extras sit in a JSON blob: quotes and newlines are JSON-escaped there)
    assert r'<pre><code class=\"language-yaml\">model:\n  params:\n    version: /models/clip</code></pre>' in blob
    assert "in v1-inference.yaml set <code>version</code>:" in blob
    assert "<details><summary>evidence</summary>" in blob
    # the skip shows its reason, not pytest's (path, line, message) tuple
    assert "no GPU on this machine" in blob and "pytest_plugin.py', " not in blob
    assert "6 checks ran: 1 error, 2 fail, 1 ok, 1 skip, 1 warn." in blob  # pytest-html's own line counts only passed and failed tests


@pytest.mark.parametrize("args, message", [
    (["--checkpoint", "missing.ckpt"], "--checkpoint missing.ckpt does not exist"),
    (["--checkpoint", "."], "is a directory, not a checkpoint file"),
    (["--checkpoint", "conf.yaml"], "is a YAML config, not a checkpoint; did you mean --config conf.yaml?"),
    (["--config", "model.ckpt"], "is a checkpoint, not a YAML config; did you mean --checkpoint model.ckpt?"),
])
def test_wrong_inputs_are_a_usage_error_before_any_test(project, args, message):
    (project.path / "conf.yaml").write_text("model:\n  target: ldm.models.diffusion.ddpm.LatentDiffusion\n")
    result = project.runpytest_subprocess("-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()
    assert "passed" not in result.stdout.str() and "Traceback" not in result.stderr.str()


def test_deep_and_hash_reach_the_context(project):
    project.makepyfile(test_opts="def test_opts(diag):\n"
                                 "    assert diag.context.options.deep and diag.context.options.hash\n")
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "test_opts.py", "--deep", "--hash")
    result.assert_outcomes(passed=1)
