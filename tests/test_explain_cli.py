"""`python -m diagnostics explain LOG [--json]`: exit codes, output, input handling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from diagnostics import registry
from diagnostics.cli import main

ROOT = Path(__file__).resolve().parent.parent
SEED_LOG = ROOT / "tests" / "logs" / "seed_clip_tokenizer.log"


@pytest.fixture
def fake_checks(tmp_path, monkeypatch):
    """A check module with a failing CLIP tokenizer check, in place of the registered ones."""
    (tmp_path / "fake_checks_for_explain.py").write_text(textwrap.dedent('''
        from diagnostics.findings import Finding, Status
        from diagnostics.registry import Check

        def tokenizer(ctx):
            return [Finding("tokenizer.functional", Status.FAIL, "CLIP tokenizer",
                            "CLIPTokenizer.from_pretrained returned a tokenizer with vocabulary 2")]

        CHECKS = [Check("tokenizer.functional", "CLIP tokenizer", tokenizer, reads=("ctx",))]
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "CHECK_MODULES", ("fake_checks_for_explain",))
    monkeypatch.chdir(tmp_path)
    for var in ("LDM_DIAG_CHECKPOINT", "LDM_DIAG_CONFIG", "LDM_DIAG_CODE_ROOT"):
        monkeypatch.delenv(var, raising=False)


def test_confirmed_blocking_cause_exits_1(fake_checks, capsys):
    assert main(["explain", str(SEED_LOG)]) == 1
    out = capsys.readouterr().out
    assert "Location: /app/ldm/modules/encoders/modules.py:103 in FrozenCLIPEmbedder.__init__" in out
    assert "confirmed by tokenizer.functional: CLIPTokenizer.from_pretrained returned a tokenizer" in out
    assert "no check for cache.offline-flag on this installation yet" in out
    assert "1 confirmed blocking cause(s): CLIP tokenizer cannot be loaded" in out


def test_json_output(fake_checks, capsys):
    assert main(["explain", str(SEED_LOG), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["schema"] == "ldm-diagnostics/1"
    assert data["original_problem"]["line"] == 103
    assert data["matches"][0]["signature"] == "K01"
    assert data["matches"][0]["status"] == "confirmed"
    assert data["blocking"] is True


def test_no_confirm_only_matches(fake_checks, capsys):
    assert main(["explain", str(SEED_LOG), "--no-confirm"]) == 0
    assert "Checks were not run (--no-confirm)" in capsys.readouterr().out


def test_log_without_traceback_exits_0_with_a_clear_message(fake_checks, tmp_path, capsys):
    log = tmp_path / "server.log"
    log.write_text("starting\nlistening on :7860\n")
    assert main(["explain", str(log)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"No Python traceback found in {log} (2 lines read).")
    assert "No known failure signature matches this log." in out


@pytest.mark.parametrize("make", ["missing", "directory"])
def test_unreadable_log_is_a_usage_error(fake_checks, tmp_path, capsys, make):
    path = tmp_path / "nope.log"
    if make == "directory":
        path.mkdir()
    assert main(["explain", str(path)]) == 2
    assert "error: error log" in capsys.readouterr().err


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file")
def test_permission_denied_is_a_usage_error(fake_checks, tmp_path, capsys):
    path = tmp_path / "secret.log"
    path.write_text("x")
    path.chmod(0)
    assert main(["explain", str(path)]) == 2


def test_utf16_log_from_powershell_is_read(fake_checks, tmp_path, capsys):
    log = tmp_path / "ps.log"
    log.write_bytes(SEED_LOG.read_text().encode("utf-16"))
    assert main(["explain", str(log), "--json", "--no-confirm"]) == 0
    assert json.loads(capsys.readouterr().out)["original_problem"]["qualname"] == "FrozenCLIPEmbedder.__init__"


def _env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("LDM_DIAG_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def test_stdin_and_help_do_not_import_torch():
    proc = subprocess.run([sys.executable, "-m", "diagnostics", "explain", "-", "--json", "--no-confirm"],
                          input=SEED_LOG.read_text(), capture_output=True, text=True, cwd=ROOT, env=_env())
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["source"] == "stdin"
    code = ("import sys, contextlib, io\nfrom diagnostics.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n        main(['explain', '--help'])\n    except SystemExit:\n        pass\n"
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=_env())
    assert proc.stdout.split() == ["False", "False"], proc.stderr
