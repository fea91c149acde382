"""Checkpoint rules: the facts of `probes.checkpoint` turned into `ckpt.*` findings.

Each rule is a pure function of the checkpoint facts (plus, where the verdict depends on them, the
installed torch / transformers versions and the environment), so the tests feed them hand-made
facts. Each check declares its preconditions (`common.py`): a checkpoint given, its content read,
EMA weights there; an unmet one is the check's `skip`, whose reason points at `ckpt.format` /
`ckpt.corrupt`, which say why. The modules, by what they judge:

- `problems.py`: the table from a probe's problem kind to finding, cause and fix;
- `integrity.py`: file format, structure, pickle safety, torch's weights_only loader;
- `content.py`: components, family, CLIP, NaN/Inf, dtypes, hashes;
- `ema.py`: the EMA shadow weights.
"""

from __future__ import annotations

from typing import Callable, List, Mapping, Optional, Tuple

from ...findings import Finding
from ...probes.checkpoint import probe_checkpoint
from ...probes.checkpoint.facts import CheckpointFacts
from ...probes.environment import installed_versions
from ...registry import Check
from . import content, ema, integrity
from .common import CHECKPOINT_GIVEN, CHECKPOINT_READABLE, EMA_PRESENT, NO_CHECKPOINT, TITLES, UNREADABLE, requires
from .problems import DOWNLOAD_FIX, PROBLEMS, ProblemRow, problem_row

text_encoder_loaded_by = content.text_encoder_loaded_by

READ = (CHECKPOINT_GIVEN, CHECKPOINT_READABLE)
WITH_EMA = READ + (EMA_PRESENT,)

# The declarations, in report order: code, rule, preconditions, and which of (torch version,
# transformers version, environment) the rule reads besides the facts.
DECLARED: Tuple[Tuple[str, Callable[..., Finding], tuple, Tuple[str, ...]], ...] = (
    ("ckpt.format", integrity.rule_format, (CHECKPOINT_GIVEN,), ()),
    ("ckpt.corrupt", integrity.rule_corrupt, (CHECKPOINT_GIVEN,), ()),
    ("ckpt.unsafe-pickle", integrity.rule_unsafe_pickle, READ, ()),
    ("ckpt.weights-only-refused", integrity.rule_weights_only, READ, ("torch", "environ")),
    ("ckpt.components", content.rule_components, READ, ()),
    ("ckpt.family", content.rule_family, READ, ()),
    ("ckpt.clip-missing", content.rule_clip_missing, READ, ("transformers",)),
    ("ckpt.clip-position-ids", content.rule_clip_position_ids, READ, ("transformers",)),
    ("ckpt.ema-absent", ema.rule_ema_absent, READ, ()),
    ("ckpt.ema-incomplete", ema.rule_ema_incomplete, WITH_EMA, ()),
    ("ckpt.ema-shape-mismatch", ema.rule_ema_shape_mismatch, WITH_EMA, ()),
    ("ckpt.ema-untrained", ema.rule_ema_untrained, WITH_EMA, ()),
    ("ckpt.nonfinite", content.rule_nonfinite, READ, ()),
    ("ckpt.dtype", content.rule_dtype, READ, ()),
    ("ckpt.hash", content.rule_hash, (CHECKPOINT_GIVEN,), ()),
)

# Each rule with its preconditions evaluated first (what a caller outside the registry uses).
GUARDED = {code: requires(code, *needs)(rule) for code, rule, needs, _ in DECLARED}
rule_format = GUARDED["ckpt.format"]
rule_corrupt = GUARDED["ckpt.corrupt"]
rule_unsafe_pickle = GUARDED["ckpt.unsafe-pickle"]
rule_weights_only = GUARDED["ckpt.weights-only-refused"]
rule_components = GUARDED["ckpt.components"]
rule_family = GUARDED["ckpt.family"]
rule_clip_missing = GUARDED["ckpt.clip-missing"]
rule_clip_position_ids = GUARDED["ckpt.clip-position-ids"]
rule_ema_absent = GUARDED["ckpt.ema-absent"]
rule_ema_incomplete = GUARDED["ckpt.ema-incomplete"]
rule_ema_shape_mismatch = GUARDED["ckpt.ema-shape-mismatch"]
rule_ema_untrained = GUARDED["ckpt.ema-untrained"]
rule_nonfinite = GUARDED["ckpt.nonfinite"]
rule_dtype = GUARDED["ckpt.dtype"]
rule_hash = GUARDED["ckpt.hash"]


def _arguments(reads: Tuple[str, ...], versions: Mapping[str, Optional[str]], environ: Mapping[str, str]) -> list:
    values = {"torch": versions.get("torch"), "transformers": versions.get("transformers"), "environ": environ}
    return [values[name] for name in reads]


def all_rules(facts: CheckpointFacts, versions: Mapping[str, Optional[str]], environ: Mapping[str, str]) -> List[Finding]:
    """Every ckpt.* finding for one set of facts, in report order (what `inspect` prints)."""
    return [GUARDED[code](facts, *_arguments(reads, versions, environ)) for code, _, _, reads in DECLARED]


def _check(code: str, reads: Tuple[str, ...]) -> Check:
    def run(ctx) -> List[Finding]:
        versions = installed_versions(ctx) if any(name != "environ" for name in reads) else {}
        return [GUARDED[code](ctx.fact("checkpoint", probe_checkpoint), *_arguments(reads, versions, ctx.environ))]
    return Check(code, TITLES[code], run)


CHECKS: List[Check] = [_check(code, reads) for code, _, _, reads in DECLARED]

__all__ = ["CHECKS", "DECLARED", "DOWNLOAD_FIX", "NO_CHECKPOINT", "PROBLEMS", "ProblemRow", "UNREADABLE", "all_rules",
           "problem_row", "text_encoder_loaded_by"] + [name for name in dict(globals()) if name.startswith("rule_")]
