"""Which of the checkpoint's tensors are the CLIP ViT-L/14 text tower, read without running the file.

The records come from the checkpoint package's `read_tensor_records` (the dispatch `inspect` uses),
with every tensor's file offset located. The text tower's prefixes are the layout's (`PREFIXES` of
`probes/checkpoint/layout.py`, text-encoder kind `clip-l`): SD 1.x `text_model.*` names, NAI-style
flat names, SDXL's `conditioner.embedders.0.transformer.*`, a diffusers `text_encoder/`; each is
renamed to the Hub's `text_model.*` names.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ...probes.checkpoint.layout import PREFIXES
from ...util import version_at_least
from .tower import POSITION_IDS, VIT_L14, TextTower

WEIGHT_DTYPES = ("float16", "float32", "bfloat16")
_FLAT_ROOTS = ("embeddings.", "encoder.", "final_layer_norm.")
# Who stores a CLIP-L text tower under a layout prefix: (nested `text_model.*` spelling, flat spelling).
ORIGINS = (
    ("cond_stage_model.", ("SD 1.x", "flat / NAI-style")),
    ("conditioner.", ("SDXL CLIP-L", "SDXL CLIP-L, flat")),
    ("text_encoder/", ("diffusers folder", "diffusers folder, flat")),
)


def _clip_l_sources() -> Tuple[Tuple[str, bool, str], ...]:
    """(prefix, whether `text_model.` follows, label) for each CLIP-L prefix of the layout, nested first.

    A diffusers `text_encoder/` holds either spelling, so it gives both.
    """
    sources: List[Tuple[str, bool, str]] = []
    for prefix, _component, kind, key_style in PREFIXES:
        if kind != "clip-l":
            continue
        nested_origin, flat_origin = next(names for root, names in ORIGINS if prefix.startswith(root))
        if key_style in ("text_model", "diffusers"):
            nested = prefix if key_style == "text_model" else prefix + "text_model."
            sources.append((nested, True, f"{nested_origin} ({nested}*)"))
        if key_style in ("flat", "diffusers"):
            sources.append((prefix, False, f"{flat_origin} ({prefix}*)"))
    return tuple(sources)


# Where checkpoints keep the CLIP ViT-L/14 text tower: (prefix, whether `text_model.` follows, label).
SOURCES: Tuple[Tuple[str, bool, str], ...] = _clip_l_sources()


@dataclass
class CheckpointRead:
    """Tensor records of a checkpoint, with the layout facts and the reader's problems."""

    path: str
    format: str = "unknown"
    records: List[Any] = field(default_factory=list)
    problems: List[Dict[str, Any]] = field(default_factory=list)
    layout: Dict[str, Any] = field(default_factory=dict)
    unsafe_globals: List[str] = field(default_factory=list)
    byteorder: str = "little"
    seconds: float = 0.0


def read_checkpoint(path: str) -> CheckpointRead:
    """Every tensor record with its file offset located, through the checkpoint package's
    `read_tensor_records` (the same dispatch `inspect` uses). Never raises."""
    from ...probes.checkpoint import read_tensor_records
    from ...probes.checkpoint.layout import analyse

    start = time.perf_counter()
    read = read_tensor_records(path, locate=True)
    out = CheckpointRead(path=path, format=read.format, records=list(read.records), problems=read.all_problems,
                         unsafe_globals=read.unsafe_globals, byteorder=read.byteorder)
    if read.result is not None:
        try:
            out.layout = analyse(out.records)
        except Exception as exc:  # layout facts are for messages only
            out.layout = {"error": f"{type(exc).__name__}: {exc}"}
    out.seconds = time.perf_counter() - start
    return out


@dataclass
class Selection:
    """The chosen text-encoder tensors, or why there are none usable."""

    ok: bool
    prefix: Optional[str] = None
    label: Optional[str] = None
    tensors: Dict[str, Any] = field(default_factory=dict)  # target (text_model.*) name -> TensorRecord
    missing: List[str] = field(default_factory=list)
    wrong_shapes: List[Dict[str, Any]] = field(default_factory=list)
    bad_dtypes: List[Dict[str, Any]] = field(default_factory=list)
    unlocated: List[str] = field(default_factory=list)
    ignored: List[str] = field(default_factory=list)  # source keys under the prefix that are not weights
    candidates: List[Dict[str, Any]] = field(default_factory=list)
    reason: str = ""

    @property
    def dtypes(self) -> Dict[str, int]:
        counts: Dict[str, int] = {}
        for record in self.tensors.values():
            counts[record.dtype] = counts.get(record.dtype, 0) + 1
        return counts

    @property
    def nbytes(self) -> int:
        return sum(record.nbytes for record in self.tensors.values())


def spelling_applied(prefix: str, transformers_version: Optional[str]) -> Optional[bool]:
    """Whether ldm's load_state_dict(strict=False) applies the text-encoder keys spelt as under `prefix`
    with this transformers: CLIPTextModel names its keys `text_model.*` before transformers 5, flat from 5
    on; the other spelling is dropped as unexpected. None when the version is unknown."""
    is_v5 = version_at_least(transformers_version, "5") if transformers_version else None
    if is_v5 is None:
        return None
    return prefix.endswith("text_model.") != bool(is_v5)


