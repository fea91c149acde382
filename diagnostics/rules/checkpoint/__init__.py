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

from typing import Dict, List, Mapping, Optional

from ...findings import Finding
from ...probes.checkpoint.facts import CheckpointFacts
from ...registry import Check
from . import content, ema, integrity
from .common import CHECKPOINT_GIVEN, CHECKPOINT_READABLE, EMA_PRESENT, NO_CHECKPOINT, UNREADABLE
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

# The declarations, in report order: code, title (what is checked; it reads right with any status), rule,
# the facts the rule reads and the preconditions.
CHECKS: List[Check] = [
    Check("ckpt.format", "Checkpoint file format",
          _facts_only(integrity.rule_format), reads=_FACTS, requires=(CHECKPOINT_GIVEN,)),
    Check("ckpt.corrupt", "Checkpoint file integrity",
          _facts_only(integrity.rule_corrupt), reads=_FACTS, requires=(CHECKPOINT_GIVEN,)),
    Check("ckpt.unsafe-pickle", "Checkpoint code safety (pickle globals)",
          _facts_only(integrity.rule_unsafe_pickle), reads=_FACTS, requires=READ),
    Check("ckpt.weights-only-refused", "torch.load(weights_only=True) on this checkpoint",
          _with_torch(integrity.rule_weights_only), reads=_TORCH, requires=READ),
    Check("ckpt.components", "Checkpoint components",
          _facts_only(content.rule_components), reads=_FACTS, requires=READ),
    Check("ckpt.family", "Model family and variant",
          _facts_only(content.rule_family), reads=_FACTS, requires=READ),
    Check("ckpt.clip-missing", "CLIP text encoder in the checkpoint",
          _with_transformers(content.rule_clip_missing), reads=_TRANSFORMERS, requires=READ),
    Check("ckpt.clip-position-ids", "CLIP position_ids",
          _with_transformers(content.rule_clip_position_ids), reads=_TRANSFORMERS, requires=READ),
    Check("ckpt.ema-absent", "EMA weights in the checkpoint",
          _facts_only(ema.rule_ema_absent), reads=_FACTS, requires=READ),
    Check("ckpt.ema-incomplete", "EMA coverage of the UNet",
          _facts_only(ema.rule_ema_incomplete), reads=_FACTS, requires=WITH_EMA),
    Check("ckpt.ema-shape-mismatch", "EMA shapes vs the UNet",
          _facts_only(ema.rule_ema_shape_mismatch), reads=_FACTS, requires=WITH_EMA),
    Check("ckpt.ema-untrained", "EMA weights vs their initial values",
          _facts_only(ema.rule_ema_untrained), reads=_FACTS, requires=WITH_EMA),
    Check("ckpt.nonfinite", "NaN / Inf weights",
          _facts_only(content.rule_nonfinite), reads=_FACTS, requires=READ),
    Check("ckpt.dtype", "Tensor dtypes and sizes",
          _facts_only(content.rule_dtype), reads=_FACTS, requires=READ),
    Check("ckpt.hash", "Checkpoint hashes",
          _facts_only(content.rule_hash), reads=_FACTS, requires=(CHECKPOINT_GIVEN,)),
]
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


__all__ = ["BY_CODE", "CHECKS", "DOWNLOAD_FIX", "NO_CHECKPOINT", "PROBLEMS", "ProblemRow", "UNREADABLE",
           "all_rules", "problem_row", "text_encoder_loaded_by"] + [name for name in dict(globals())
                                                                     if name.startswith("rule_")]
