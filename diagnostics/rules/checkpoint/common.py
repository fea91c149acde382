"""What the ckpt.* rules share: the titles (written once), the preconditions, and the finding builders.

A rule is a pure function of the checkpoint facts (`probes.checkpoint.CheckpointFacts`), plus where
the verdict depends on them the installed torch / transformers versions and the environment. Each
check declares the preconditions it needs (a checkpoint given, its content read, EMA weights there);
the first unmet one is its result, so a rule body starts with its decision.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

from ...findings import Finding, Status
from ...probes.checkpoint.facts import CheckpointFacts

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
    "ckpt.ema-absent": "EMA weights present",
    "ckpt.ema-incomplete": "EMA covers the whole UNet",
    "ckpt.ema-shape-mismatch": "EMA shapes match the UNet",
    "ckpt.ema-untrained": "EMA actually trained",
    "ckpt.nonfinite": "NaN / Inf weights",
    "ckpt.dtype": "Tensor dtypes and sizes",
    "ckpt.hash": "Checkpoint hashes",
}

Unmet = Optional[Tuple[str, Dict[str, Any]]]  # (skip reason, evidence) when the precondition does not hold


@dataclass(frozen=True)
class Precondition:
    name: str
    unmet: Callable[[CheckpointFacts], Unmet]


def _not_given(facts: CheckpointFacts) -> Unmet:
    return None if facts is not None and facts.given else (NO_CHECKPOINT, {})


def _not_read(facts: CheckpointFacts) -> Unmet:
    return None if facts.analysed else (UNREADABLE, {"path": facts.path})


def _no_ema(facts: CheckpointFacts) -> Unmet:
    return None if facts.ema.get("present") else ("No EMA weights in the checkpoint (see ckpt.ema-absent).", {})


CHECKPOINT_GIVEN = Precondition("checkpoint given", _not_given)
CHECKPOINT_READABLE = Precondition("checkpoint readable", _not_read)
EMA_PRESENT = Precondition("EMA weights in the checkpoint", _no_ema)


def verdict(code: str, status: Status, summary: str, **details: Any) -> Finding:
    """A finding of check `code` with its declared title."""
    return Finding(code, status, TITLES[code], summary, **details)


def skipped(code: str, reason: str, **evidence: Any) -> Finding:
    return Finding(code, Status.SKIP, TITLES[code], reason, evidence=evidence)


def requires(code: str, *preconditions: Precondition):
    """Run the rule only when every precondition holds (the rule's first argument is the facts)."""
    def wrap(rule):
        @functools.wraps(rule)
        def run(facts: CheckpointFacts, *args: Any) -> Finding:
            for precondition in preconditions:
                unmet = precondition.unmet(facts)
                if unmet is not None:
                    return skipped(code, unmet[0], **unmet[1])
            return rule(facts, *args)
        run.preconditions = preconditions
        return run
    return wrap


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
