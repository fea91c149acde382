"""Config and model checks (`pytest checks/ -m model --config Y --checkpoint P --code-root D [--device cpu]`).

Without --config every check skips with the reason; `cuda.memory` runs with the GPU checks (-m cuda).
"""

import pytest

from diagnostics.registry import checks_in

pytestmark = pytest.mark.model


@pytest.mark.parametrize("check_id", [c.id for c in checks_in("config", "model")])
def test_model(diag, check_id):
    diag.check(check_id)
