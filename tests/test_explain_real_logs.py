"""Logs produced now, by running the real code paths (tests/logs/real_code.py), are recognised.

Unlike the stored copies in tests/logs/real/, these are made by the libraries installed here, so a
library that changes its wording shows up as a failure of this module. A scenario that cannot run
on this machine (a package missing, a GPU present) is skipped with the reason the script gave.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from diagnostics.context import Context
from diagnostics.knowledge.explain import explain_file
from tests.shared_build import build_once

LOGS = Path(__file__).parent / "logs"
_spec = importlib.util.spec_from_file_location("real_code", LOGS / "real_code.py")
real_code = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(real_code)

pytest.importorskip("torch", reason="the real code paths need torch")


def _capture(out: Path) -> str:
    proc = subprocess.run([sys.executable, str(LOGS / "real_code.py"), str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return str(out)


@pytest.fixture(scope="module")
def fresh_logs(tmp_path_factory) -> Path:
    """The captures, made once per test run (also when xdist spreads this module over workers)."""
    return Path(build_once(tmp_path_factory, "real-logs", _capture))


# Also right where the installed versions print other lines: huggingface_hub before 1.0 logs no
# retries, so the failure is the refused connection under the catch-all LocalEntryNotFoundError,
# which the network signature (K34) names.
ALSO_RIGHT = {"k29_k02_hub_retries": ["K34"]}


def expected_ids(name: str):
    return ["K" + n for n in re.findall(r"k(\d\d)_", re.match(r"((?:k\d\d_)+)", name).group(1))]


@pytest.mark.parametrize("name", sorted(real_code.SCENARIOS))
def test_fresh_log_is_recognised(fresh_logs, name):
    skipped = fresh_logs / f"{name}.skip"
    if skipped.exists():
        pytest.skip(skipped.read_text())
    path = fresh_logs / f"{name}.log"
    explanation = explain_file(str(path), Context(environ={}, cwd=fresh_logs), confirm_causes=False)
    got = [m.signature.id for m in explanation.matches]
    want = expected_ids(name) + ALSO_RIGHT.get(name, [])
    # Which of a scenario's signatures shows depends on the installed versions (the ldm import
    # prints the xformers line only without xformers, and stops at rank_zero_only only under
    # pytorch_lightning 1.8.0 / 2.x); the stored copies are checked for all of them.
    assert set(want) & set(got), f"{name}: {path.read_text()[-1500:]}"
    assert got[0] in want
    problem = explanation.original_problem
    if explanation.parsed.has_traceback:
        assert problem["file"] and problem["line"]
        if problem["file"].endswith("real_code.py"):
            assert problem["qualname"].startswith("group_")  # found in the script's own source


def test_stored_copies_cover_every_scenario():
    stored = {p.stem for p in (LOGS / "real").glob("*.log")}
    assert set(real_code.SCENARIOS) <= stored
