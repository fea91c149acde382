"""Can this machine reach the Hugging Face Hub the way the loaders will? (hub.*)

Each step is one test, so the report shows where the way breaks: endpoint, proxy, DNS, TCP, TLS,
and the Hub's answer for every needed model. A dead network fails only when a needed file is not
cached.
"""

import pytest

from diagnostics.registry import checks_in

pytestmark = pytest.mark.network


@pytest.mark.parametrize("check_id", [c.id for c in checks_in("hub")])
def test_hub(diag, check_id):
    diag.check(check_id)
