"""Config vs checkpoint, decided before any model is built (knowledge base K07, K08, K09).

Each rule takes the config facts (`probes/ldm_config.py`, `LdmConfigFacts`) and the checkpoint's key ->
shape map (`probes/checkpoint/shapes.py`) as plain data, so every mismatch is tested with hand-made
facts. The checkpoint layout (prefixes, anchors, variants, text-encoder kinds) is the checkpoint
package's (`probes/checkpoint/layout.py`). The modules:

- `common.py`: titles, preconditions (config given / loaded, checkpoint shapes readable), builders;
- `load.py`: config.load, config.targets;
- `compare.py`: config.in-channels, config.context-dim, config.use-ema;
- `cond_stage.py`: config.cond-stage.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Dict, List, Optional

from ...findings import Finding, Status
from ...probes.checkpoint.layout import (ATTN2_TO_K, CLIP_PREFIX, EMA, EMA_SCALARS, FLAT_PREFIX, OPENCLIP_PREFIX,
                                         PROJ_IN, SDXL_PREFIX, UNET, UNET_IN, UNET_OUT, VARIANT_TEXT, first_match,
                                         text_encoder_kind, text_encoder_width)
from ...probes.checkpoint.shapes import CheckpointShapes
from ...probes.ldm_config import LdmConfigFacts, find_target, target_search_path
from ...registry import Check, Precondition
from . import compare, cond_stage, load
from .common import (COMPARED, CONFIG_GIVEN, CONFIG_LOADED, NO_CONFIG, SHAPES_READABLE, TITLES, checkpoint_layout,
                     shapes_unmet)
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
    return lambda ldm_config, ctx: rule(ldm_config, checkpoint_layout(ctx).shapes)


def _cond_stage(ldm_config: LdmConfigFacts, ctx, versions) -> Finding:
    return cond_stage.rule_cond_stage(ldm_config, checkpoint_layout(ctx).shapes, versions.get("transformers"))


_COMPARE_READS = ("ldm_config", "ctx")
CHECKS: List[Check] = [
    Check("config.load", TITLES["config.load"], lambda ldm_config: load.rule_config_load(ldm_config), reads=("ldm_config",),
          requires=(CONFIG_TO_LOAD,)),
    Check("config.targets", TITLES["config.targets"], _targets, reads=("ldm_config", "options"),
          requires=(CONFIG_GIVEN, CONFIG_LOADED)),
    Check("config.in-channels", TITLES["config.in-channels"], _compared(compare.rule_in_channels),
          reads=_COMPARE_READS, requires=COMPARED),
    Check("config.context-dim", TITLES["config.context-dim"], _compared(compare.rule_context_dim),
          reads=_COMPARE_READS, requires=COMPARED),
    Check("config.use-ema", TITLES["config.use-ema"], _compared(compare.rule_use_ema), reads=_COMPARE_READS,
          requires=COMPARED),
    Check("config.cond-stage", TITLES["config.cond-stage"], _cond_stage, reads=_COMPARE_READS + ("versions",),
          requires=COMPARED),
]
BY_CODE: Dict[str, Check] = {check.code: check for check in CHECKS}


# The rules called on facts given by hand (tests): the declared check's preconditions, then the rule.
# `layout` is the checkpoint's CheckpointShapes; None means the shapes were read.

def _unmet(code: str, config: LdmConfigFacts, layout: Optional[CheckpointShapes] = None) -> Optional[Finding]:
    check = BY_CODE[code]
    for precondition in check.requires:
        if precondition is SHAPES_READABLE:
            reason = shapes_unmet(layout) if layout is not None else None
        else:
            reason = precondition.unmet(config)
        if reason is not None:
            found = reason if isinstance(reason, Finding) else Finding("", Status.SKIP, "", reason)
            return replace(found, code=check.code, title=check.title)
    return None


def rule_config_load(config: LdmConfigFacts) -> Finding:
    return _unmet("config.load", config) or load.rule_config_load(config)


def rule_config_targets(config: LdmConfigFacts, resolved, code_root: Optional[str] = None) -> Finding:
    return _unmet("config.targets", config) or load.rule_config_targets(config, resolved, code_root)


def rule_in_channels(config: LdmConfigFacts, shapes, layout: Optional[CheckpointShapes] = None) -> Finding:
    return _unmet("config.in-channels", config, layout) or compare.rule_in_channels(config, shapes)


def rule_context_dim(config: LdmConfigFacts, shapes, layout: Optional[CheckpointShapes] = None) -> Finding:
    return _unmet("config.context-dim", config, layout) or compare.rule_context_dim(config, shapes)


def rule_use_ema(config: LdmConfigFacts, shapes, layout: Optional[CheckpointShapes] = None) -> Finding:
    return _unmet("config.use-ema", config, layout) or compare.rule_use_ema(config, shapes)


def rule_cond_stage(config: LdmConfigFacts, shapes, layout: Optional[CheckpointShapes] = None,
                    transformers_version: Optional[str] = None) -> Finding:
    return (_unmet("config.cond-stage", config, layout)
            or cond_stage.rule_cond_stage(config, shapes, transformers_version))
