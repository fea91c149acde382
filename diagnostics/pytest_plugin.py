"""pytest front-end: `pytest checks/ [--checkpoint P] [--config Y] [--code-root D] --html=reports/`.

- adds the harness options (LDM_DIAG_* environment variables are the fallbacks);
- rewrites `--html=DIR/` (or an existing directory) to `DIR/report.html`: pytest-html 4.2 writes a
  file named like the directory, or dies with IsADirectoryError at the end of the run, otherwise;
- gives checks the `diag` fixture: `diag.check("env.python")` runs one library check and turns its
  findings into a test outcome (skip -> pytest.skip, fail/error -> assertion, warn -> warning);
- attaches each check's findings to pytest-html extras, escaped (pytest-html injects extras raw);
- writes `findings.json` next to the HTML report (default `reports/`) at the end of the session.
"""

from __future__ import annotations

import html
import json
import os
import warnings
from pathlib import Path
from typing import List

import pytest

from .context import Context, Options
from .findings import SCHEMA, Status
from .redact import Redactor

MARKERS = {
    "env": "environment and package checks",
    "network": "Hugging Face Hub network checks",
    "cache": "Hugging Face cache and tokenizer checks",
    "checkpoint": "checkpoint file checks",
    "cuda": "GPU / CUDA checks (skip without an NVIDIA GPU)",
    "model": "config and model instantiation checks",
}

_RESULTS = pytest.StashKey[list]()
_CONTEXT = pytest.StashKey[Context]()
_ITEM_RESULT = pytest.StashKey[object]()
_REDACT = pytest.StashKey[Redactor]()


class DiagnosticWarning(UserWarning):
    """A check passed with a warning (status `warn`)."""


def pytest_addoption(parser):
    group = parser.getgroup("ldm-diagnostics")
    group.addoption("--checkpoint", default=None, help="checkpoint to check (env LDM_DIAG_CHECKPOINT)")
    group.addoption("--config", default=None, help="LDM yaml config (env LDM_DIAG_CONFIG)")
    group.addoption("--code-root", default=None, help="directory holding the ldm package (env LDM_DIAG_CODE_ROOT)")
    group.addoption("--model-id", action="append", default=[], help="extra Hugging Face model id the deployment needs")
    group.addoption("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where model checks run")
    group.addoption("--error-log", default=None, help="log with the traceback to explain")


def _html_dir_fix(config) -> None:
    raw = getattr(config.option, "htmlpath", None)  # None when pytest-html is not installed
    if raw and (raw.endswith(("/", os.sep)) or Path(raw).is_dir()):
        config.option.htmlpath = str(Path(raw) / "report.html")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    # tryfirst: must run before pytest-html's own pytest_configure builds its report path.
    _html_dir_fix(config)
    for name, doc in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")
    config.stash[_RESULTS] = []


def _context(config) -> Context:
    if _CONTEXT not in config.stash:
        opts = config.option
        environ = dict(os.environ)
        options = Options.from_values(
            environ,
            checkpoint=opts.checkpoint,
            config=opts.config,
            code_root=opts.code_root,
            model_ids=list(opts.model_id or []),
            device=opts.device,
            error_log=opts.error_log,
        )
        config.stash[_CONTEXT] = Context(options, environ=environ)
        config.stash[_REDACT] = Redactor(environ)
    return config.stash[_CONTEXT]


class Diag:
    """What a check test sees: run a library check and turn it into a pytest outcome."""

    def __init__(self, request):
        self._request = request
        self.context = _context(request.config)

    def check(self, check_id: str):
        from .registry import get_check, run_check

        result = run_check(get_check(check_id), self.context)
        self._request.node.stash[_ITEM_RESULT] = result
        self._request.config.stash[_RESULTS].append(result)
        status = result.status
        redact = self._request.config.stash[_REDACT]
        lines = [f"[{f.status.value}] {f.code}: {f.summary}" + (f"\n  fix: {f.fix}" if f.fix else "")
                 for f in result.findings if f.status not in (Status.OK, Status.SKIP)]
        if status in (Status.FAIL, Status.ERROR):
            blocking = [f for f in result.findings if f.status in (Status.FAIL, Status.ERROR)]
            pytest.fail(redact("\n".join(f"{f.code}: {f.summary}" + (f"\nfix: {f.fix}" if f.fix else "")
                                          for f in blocking)), pytrace=False)
        if status is Status.SKIP:
            pytest.skip(redact("; ".join(f.summary for f in result.findings)))
        if status is Status.WARN:
            warnings.warn(DiagnosticWarning(redact("\n".join(lines))))
        return result


@pytest.fixture
def diag(request) -> Diag:
    return Diag(request)


def _extras_html(result) -> str:
    rows = []
    for f in result.findings:
        parts = [f"<b>[{html.escape(f.status.value)}] {html.escape(f.code)}</b>: {html.escape(f.summary)}"]
        if f.cause:
            parts.append(f"<br><i>cause</i>: {html.escape(f.cause)}")
        if f.fix:
            parts.append(f"<br><i>fix</i>: <code>{html.escape(f.fix)}</code>")
        if f.evidence:
            parts.append("<pre>" + html.escape(json.dumps(f.evidence, indent=2, default=str)) + "</pre>")
        rows.append("<div class='ldm-finding'>" + "".join(parts) + "</div>")
    return "".join(rows)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    result = item.stash.get(_ITEM_RESULT, None)
    if result is None or report.when != "call":
        return
    try:
        from pytest_html import extras  # optional
    except ImportError:
        return
    redact = item.config.stash[_REDACT]
    report.extras = list(getattr(report, "extras", [])) + [extras.html(redact(_extras_html(result)))]


def _findings_dir(config) -> Path:
    htmlpath = getattr(config.option, "htmlpath", None)
    if htmlpath:
        return (Path.cwd() / os.path.expandvars(htmlpath)).expanduser().parent
    return Path(str(config.rootpath)) / "reports"


def pytest_sessionfinish(session, exitstatus):
    results: List = session.config.stash.get(_RESULTS, [])
    if not results or hasattr(session.config, "workerinput"):
        return
    from .report.write import atomic_write_text

    out = _findings_dir(session.config)
    payload = {
        "schema": SCHEMA,
        "source": "pytest",
        "checks": [r.to_dict() for r in results],
        "findings": [f.to_dict() for r in results for f in r.findings],
    }
    try:
        out.mkdir(parents=True, exist_ok=True)
        redact = session.config.stash.get(_REDACT, None) or Redactor({})
        atomic_write_text(out / "findings.json", redact(json.dumps(payload, indent=2, default=str)))
    except OSError as exc:
        warnings.warn(f"ldm-diagnostics could not write {out / 'findings.json'}: {exc}")


def _clean_tree(value, clean):
    if isinstance(value, dict):
        return {clean(str(k)): _clean_tree(v, clean) for k, v in value.items()}
    if isinstance(value, str):
        return clean(value)
    return value


@pytest.hookimpl(optionalhook=True, trylast=True)
def pytest_metadata(metadata, config):
    """pytest-html's Environment table comes from pytest-metadata (CI variables, plugin lists) and
    is inserted as raw HTML: redact and escape it like everything else we show."""
    redact = Redactor(dict(os.environ))
    clean = lambda text: html.escape(redact(text))  # noqa: E731
    for key in list(metadata):
        metadata[clean(key)] = _clean_tree(metadata.pop(key), clean)
