"""Config vs checkpoint, decided before any model is built (knowledge base K07, K08, K09).

Each rule takes the config facts (`probes/ldm_config.py`, `LdmConfigFacts`) and the checkpoint's key ->
shape map (`probes/checkpoint/shapes.py`) as plain data, so every mismatch is tested with hand-made
facts. The checkpoint layout (prefixes, anchors, variants, text-encoder kinds) is the checkpoint
package's (`probes/checkpoint/layout.py`). The rules return unstamped findings; each check's code and
title are written once, in `CHECKS` below. The modules:

- `common.py`: preconditions (config given / loaded, checkpoint shapes readable), config lines;
- `load.py`: config.load, config.targets;
- `compare.py`: config.in-channels, config.context-dim, config.use-ema;
- `cond_stage.py`: config.cond-stage.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from ...findings import Finding
from ...probes.checkpoint.layout import (ATTN2_TO_K, CLIP_PREFIX, EMA, EMA_SCALARS, FLAT_PREFIX, OPENCLIP_PREFIX,
                                         PROJ_IN, SDXL_PREFIX, UNET, UNET_IN, UNET_OUT, VARIANT_TEXT, first_match,
                                         text_encoder_kind, text_encoder_width)
from ...probes.checkpoint.shapes import CheckpointShapes
from ...probes.ldm_config import LdmConfigFacts, find_target, target_search_path
from ...registry import Check, Precondition
from . import compare, cond_stage, load
from .common import COMPARED, CONFIG_GIVEN, CONFIG_LOADED, NO_CONFIG, SHAPES_READABLE, shapes_unmet
from .compare import CONFIG_FOR, FAMILIES
from .cond_stage import TE_NAMES, TEXT_ENCODERS, clip_key_style

NO_CONFIG_TO_LOAD = "No --config was given (pass the inference yaml, e.g. v1-inference.yaml)."
CONFIG_TO_LOAD = Precondition("config given", ("ldm_config",),
                              lambda ldm_config: None if ldm_config.given else NO_CONFIG_TO_LOAD)


def resolve_targets(config: LdmConfigFacts, code_root: Optional[str]) -> List[Dict[str, Any]]:
    """find_target() for every `target` of the config (source files looked up, nothing imported)."""
    search = target_search_path(code_root)
    resolved = []
    for entry in config.targets or []:
        found = find_target(entry["target"], search)
        found["path"] = entry["path"]
        resolved.append(found)
    return resolved


def _targets(ldm_config: LdmConfigFacts, options) -> Finding:
    return load.rule_config_targets(ldm_config, resolve_targets(ldm_config, options.code_root), options.code_root)


def _compared(rule):
    return lambda ldm_config, checkpoint_layout: rule(ldm_config, checkpoint_layout.shapes)


def _cond_stage(ldm_config: LdmConfigFacts, checkpoint_layout: CheckpointShapes, versions) -> Finding:
    return cond_stage.rule_cond_stage(ldm_config, checkpoint_layout.shapes, versions.get("transformers"))


_COMPARE_READS = ("ldm_config", "checkpoint_layout")
# The declarations, in report order: code, title (what is checked; it reads right with any status), rule,
# the facts it reads and the preconditions.
CHECKS: List[Check] = [
    Check("config.load", "LDM config file", lambda ldm_config: load.rule_config_load(ldm_config),
          reads=("ldm_config",), requires=(CONFIG_TO_LOAD,)),
    Check("config.targets", "Config targets in the code", _targets, reads=("ldm_config", "options"),
          requires=(CONFIG_GIVEN, CONFIG_LOADED)),
    Check("config.in-channels", "UNet input channels: config vs checkpoint", _compared(compare.rule_in_channels),
          reads=_COMPARE_READS, requires=COMPARED),
    Check("config.context-dim", "Cross-attention width: config vs checkpoint (SD1 vs SD2)",
          _compared(compare.rule_context_dim), reads=_COMPARE_READS, requires=COMPARED),
    Check("config.use-ema", "use_ema vs EMA weights in the checkpoint", _compared(compare.rule_use_ema),
          reads=_COMPARE_READS, requires=COMPARED),
    Check("config.cond-stage", "Text encoder: config vs checkpoint", _cond_stage,
          reads=_COMPARE_READS + ("versions",), requires=COMPARED),
]
BY_CODE: Dict[str, Check] = {check.code: check for check in CHECKS}
