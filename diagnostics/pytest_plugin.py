"""pytest front-end: `pytest checks/ [--checkpoint P] [--config Y] [--code-root D] --html=reports/`.

- adds the harness options (LDM_DIAG_* environment variables are the fallbacks);
- rewrites `--html=DIR/` (or an existing directory) to `DIR/report.html`: pytest-html 4.2 writes a
  file named like the directory, or dies with IsADirectoryError at the end of the run, otherwise;
- gives checks the `diag` fixture: `diag.check("env.python")` runs one library check and turns its
  findings into a test outcome (skip -> pytest.skip, fail/error -> assertion, warn -> warning);
- attaches each check's findings to pytest-html extras, escaped (pytest-html injects extras raw),
  fixes rendered as in our HTML report, evidence collapsed;
- checks the named paths before any test runs (a bad --checkpoint/--config is a usage error);
- shows the slow steps' progress (model build, tokenizer, network) on the terminal;
- gives pytest-html a real title, the LDM stack versions in Environment, collapsed skips with their
  reason (not a tuple), and a count of every check that ran;
- writes `findings.json` next to the HTML report (default `reports/`) at the end of the session.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import warnings
from pathlib import Path
from typing import Dict, List

import pytest

from . import progress
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
_PROGRESS = pytest.StashKey[object]()

TITLE = "LDM deployment checks"
# What the Environment table of pytest-html lists beside pytest's own plugins (read from metadata).
STACK = ("torch", "torchvision", "transformers", "tokenizers", "huggingface_hub", "safetensors", "diffusers",
         "pytorch_lightning", "omegaconf", "open_clip_torch", "xformers", "numpy", "ldm-diagnostics")


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
    group.addoption("--deep", action="store_true", default=False,
                    help="read all checkpoint tensors: NaN/Inf scan and EMA statistics")
    group.addoption("--hash", action="store_true", default=False, help="sha256, AutoV2 and A1111 hashes of the checkpoint")
    group.addoption("--no-progress", action="store_true", default=False, help="no progress lines for slow steps")


def _html_dir_fix(config) -> None:
    raw = getattr(config.option, "htmlpath", None)  # None when pytest-html is not installed
    if raw and (raw.endswith(("/", os.sep)) or Path(raw).is_dir()):
        config.option.htmlpath = str(Path(raw) / "report.html")


def _collapse_skips(config) -> None:
    """pytest-html reads `render_collapsed` in its pytest_configure; unless the user set it, open
    the page with passed and skipped rows collapsed (a report of 30 skips reads as noise)."""
    try:
        if config.getini("render_collapsed") == "passed":  # pytest-html's default: not set by the user
            config._inicache["render_collapsed"] = "passed,skipped"  # pytest has no public setter
    except (ValueError, AttributeError, TypeError):  # pytest-html is not installed
        pass


def _options(config, environ) -> Options:
    opts = config.option
    return Options.from_values(
        environ,
        checkpoint=opts.checkpoint,
        config=opts.config,
        code_root=opts.code_root,
        model_ids=list(opts.model_id or []),
        device=opts.device,
        error_log=opts.error_log,
        deep=bool(getattr(opts, "deep", False)),
        hash=bool(getattr(opts, "hash", False)),
    )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    # tryfirst: must run before pytest-html's own pytest_configure builds its report path.
    _html_dir_fix(config)
    _collapse_skips(config)
    for name, doc in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")
    config.stash[_RESULTS] = []
    if hasattr(config.option, "checkpoint") and not hasattr(config, "workerinput"):
        from .inputs import input_problems

        problems = input_problems(_options(config, dict(os.environ)))
        if problems:  # before any test runs, like the CLI's exit 2
            raise pytest.UsageError(problems[0])


def _context(config) -> Context:
    if _CONTEXT not in config.stash:
        environ = dict(os.environ)
        config.stash[_CONTEXT] = Context(_options(config, environ), environ=environ)
        config.stash[_REDACT] = Redactor(environ)
        _start_progress(config)
    return config.stash[_CONTEXT]


def _terminal_writer(config):
    """Lines for the terminal, written past pytest's output capture (None without a terminal reporter)."""
    reporter = config.pluginmanager.getplugin("terminalreporter")
    capture = config.pluginmanager.getplugin("capturemanager")
    if reporter is None:
        return None

    def write(line: str) -> None:
        held = capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext()
        with held:
            reporter.write_line("  " + line)

    return write


def _start_progress(config) -> None:
    """Progress lines for the slow steps, from the first check on (not for tests that run no check)."""
    write = None if getattr(config.option, "no_progress", False) else _terminal_writer(config)
    if write is not None and _PROGRESS not in config.stash:
        manager = progress.use(progress.PlainProgress(write))
        manager.__enter__()
        config.stash[_PROGRESS] = manager


