"""Checkpoint rules: the facts of `probes.checkpoint` turned into `ckpt.*` findings.

Each rule is a pure function of the checkpoint facts (plus, where the verdict depends on them, the
installed torch / transformers versions and the environment), so the tests feed them hand-made
facts. Each check declares its preconditions (`common.py`): a checkpoint given, its content read,
EMA weights there; the registry evaluates them, and an unmet one is the check's `skip`, whose reason
points at `ckpt.format` / `ckpt.corrupt`, which say why. The modules, by what they judge:

- `problems.py`: the table from a probe's problem kind to finding, cause and fix;
- `integrity.py`: file format, structure, pickle safety, torch's weights_only loader;
- `content.py`: components, family, CLIP, NaN/Inf, dtypes, hashes;
- `ema.py`: the EMA shadow weights.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Mapping, Optional, Tuple

from ...findings import Finding
from ...probes.checkpoint.facts import CheckpointFacts
from ...registry import Check
from . import content, ema, integrity
from .common import CHECKPOINT_GIVEN, CHECKPOINT_READABLE, EMA_PRESENT, NO_CHECKPOINT, TITLES, UNREADABLE
from .problems import DOWNLOAD_FIX, PROBLEMS, ProblemRow, problem_row

text_encoder_loaded_by = content.text_encoder_loaded_by

READ = (CHECKPOINT_GIVEN, CHECKPOINT_READABLE)
WITH_EMA = READ + (EMA_PRESENT,)


def _facts_only(rule):
    return lambda checkpoint: rule(checkpoint)


def _with_transformers(rule):
    return lambda checkpoint, versions: rule(checkpoint, versions.get("transformers"))


def _with_torch(rule):
    return lambda checkpoint, versions, environ: rule(checkpoint, versions.get("torch"), environ)


_FACTS, _TRANSFORMERS, _TORCH = ("checkpoint",), ("checkpoint", "versions"), ("checkpoint", "versions", "environ")

# The declarations, in report order: code, rule, preconditions, and the facts the rule reads.
DECLARED: Tuple[Tuple[str, Callable[..., Finding], tuple, Tuple[str, ...]], ...] = (
    ("ckpt.format", integrity.rule_format, (CHECKPOINT_GIVEN,), _FACTS),
    ("ckpt.corrupt", integrity.rule_corrupt, (CHECKPOINT_GIVEN,), _FACTS),
    ("ckpt.unsafe-pickle", integrity.rule_unsafe_pickle, READ, _FACTS),
    ("ckpt.weights-only-refused", integrity.rule_weights_only, READ, _TORCH),
    ("ckpt.components", content.rule_components, READ, _FACTS),
    ("ckpt.family", content.rule_family, READ, _FACTS),
    ("ckpt.clip-missing", content.rule_clip_missing, READ, _TRANSFORMERS),
    ("ckpt.clip-position-ids", content.rule_clip_position_ids, READ, _TRANSFORMERS),
    ("ckpt.ema-absent", ema.rule_ema_absent, READ, _FACTS),
    ("ckpt.ema-incomplete", ema.rule_ema_incomplete, WITH_EMA, _FACTS),
    ("ckpt.ema-shape-mismatch", ema.rule_ema_shape_mismatch, WITH_EMA, _FACTS),
    ("ckpt.ema-untrained", ema.rule_ema_untrained, WITH_EMA, _FACTS),
    ("ckpt.nonfinite", content.rule_nonfinite, READ, _FACTS),
    ("ckpt.dtype", content.rule_dtype, READ, _FACTS),
    ("ckpt.hash", content.rule_hash, (CHECKPOINT_GIVEN,), _FACTS),
)
_ADAPTERS = {_FACTS: _facts_only, _TRANSFORMERS: _with_transformers, _TORCH: _with_torch}

CHECKS: List[Check] = [Check(code, TITLES[code], _ADAPTERS[reads](rule), reads=reads, requires=needs)
                       for code, rule, needs, reads in DECLARED]
BY_CODE: Dict[str, Check] = {check.code: check for check in CHECKS}


def _direct(code: str):
    """`rule(facts, *version/environ arguments)`: the declared check evaluated on facts given by hand."""
    check = BY_CODE[code]

    def run(facts: CheckpointFacts, *args) -> Finding:
        values = {"checkpoint": facts, "versions": {}, "environ": {}}
        if check.reads == _TRANSFORMERS and args:
            values["versions"] = {"transformers": args[0]}
        elif check.reads == _TORCH and args:
            values["versions"], values["environ"] = {"torch": args[0]}, args[1] if len(args) > 1 else {}
        return check.evaluate(**values)[0]
    run.__name__ = run.__qualname__ = "rule_" + code.split(".", 1)[1].replace("-", "_")
    return run


rule_format = _direct("ckpt.format")
rule_corrupt = _direct("ckpt.corrupt")
rule_unsafe_pickle = _direct("ckpt.unsafe-pickle")
rule_weights_only = _direct("ckpt.weights-only-refused")
rule_components = _direct("ckpt.components")
rule_family = _direct("ckpt.family")
rule_clip_missing = _direct("ckpt.clip-missing")
rule_clip_position_ids = _direct("ckpt.clip-position-ids")
rule_ema_absent = _direct("ckpt.ema-absent")
rule_ema_incomplete = _direct("ckpt.ema-incomplete")
rule_ema_shape_mismatch = _direct("ckpt.ema-shape-mismatch")
rule_ema_untrained = _direct("ckpt.ema-untrained")
rule_nonfinite = _direct("ckpt.nonfinite")
rule_dtype = _direct("ckpt.dtype")
rule_hash = _direct("ckpt.hash")


def all_rules(facts: CheckpointFacts, versions: Mapping[str, Optional[str]], environ: Mapping[str, str]) -> List[Finding]:
    """Every ckpt.* finding for one set of facts, in report order (what `inspect` prints)."""
    return [f for check in CHECKS for f in check.evaluate(checkpoint=facts, versions=versions, environ=environ)]


__all__ = ["BY_CODE", "CHECKS", "DECLARED", "DOWNLOAD_FIX", "NO_CHECKPOINT", "PROBLEMS", "ProblemRow", "UNREADABLE",
           "all_rules", "problem_row", "text_encoder_loaded_by"] + [name for name in dict(globals())
                                                                     if name.startswith("rule_")]
