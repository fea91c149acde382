import os
import subprocess
import sys
import venv
from importlib.util import find_spec

import pytest

pytest_plugins = ["pytester"]

RUNTIME_DEPS = ["jinja2>=3.0", "requests>=2.20", "packaging>=20.0"]


def _pip_with_python_option() -> bool:
    """Whether this interpreter's pip installs into another environment (`--python`, pip 22.3:
    https://pip.pypa.io/en/stable/news/#v22-3)."""
    try:
        from importlib.metadata import version

        from packaging.version import Version

        return Version(version("pip")) >= Version("22.3")
    except Exception:  # no pip, or no readable version: the venv gets its own pip
        return False


@pytest.fixture(scope="session")
def bare_python(tmp_path_factory):
    """An interpreter without torch or transformers: this one where they are absent (the Python 3.8 CI
    job), else a fresh virtualenv with only our runtime dependencies from PyPI (skipped, with the
    reason, when the package index cannot be reached). Built once per run, also under pytest-xdist:
    the workers share it through their common temporary directory, as in
    https://pytest-xdist.readthedocs.io/en/stable/how-to.html#making-session-scoped-fixtures-execute-only-once"""
    if find_spec("torch") is None and find_spec("transformers") is None:
        return sys.executable
    base = tmp_path_factory.getbasetemp()
    try:
        import fcntl
    except ImportError:  # no flock (Windows): each worker builds its own
        fcntl = None
    if fcntl is None or not os.environ.get("PYTEST_XDIST_WORKER"):
        built = _build_bare_env(base / "bare-env")
    else:
        shared = base.parent  # the run's directory above popen-gw0, popen-gw1, ...
        with open(str(shared / "bare-env.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the first worker builds, the others wait for it
            outcome = shared / "bare-env.outcome"
            if not outcome.exists():
                outcome.write_text(_build_bare_env(shared / "bare-env"), encoding="utf-8")
            built = outcome.read_text(encoding="utf-8")
    if not built.startswith("python "):
        pytest.skip(built)
    return built[len("python "):]


def _build_bare_env(env_dir) -> str:
    """'python PATH', or why the venv could not be made."""
    # This interpreter's pip installs into the venv when it can (`pip --python`, pip 22.3+): the venv
    # then needs no pip of its own, whose installation (ensurepip) takes longer than the install.
    outer_pip = _pip_with_python_option()
    venv.EnvBuilder(with_pip=not outer_pip).create(str(env_dir))
    python = env_dir / ("Scripts" if os.name == "nt" else "bin") / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python)] if outer_pip else [str(python), "-m", "pip"]
    # Without PYTHONPATH: pip would take a package found there as installed, and the venv would lack it.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([*pip, "install", "-q", "--disable-pip-version-check", *RUNTIME_DEPS],
                          capture_output=True, text=True, timeout=600, env=env)
    if proc.returncode != 0:
        return f"could not install the runtime dependencies into a fresh venv: {proc.stderr[-300:]}"
    return f"python {python}"
