"""The harness in a real environment without torch or transformers: it reports their absence.

Where this interpreter has no torch (the Python 3.8 CI job), the report runs here directly. Where it
has torch, a fresh virtualenv with only our runtime dependencies is built from PyPI (skipped, with
the reason, when the package index cannot be reached): the `bare_python` fixture of tests/conftest.py.
"""

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_report_runs_and_names_the_missing_ml_stack(bare_python, tmp_path):
    check = subprocess.run([bare_python, "-c", "import importlib.util as u; print(u.find_spec('torch'), u.find_spec('transformers'))"],
                           capture_output=True, text=True)
    assert check.stdout.strip() == "None None"  # a real environment without them, not a mocked import
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([bare_python, "-m", "diagnostics", "report", "--out", "out"], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    data = json.loads((tmp_path / "out" / "resolution-report.json").read_text(encoding="utf-8"))
    status = {f["code"]: f["status"] for f in data["findings"]}
    assert status["env.torch-missing"] == "fail" and status["env.transformers-missing"] == "fail"
    assert status["cuda.available"] == "skip"
    assert "env.torch-missing: torch is not installed" in proc.stdout
    assert data["status"] == "UNRESOLVED"
