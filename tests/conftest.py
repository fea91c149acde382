import os
import subprocess
import sys
import venv
from importlib.util import find_spec

import pytest

from tests.shared_build import build_once

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
    reason, when the package index cannot be reached). Built once per run, also across pytest-xdist
    workers (`tests/shared_build.py`)."""
    if find_spec("torch") is None and find_spec("transformers") is None:
        return sys.executable
    built = build_once(tmp_path_factory, "bare-env", _build_bare_env)
    if not built.get("python"):
        pytest.skip(built["why"])
    return built["python"]


def _build_bare_env(env_dir) -> dict:
    """{"python": PATH} of a new venv with the runtime dependencies, or {"why": ...} it could not be made."""
    # This interpreter's pip installs into the new venv (`pip --python`, pip >= 22.3,
    # https://pip.pypa.io/en/stable/news/#v22-3), which saves bootstrapping a pip into it; an older or
    # missing pip falls back to that.
    own_pip = _pip_can_target_another_python()
    venv.EnvBuilder(with_pip=not own_pip).create(str(env_dir))
    python = env_dir / ("Scripts" if os.name == "nt" else "bin") / "python"
    # Without PYTHONPATH: pip would take a package found there as installed, and the venv would lack it.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def install(pip):
        return subprocess.run([*pip, "install", "-q", "--disable-pip-version-check", *RUNTIME_DEPS],
                              capture_output=True, text=True, timeout=600, env=env)

    proc = install([sys.executable, "-m", "pip", "--python", str(python)]) if own_pip else None
    if proc is None or proc.returncode != 0:
        if own_pip:  # e.g. a pip too new for the venv's Python: bootstrap the venv's own pip after all
            subprocess.run([str(python), "-m", "ensurepip", "-q"], capture_output=True, timeout=600, env=env)
        proc = install([str(python), "-m", "pip"])
    if proc.returncode != 0:
        return {"why": f"could not install the runtime dependencies into a fresh venv: {proc.stderr[-300:]}"}
    return {"python": str(python)}


def _pip_can_target_another_python() -> bool:
    """Whether this interpreter has a pip with `--python` (22.3 and later)."""
    from importlib import metadata

    from packaging.version import Version

    try:
        return Version(metadata.version("pip")) >= Version("22.3")
    except (metadata.PackageNotFoundError, ValueError):
        return False
