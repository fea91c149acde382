"""The harness in a real environment without torch or transformers: it reports their absence.

Where this interpreter has no torch (the Python 3.8 CI job), the report runs here directly. Where it
has torch, a fresh virtualenv with only our runtime dependencies is built from PyPI (skipped, with
the reason, when the package index cannot be reached).
"""

import json
import os
import subprocess
import sys
import venv
from importlib.util import find_spec
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_DEPS = ["jinja2>=3.0", "requests>=2.20", "packaging>=20.0"]


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory):
    if find_spec("torch") is None and find_spec("transformers") is None:
        return sys.executable
    env_dir = tmp_path_factory.mktemp("bare-env")
    venv.EnvBuilder(with_pip=True).create(str(env_dir))
    python = env_dir / ("Scripts" if os.name == "nt" else "bin") / "python"
    proc = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *RUNTIME_DEPS],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.skip(f"could not install the runtime dependencies into a fresh venv: {proc.stderr[-300:]}")
    return str(python)


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
