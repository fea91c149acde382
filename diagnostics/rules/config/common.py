"""What the config.* rules share: preconditions and config lines.

The rules return `verdict(status, summary, ...)` (`diagnostics.findings`); the registry stamps the
check's code and title, written once in the declarations (`__init__.py`)."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence

from ...findings import Finding, Status
from ...probes.checkpoint.shapes import CheckpointShapes
from ...probes.ldm_config import LdmConfigFacts
from ...registry import Precondition

Shapes = Mapping[str, Sequence[int]]

NO_CONFIG = "No --config was given."


def _not_given(ldm_config: LdmConfigFacts) -> Optional[str]:
    return None if ldm_config.given else NO_CONFIG


def _not_loaded(ldm_config: LdmConfigFacts) -> Optional[str]:
    return None if ldm_config.loaded else "The config could not be read (see config.load)."


def shapes_unmet(layout: CheckpointShapes) -> Optional[Finding]:
    """The skip when the checkpoint's shapes could not be read, else None."""
    if layout.ok:
        return None
    err = layout.error or {}
    if err.get("kind") == "no-checkpoint":
        return Finding("", Status.SKIP, "", "No --checkpoint was given: nothing to compare the config with.")
    hint = " (see ckpt.weights-only-refused)" if err.get("kind") == "weights-only-refused" else " (see ckpt.*)"
    return Finding("", Status.SKIP, "", f"The checkpoint's tensor shapes could not be read: {err.get('message')}{hint}",
                   evidence={"error": err})


CONFIG_GIVEN = Precondition("config given", ("ldm_config",), _not_given)
CONFIG_LOADED = Precondition("config loaded", ("ldm_config",), _not_loaded)
# The checkpoint's shapes (the `checkpoint_layout` fact) are read only once the preconditions before
# this one hold (the registry gathers them in order): no checkpoint is read for a config that is not there.
SHAPES_READABLE = Precondition("checkpoint shapes readable", ("checkpoint_layout",), shapes_unmet)
COMPARED = (CONFIG_GIVEN, CONFIG_LOADED, SHAPES_READABLE)


def config_line(config: LdmConfigFacts, dotted: str) -> Optional[int]:
    return (config.lines or {}).get(dotted)


def config_where(config: LdmConfigFacts, dotted: str) -> str:
    line = config_line(config, dotted)
    return f"{config.path}:{line}" if line else str(config.path)


def unet_params(summary: Mapping[str, Any]) -> Dict[str, Any]:
    return dict(((summary.get("unet_config") or {}).get("params")) or {})
