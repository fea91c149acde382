"""What the ckpt.* rules share: the preconditions and the text helpers.

A rule is a pure function of the checkpoint facts (`probes.checkpoint.CheckpointFacts`), plus where
the verdict depends on them the installed torch / transformers versions and the environment. It
returns `verdict(status, summary, ...)` (`diagnostics.findings`): the registry stamps the check's code
and title, written once in the declarations (`__init__.py`). Each check declares the preconditions it
needs (a checkpoint given, its content read, EMA weights there); the first unmet one is its result,
so a rule body starts with its decision.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from ...findings import Finding, Status, verdict
from ...probes.checkpoint.facts import CheckpointFacts
from ...registry import Precondition

NO_CHECKPOINT = "No checkpoint given: pass --checkpoint PATH (or set LDM_DIAG_CHECKPOINT)."
UNREADABLE = "The checkpoint could not be read; ckpt.format and ckpt.corrupt say why."


def _not_given(checkpoint: CheckpointFacts) -> Optional[str]:
    return None if checkpoint is not None and checkpoint.given else NO_CHECKPOINT


def _not_read(checkpoint: CheckpointFacts) -> Optional[Finding]:
    if checkpoint.analysed:
        return None
    return verdict(Status.SKIP, UNREADABLE, evidence={"path": checkpoint.path})


def _no_ema(checkpoint: CheckpointFacts) -> Optional[str]:
    return None if checkpoint.ema.get("present") else "No EMA weights in the checkpoint (see ckpt.ema-absent)."


CHECKPOINT_GIVEN = Precondition("checkpoint given", ("checkpoint",), _not_given)
CHECKPOINT_READABLE = Precondition("checkpoint readable", ("checkpoint",), _not_read)
EMA_PRESENT = Precondition("EMA weights in the checkpoint", ("checkpoint",), _no_ema)


def listing(names, shown: int) -> str:
    """The first `shown` names, then how many more: "a, b, c, and 4 more"."""
    names = [str(name) for name in names]
    if len(names) <= shown:
        return ", ".join(names)
    return ", ".join(names[:shown]) + f", and {len(names) - shown} more"


def params_text(count: Optional[int]) -> str:
    if not count:
        return "0"
    if count >= 1e9:
        return f"{count / 1e9:.2f} B"
    if count >= 1e6:
        return f"{count / 1e6:.1f} M"
    if count >= 1e3:
        return f"{count / 1e3:.1f} k"
    return str(count)


def dtype_text(component: Dict[str, Any]) -> str:
    dtypes = component.get("dtypes") or {}
    return "/".join(sorted(dtypes, key=lambda d: -dtypes[d])) or "-"