def _target_name(name: str) -> Optional[Tuple[str, str]]:
    """(source prefix, text_model.* name) for a checkpoint key of a CLIP-L text tower, else None."""
    for prefix, nested, _ in SOURCES:
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix):]
        if not nested and rest.startswith("text_model."):
            continue  # belongs to the nested prefix listed before this one
        if not nested and not rest.startswith(_FLAT_ROOTS):
            return prefix, ""  # under the prefix but not a text-tower tensor (e.g. a projection)
        return prefix, "text_model." + rest
    return None


def _group_by_source(records: List[Any], expected: Dict[str, Tuple[int, ...]]):
    """({prefix: {text_model.* name: record}}, {prefix: [keys under it that are not weights]})."""
    groups: Dict[str, Dict[str, Any]] = {}
    ignored: Dict[str, List[str]] = {}
    for record in records:
        hit = _target_name(record.name)
        if hit is None:
            continue
        prefix, target = hit
        if not target or target == POSITION_IDS or target not in expected:
            ignored.setdefault(prefix, []).append(record.name)
            continue
        groups.setdefault(prefix, {})[target] = record
    return groups, ignored


def _candidate(prefix: str, tensors: Dict[str, Any], expected: Dict[str, Tuple[int, ...]]) -> Dict[str, Any]:
    """What one source prefix offers: its tensors and everything that keeps them from being copied."""
    label = next(text for source, _, text in SOURCES if source == prefix)
    missing = [name for name in expected if name not in tensors]
    wrong = [{"key": tensors[name].name, "shape": list(tensors[name].shape), "expected": list(shape)}
             for name, shape in expected.items() if name in tensors and tuple(tensors[name].shape) != shape]
    bad = [{"key": record.name, "dtype": record.dtype} for record in tensors.values()
           if record.dtype not in WEIGHT_DTYPES]
    unlocated = [record.name for record in tensors.values() if record.offset is None or not record.contiguous]
    return {"prefix": prefix, "label": label, "tensors": tensors, "missing": missing,
            "wrong_shapes": wrong, "bad_dtypes": bad, "unlocated": unlocated,
            "complete": not missing and not wrong and not bad and not unlocated}


def select_text_encoder(records: List[Any], tower: TextTower = VIT_L14,
                        transformers_version: Optional[str] = None) -> Selection:
    """Group the records by source prefix and pick one complete text tower of `tower`'s shapes.

    When a file holds two complete spellings of the same encoder, the one that ldm's
    load_state_dict(strict=False) applies with this transformers wins (flat names for transformers 5,
    `text_model.*` before), so the provisioned model is the one the LDM ends up with.
    """
    expected = tower.expected_shapes()
    groups, ignored = _group_by_source(records, expected)
    if not groups:
        return Selection(False, reason="no-text-encoder", ignored=[n for names in ignored.values() for n in names][:20])
    candidates = [_candidate(prefix, tensors, expected) for prefix, tensors in groups.items()]
    complete = [c for c in candidates if c["complete"]]
    if len(complete) > 1 and transformers_version:
        applied = [c for c in complete if spelling_applied(c["prefix"], transformers_version)]
        complete = applied + [c for c in complete if c not in applied]
    summary = [{k: (len(v) if k == "tensors" else v[:10] if isinstance(v, list) else v) for k, v in c.items()}
               for c in candidates]  # evidence: counts and the first names, not 196 of them
    if complete:
        chosen = complete[0]
        return Selection(True, prefix=chosen["prefix"], label=chosen["label"], tensors=chosen["tensors"],
                         candidates=summary, ignored=ignored.get(chosen["prefix"], [])[:20])
    best = max(candidates, key=lambda c: len(c["tensors"]) - len(c["wrong_shapes"]))
    reason = "wrong-shapes" if best["wrong_shapes"] else "bad-dtype" if best["bad_dtypes"] else \
        "unlocated" if best["unlocated"] and not best["missing"] else "incomplete"
    return Selection(False, prefix=best["prefix"], label=best["label"], tensors=best["tensors"],
                     missing=best["missing"], wrong_shapes=best["wrong_shapes"][:20],
                     bad_dtypes=best["bad_dtypes"][:20],
                     unlocated=best["unlocated"][:20], candidates=summary, reason=reason)


def refusal(selection: Selection, tower: TextTower, te_kind: Optional[str]) -> Tuple[str, str]:
    """(state, message) for a checkpoint whose text encoder cannot be provisioned."""
    if selection.reason == "no-text-encoder":
        other = f" (its text encoder is {te_kind}, not CLIP ViT-L/14)" if te_kind and "clip-l" not in te_kind else ""
        return "no-text-encoder", (f"The checkpoint has no CLIP ViT-L/14 text encoder{other}: there is nothing to "
                                   "extract.")
    if selection.reason == "wrong-shapes":
        first = selection.wrong_shapes[0]
        detail = (f"{len(selection.wrong_shapes)} tensors have other shapes than the {tower.name} (first: "
                  f"{first['key']} {first['shape']}, expected {first['expected']})")
    elif selection.reason == "bad-dtype":
        detail = f"tensors in dtypes this remedy does not copy: {sorted({b['dtype'] for b in selection.bad_dtypes})}"
    elif selection.reason == "unlocated":
        detail = (f"{len(selection.unlocated)} tensors cannot be located in the file or are not contiguous "
                  f"(first: {selection.unlocated[0]})")
    else:
        detail = (f"{len(selection.missing)} of {len(tower.expected_shapes())} tensors are missing "
                  f"(first: {selection.missing[0]})")
    return "unusable-text-encoder", f"The text encoder under {selection.prefix}* cannot be provisioned: {detail}."
