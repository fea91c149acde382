"""Environment and known-incompatibility checks (`pytest checks/ -m env`)."""

import pytest

from diagnostics.registry import checks_in

pytestmark = pytest.mark.env


@pytest.mark.parametrize("check_id", [c.id for c in checks_in("env", "compat")])
def test_environment(diag, check_id):
    diag.check(check_id)
