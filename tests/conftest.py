import os
import subprocess
import sys
import venv
from importlib.util import find_spec

import pytest

pytest_plugins = ["pytester"]

# One intra-op thread per process (torch, and the children the tests start inherit it), unless the
# caller chose a number: on the tests' tiny models torch's thread pool costs more than it computes,
# and with one xdist worker per core its threads compete for the cores (a tiny UNet step, a few
# milliseconds alone, then takes seconds).
os.environ.setdefault("OMP_NUM_THREADS", "1")

RUNTIME_DEPS = ["jinja2>=3.0", "requests>=2.20", "packaging>=20.0"]


@pytest.fixture(scope="session")
def bare_python(tmp_path_factory):
    """An interpreter without torch or transformers: this one where they are absent (the Python 3.8 CI
    job), else a fresh virtualenv with only our runtime dependencies from PyPI (skipped, with the
    reason, when the package index cannot be reached)."""
    if find_spec("torch") is None and find_spec("transformers") is None:
        return sys.executable
    env_dir = tmp_path_factory.mktemp("bare-env")
    venv.EnvBuilder(with_pip=True).create(str(env_dir))
    python = env_dir / ("Scripts" if os.name == "nt" else "bin") / "python"
    # Without PYTHONPATH: pip would take a package found there as installed, and the venv would lack it.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *RUNTIME_DEPS],
                          capture_output=True, text=True, timeout=600, env=env)
    if proc.returncode != 0:
        pytest.skip(f"could not install the runtime dependencies into a fresh venv: {proc.stderr[-300:]}")
    return str(python)
