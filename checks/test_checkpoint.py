"""Checkpoint checks (`pytest checks/ -m checkpoint --checkpoint PATH`): one test per ckpt.* check.

The file is read without running its code; a test skips when no checkpoint is given. `ckpt.nonfinite`
and `ckpt.hash` read the whole file and run from `python -m diagnostics inspect CKPT --deep --hash`.
"""

import pytest

from diagnostics.registry import checks_in

pytestmark = pytest.mark.checkpoint


@pytest.mark.parametrize("check_id", [c.id for c in checks_in("ckpt")])
def test_checkpoint(diag, check_id):
    diag.check(check_id)
