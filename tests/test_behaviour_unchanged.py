"""The checkpoint and config checks give the same codes and statuses as before the checks became
declarations (tests/data/behaviour-before-refactor.json, written by `python -m tests.behaviour_snapshot`
at that commit), on the same fourteen test checkpoints and their configs."""

import json
from pathlib import Path

import pytest

from .ckpt_factory import require_ldm


@pytest.fixture(scope="module")
def now():
    require_ldm()
    from .behaviour_snapshot import snapshot

    return snapshot()


BEFORE = json.loads((Path(__file__).parent / "data" / "behaviour-before-refactor.json").read_text())


@pytest.mark.parametrize("case", sorted(BEFORE))
def test_same_codes_and_statuses_as_before_the_refactor(now, case):
    assert now[case] == BEFORE[case]
