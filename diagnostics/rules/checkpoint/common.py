"""What the ckpt.* rules share: the titles (written once), the preconditions, and the finding builders.

The rules stamp their own code and title (`verdict(code, ...)`, from `TITLES`, which the declarations
in `__init__.py` read too), so a rule called directly in a test still says which check it is.

A rule is a pure function of the checkpoint facts (`probes.checkpoint.CheckpointFacts`), plus where
the verdict depends on them the installed torch / transformers versions and the environment. Each
check declares the preconditions it needs (a checkpoint given, its content read, EMA weights there);
the first unmet one is its result, so a rule body starts with its decision.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from ...findings import Finding, Status
from ...probes.checkpoint.facts import CheckpointFacts
from ...registry import Precondition

NO_CHECKPOINT = "No checkpoint given: pass --checkpoint PATH (or set LDM_DIAG_CHECKPOINT)."
UNREADABLE = "The checkpoint could not be read; ckpt.format and ckpt.corrupt say why."

# code -> title, in report order: what is checked, reading right with any status.
TITLES: Dict[str, str] = {
    "ckpt.format": "Checkpoint file format",
    "ckpt.corrupt": "Checkpoint file integrity",
    "ckpt.unsafe-pickle": "Checkpoint code safety (pickle globals)",
    "ckpt.weights-only-refused": "torch.load(weights_only=True) on this checkpoint",
    "ckpt.components": "Checkpoint components",
    "ckpt.family": "Model family and variant",
    "ckpt.clip-missing": "CLIP text encoder in the checkpoint",
    "ckpt.clip-position-ids": "CLIP position_ids",
    "ckpt.ema-absent": "EMA weights in the checkpoint",
    "ckpt.ema-incomplete": "EMA coverage of the UNet",
    "ckpt.ema-shape-mismatch": "EMA shapes vs the UNet",
    "ckpt.ema-untrained": "EMA weights vs their initial values",
    "ckpt.nonfinite": "NaN / Inf weights",
    "ckpt.dtype": "Tensor dtypes and sizes",
    "ckpt.hash": "Checkpoint hashes",
}

def _not_given(checkpoint: CheckpointFacts) -> Optional[str]:
    return None if checkpoint is not None and checkpoint.given else NO_CHECKPOINT


def _not_read(checkpoint: CheckpointFacts) -> Optional[Finding]:
    if checkpoint.analysed:
        return None
    return Finding("", Status.SKIP, "", UNREADABLE, evidence={"path": checkpoint.path})


def _no_ema(checkpoint: CheckpointFacts) -> Optional[str]:
    return None if checkpoint.ema.get("present") else "No EMA weights in the checkpoint (see ckpt.ema-absent)."


CHECKPOINT_GIVEN = Precondition("checkpoint given", ("checkpoint",), _not_given)
CHECKPOINT_READABLE = Precondition("checkpoint readable", ("checkpoint",), _not_read)
EMA_PRESENT = Precondition("EMA weights in the checkpoint", ("checkpoint",), _no_ema)


def verdict(code: str, status: Status, summary: str, **details: Any) -> Finding:
    """A finding of check `code` with its declared title."""
    return Finding(code, status, TITLES[code], summary, **details)


def skipped(code: str, reason: str, **evidence: Any) -> Finding:
    return Finding(code, Status.SKIP, TITLES[code], reason, evidence=evidence)


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
