"""Will every Hugging Face model the config needs load from this machine's cache? (cache.*, tokenizer.functional)

One test per registered check of these areas, in the registry's order.
"""

import pytest

from diagnostics.registry import checks_in

pytestmark = pytest.mark.cache


@pytest.mark.parametrize("check_id", [c.id for c in checks_in("cache", "tokenizer")])
def test_cache(diag, check_id):
    diag.check(check_id)