def _finding_text(f) -> str:
    """A finding for pytest's terminal: code and summary, then the fix with code blocks indented."""
    from .report.fixes import fix_terminal, user_text

    return "\n".join([f"{f.code}: {user_text(f.summary)}"] + fix_terminal(f.fix_steps, "fix: ", "     "))


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
        if status in (Status.FAIL, Status.ERROR):
            blocking = [f for f in result.findings if f.status in (Status.FAIL, Status.ERROR)]
            pytest.fail(redact("\n".join(_finding_text(f) for f in blocking)), pytrace=False)
        if status is Status.SKIP:
            pytest.skip(redact("; ".join(f.summary for f in result.findings)))
        if status is Status.WARN:
            shown = [f for f in result.findings if f.status not in (Status.OK, Status.SKIP)]
            warnings.warn(DiagnosticWarning(redact("\n".join(f"[{f.status.value}] " + _finding_text(f) for f in shown))))
        return result


@pytest.fixture
def diag(request) -> Diag:
    return Diag(request)


def _extras_html(result) -> str:
    """The findings of one check for pytest-html (which inserts extras as raw HTML): every piece
    escaped, fixes as in our report (prose and <pre><code> blocks), evidence collapsed."""
    from .report.fixes import fix_html_text, html_inline

    rows = []
    for f in result.findings:
        parts = [f"<b>[{html.escape(f.status.value)}] {html.escape(f.code)}</b>: {html_inline(f.summary)}"]
        if f.cause:
            parts.append(f"<p><i>cause</i>: {html_inline(f.cause)}</p>")
        if f.fix:
            parts.append(f"<div><i>fix</i>: {fix_html_text(f.fix_steps)}</div>")
        if f.evidence:
            parts.append("<details><summary>evidence</summary><pre>"
                         + html.escape(json.dumps(f.evidence, indent=2, default=str)) + "</pre></details>")
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
    manager = session.config.stash.get(_PROGRESS, None)
    if manager is not None:
        manager.__exit__(None, None, None)
        del session.config.stash[_PROGRESS]
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
    _stack_row(metadata)
    redact = Redactor(dict(os.environ))
    clean = lambda text: html.escape(redact(text))  # noqa: E731
    for key in list(metadata):
        metadata[clean(key)] = _clean_tree(metadata.pop(key), clean)


def _summary_html(config, results) -> str:
    """What to do (one step per cause, in order) and the per-area table, as in our HTML report."""
    from .report.actions import build_actions
    from .report.fixes import html_inline
    from .report.sections import area_statuses

    ctx = config.stash.get(_CONTEXT, None)
    findings = [f for r in results for f in r.findings]
    options = ctx.options if ctx is not None else Options()
    actions = build_actions(findings, options, ctx.facts if ctx is not None else {})
    items = "".join(f"<li><b>{html_inline(a.title)}</b>{'' if a.blocking else ' (not blocking)'}: "
                    f"{html_inline(a.summary)}</li>" for a in actions)
    todo = f"<h2>What to do</h2><ol class='ldm-todo'>{items}</ol>" if actions else "<h2>What to do</h2><p>Nothing.</p>"
    rows = "".join(f"<tr><td>{html.escape(a.title)}</td><td>{html.escape(a.status.value)}</td>"
                   f"<td>{html_inline(a.line)}</td></tr>" for a in area_statuses(findings, options))
    return (todo + "<table class='ldm-areas'><tr><th>Area</th><th>Status</th><th>Summary</th></tr>"
            + rows + "</table>")


def _stack_versions() -> Dict[str, str]:
    from importlib import metadata

    versions = {}
    for name in STACK:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
        except Exception:  # broken metadata is reported, not raised
            versions[name] = "unreadable metadata"
    return versions


def _stack_row(metadata) -> None:
    """The LDM stack's versions as one row of pytest-html's Environment table."""
    versions = _stack_versions()
    installed = ", ".join(f"{name} {v}" for name, v in versions.items() if v != "not installed")
    absent = [name for name, v in versions.items() if v == "not installed"]
    metadata["LDM stack"] = installed + (f"; not installed: {', '.join(absent)}" if absent else "")


@pytest.hookimpl(optionalhook=True)
def pytest_html_report_title(report):
    report.title = TITLE


@pytest.hookimpl(optionalhook=True)
def pytest_html_results_summary(prefix, summary, postfix, session):
    """pytest-html counts only passed and failed tests in its "N tests took" line: say what ran."""
    results = session.config.stash.get(_RESULTS, [])
    if results:
        counts: Dict[str, int] = {}
        for r in results:
            counts[r.status.value] = counts.get(r.status.value, 0) + 1
        parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        redact = session.config.stash.get(_REDACT, None) or Redactor(dict(os.environ))
        prefix.append(redact(_summary_html(session.config, results)))
        prefix.append(f"<p>{len(results)} checks ran: {html.escape(parts)}.</p>")


@pytest.hookimpl(optionalhook=True)
def pytest_html_results_table_html(report, data):
    """A skip's log is pytest's (path, line, message) tuple: show the reason instead."""
    longrepr = getattr(report, "longrepr", None)
    if report.skipped and isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
        reason = reason[len("Skipped: "):] if reason.startswith("Skipped: ") else reason
        data[:] = [html.escape(reason)]
