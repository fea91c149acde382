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

import functools
from typing import Any, List, Mapping, Optional, Sequence

from ...findings import Finding
from ...probes.checkpoint.layout import (ATTN2_TO_K, CLIP_PREFIX, EMA, EMA_SCALARS, FLAT_PREFIX, OPENCLIP_PREFIX,
                                         PROJ_IN, SDXL_PREFIX, UNET, UNET_IN, UNET_OUT, VARIANT_TEXT, first_match,
                                         text_encoder_kind, text_encoder_width)
from ...probes.checkpoint.shapes import CheckpointShapes
from ...probes.ldm_config import LdmConfigFacts, find_target, probe_ldm_config, target_search_path
from ...registry import Check
from . import compare, cond_stage, load
from .common import CONFIG_GIVEN, CONFIG_LOADED, SHAPES_READABLE, TITLES, compares, config_unmet, skipped
from .compare import CONFIG_FOR, FAMILIES
from .cond_stage import TE_NAMES, TEXT_ENCODERS, clip_key_style

NO_CONFIG_TO_LOAD = "No --config was given (pass the inference yaml, e.g. v1-inference.yaml)."


def _needs_config(code: str, loaded: bool = True, no_config: str = "No --config was given."):
    """CONFIG_GIVEN (and, with `loaded`, CONFIG_LOADED) before the rule."""
    def wrap(rule):
        @functools.wraps(rule)
        def run(config: LdmConfigFacts, *args):
            unmet = config_unmet(config, no_config) if loaded or not config.given else None
            return skipped(code, unmet) if unmet else rule(config, *args)
        run.preconditions = (CONFIG_GIVEN, CONFIG_LOADED) if loaded else (CONFIG_GIVEN,)
        return run
    return wrap


rule_config_load = _needs_config("config.load", loaded=False, no_config=NO_CONFIG_TO_LOAD)(load.rule_config_load)
rule_config_targets = _needs_config("config.targets")(load.rule_config_targets)
rule_in_channels = compares("config.in-channels")(compare.rule_in_channels)
rule_context_dim = compares("config.context-dim")(compare.rule_context_dim)
rule_use_ema = compares("config.use-ema")(compare.rule_use_ema)
rule_cond_stage = compares("config.cond-stage")(cond_stage.rule_cond_stage)


def _config(ctx) -> LdmConfigFacts:
    return ctx.fact("ldm_config", probe_ldm_config)


def _layout(ctx) -> CheckpointShapes:
    from ...probes.model import checkpoint_shapes

    return checkpoint_shapes(ctx)


def _compare(rule):
    def run(ctx):
        config = _config(ctx)
        if not config.loaded:
            return [rule(config, {}, None)]
        layout = _layout(ctx)
        return [rule(config, layout.shapes, layout)]
    return run


def _cond_stage(ctx):
    from ...probes.environment import probe_environment

    config = _config(ctx)
    layout = _layout(ctx) if config.loaded else CheckpointShapes(ok=True)
    versions = ctx.fact("environment", probe_environment).get("packages") or {}
    return [rule_cond_stage(config, layout.shapes, layout, versions.get("transformers"))]


def _targets(ctx):
    config = _config(ctx)
    resolved = []
    if config.loaded:
        search = target_search_path(ctx.options.code_root)
        for entry in config.targets or []:
            found = find_target(entry["target"], search)
            found["path"] = entry["path"]
            resolved.append(found)
    return [rule_config_targets(config, resolved, ctx.options.code_root)]


CHECKS: List[Check] = [
    Check("config.load", TITLES["config.load"], lambda ctx: [rule_config_load(_config(ctx))]),
    Check("config.targets", TITLES["config.targets"], _targets),
    Check("config.in-channels", TITLES["config.in-channels"], _compare(rule_in_channels)),
    Check("config.context-dim", TITLES["config.context-dim"], _compare(rule_context_dim)),
    Check("config.use-ema", TITLES["config.use-ema"], _compare(rule_use_ema)),
    Check("config.cond-stage", TITLES["config.cond-stage"], _cond_stage),
]
