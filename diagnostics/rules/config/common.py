"""What the config.* rules share: titles (written once), preconditions, finding builders, config lines."""

from __future__ import annotations

import functools
from typing import Any, Dict, Mapping, Optional, Sequence

from ...findings import Finding, Status
from ...probes.checkpoint.shapes import CheckpointShapes
from ...probes.ldm_config import LdmConfigFacts

Shapes = Mapping[str, Sequence[int]]

TITLES: Dict[str, str] = {
    "config.load": "LDM config readable",
    "config.targets": "Config targets exist in the code",
    "config.in-channels": "UNet input channels: config vs checkpoint",
    "config.context-dim": "Cross-attention width: config vs checkpoint (SD1 vs SD2)",
    "config.use-ema": "use_ema vs EMA weights in the checkpoint",
    "config.cond-stage": "Text encoder: config vs checkpoint",
}

# The first three are checked on the config, the last on the checkpoint's shapes (CheckpointShapes).
CONFIG_GIVEN = "config given"
CONFIG_LOADED = "config loaded"
SHAPES_READABLE = "checkpoint shapes readable"


def config_unmet(config: LdmConfigFacts, no_config: str = "No --config was given.") -> Optional[str]:
    if not config.given:
        return no_config
    if not config.loaded:
        return "The config could not be read (see config.load)."
    return None


def shapes_unmet(layout: CheckpointShapes) -> Optional[Dict[str, Any]]:
    """(reason, evidence) when the checkpoint's shapes could not be read."""
    if layout.ok:
        return None
    err = layout.error or {}
    if err.get("kind") == "no-checkpoint":
        return {"reason": "No --checkpoint was given: nothing to compare the config with.", "evidence": {}}
    hint = " (see ckpt.weights-only-refused)" if err.get("kind") == "weights-only-refused" else " (see ckpt.*)"
    return {"reason": f"The checkpoint's tensor shapes could not be read: {err.get('message')}{hint}",
            "evidence": {"error": err}}


def verdict(code: str, status: Status, summary: str, **details: Any) -> Finding:
    return Finding(code, status, TITLES[code], summary, **details)


def skipped(code: str, reason: str, **evidence: Any) -> Finding:
    return Finding(code, Status.SKIP, TITLES[code], reason, evidence=evidence)


def passed(code: str, summary: str, **evidence: Any) -> Finding:
    return Finding(code, Status.OK, TITLES[code], summary, evidence=evidence)


def compares(code: str):
    """A config-vs-checkpoint rule: runs once the config is loaded and the checkpoint's shapes are read."""
    def wrap(rule):
        @functools.wraps(rule)
        def run(config: LdmConfigFacts, shapes: Shapes, layout: Optional[CheckpointShapes] = None, *args, **kwargs):
            unmet = config_unmet(config)
            if unmet:
                return skipped(code, unmet)
            missing = shapes_unmet(layout if layout is not None else CheckpointShapes(ok=True))
            if missing:
                return skipped(code, missing["reason"], **missing["evidence"])
            return rule(config, shapes, *args, **kwargs)
        run.preconditions = (CONFIG_GIVEN, CONFIG_LOADED, SHAPES_READABLE)
        return run
    return wrap


def config_line(config: LdmConfigFacts, dotted: str) -> Optional[int]:
    return (config.lines or {}).get(dotted)


def config_where(config: LdmConfigFacts, dotted: str) -> str:
    line = config_line(config, dotted)
    return f"{config.path}:{line}" if line else str(config.path)


def unet_params(summary: Mapping[str, Any]) -> Dict[str, Any]:
    return dict(((summary.get("unet_config") or {}).get("params")) or {})
