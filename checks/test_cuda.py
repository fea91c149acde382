"""GPU / CUDA checks (`pytest checks/ -m cuda`); each skips with the reason on a machine without a GPU."""

import pytest

from diagnostics.registry import checks_in

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize("check_id", [c.id for c in checks_in("cuda")])
def test_cuda(diag, check_id):
    diag.check(check_id)
