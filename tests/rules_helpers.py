"""Run one registered check on hand-made facts, through its declaration (preconditions, stamping)."""

from diagnostics.registry import get_check


def evaluate(code, **facts):
    """The single finding check `code` gives for `facts` (fact name -> value)."""
    [finding] = get_check(code).evaluate(**facts)
    return finding
