"""The failure-signature knowledge base, as data, one module per topic.

Each topic module keeps a `SIGNATURES` list; they are joined here in id order. The vocabulary
(`Signature`, `Pattern`, `Cause`, `Need`) is in `base.py`; matching, confirmation and ranking live
in `matching.py` and `confirmation.py`; nothing here runs.
"""

from __future__ import annotations

from typing import List

from . import checkpoint, cuda, hub_cache, imports, state_dict
from .base import PROBLEM, PROBLEM_OR_NOTE, Cause, Need, Pattern, Signature, Versions
from .locations import KNOWN_LOCATIONS

TOPICS = (hub_cache, imports, checkpoint, state_dict, cuda)
SIGNATURES: List[Signature] = sorted((sig for topic in TOPICS for sig in topic.SIGNATURES), key=lambda s: s.id)

__all__ = ["Cause", "KNOWN_LOCATIONS", "Need", "PROBLEM", "PROBLEM_OR_NOTE", "Pattern", "SIGNATURES", "Signature",
           "Versions", "get_signature"]


def get_signature(sig_id: str) -> Signature:
    for sig in SIGNATURES:
        if sig.id == sig_id or sig.slug == sig_id:
            return sig
    raise KeyError(sig_id)
