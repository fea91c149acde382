"""The checkpoint facts (`ctx.fact("checkpoint")`, `inspect --json`): one record with named fields.

The fields are in the order `inspect --json` prints them. The nested values (components, EMA,
training, pickle, container, deep scan, hashes) are the JSON-ready dicts the readers and the layout
analysis produce; their keys are documented where they are built (`layout.py`, `torch_zip.py`,
`torch_legacy.py`, `pickle_streams.py`, `deep.py`, `hashing.py`). Fields only some inputs produce start
`UNSET` and stay out of the JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ..fact_record import UNSET, FactRecord
from .records import Problem, TensorRecord

FORMATS = ("safetensors", "torch-zip", "torch-legacy", "pickle", "diffusers-dir", "unknown")
# Formats whose records come from our own non-executing readers (a diffusers folder is no single state dict).
STATE_DICT_FORMATS = ("safetensors", "torch-zip", "torch-legacy", "pickle")


def _no_text_encoder() -> Dict[str, Any]:
    return {"present": False, "kind": None, "key_style": None, "prefixes": [], "width": None}


def _no_ema() -> Dict[str, Any]:
    return {"present": False, "tensors": 0, "missing": [], "shape_mismatches": [], "num_updates": None, "decay": None}


def _no_training() -> Dict[str, Any]:
    return {"global_step": None, "epoch": None, "lightning_version": None}


@dataclass(eq=False)
class CheckpointFacts(FactRecord):
    """What `inspect_checkpoint` found at `path` (None: no checkpoint was given)."""

    path: Optional[str]
    realpath: Optional[str] = None
    format: str = "unknown"  # one of FORMATS
    content: Optional[str] = None  # the sniffed kind, "directory" or "diffusers-dir"; None when never opened
    size_bytes: Optional[int] = None
    analysed: bool = False  # a reader ran and the layout was analysed
    problems: List[Problem] = field(default_factory=list)
    container: Dict[str, Any] = field(default_factory=dict)
    safe: Optional[bool] = None  # no global outside the LDM allowlist (None: not known)
    unsafe_globals: List[str] = field(default_factory=list)
    pickle: Optional[Dict[str, Any]] = None  # pickle safety facts (pickle_streams.pickle_facts)
    weights_only: Optional[Dict[str, Any]] = None  # torch.load(weights_only=True) prediction
    tensors_total: int = 0
    parameters_total: int = 0
    tensor_bytes_total: int = 0
    components: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # layout.summarise, per component
    unknown_keys: List[str] = field(default_factory=list)
    unknown_keys_count: int = 0
    family: str = "unknown"  # sd1 | sd2 | sdxl | unknown
    family_evidence: Dict[str, Any] = field(default_factory=dict)
    variant: str = "unknown"  # txt2img | inpainting | depth | pix2pix | unknown
    unet_in_channels: Optional[int] = None
    unet: Dict[str, Any] = field(default_factory=dict)  # layout.unet_facts
    text_encoder: Dict[str, Any] = field(default_factory=_no_text_encoder)
    position_ids: str = "absent"  # ok | absent | broken | unreadable
    position_ids_detail: Dict[str, Any] = field(default_factory=lambda: {"status": "absent"})
    ema: Dict[str, Any] = field(default_factory=_no_ema)  # layout.ema_facts, plus values and deep-scan results
    training: Dict[str, Any] = field(default_factory=_no_training)
    metadata: Dict[str, Any] = field(default_factory=dict)
    non_tensor_entries: List[Dict[str, Any]] = field(default_factory=list)
    deep: Optional[Dict[str, Any]] = None  # --deep results (deep.deep_scan, merged)
    hash: Optional[Dict[str, Any]] = None  # --hash results (hashing.hash_file)
    seconds: Dict[str, float] = field(default_factory=dict)
    options: Any = UNSET  # {"deep", "hash"} as asked
    sniff: Any = UNSET  # sniff.sniff of the first bytes, when the file was opened
    duplicate_names: Any = UNSET  # set with the layout, like the two below
    position_ids_key: Any = UNSET
    position_ids_meta: Any = UNSET
    reader_hints: Any = UNSET
    diffusers: Any = UNSET  # a diffusers folder's configs and components
    nonfinite_tensors: Any = UNSET  # names, when the deep scan ran
    sha256: Any = UNSET  # when hashing succeeded
    readable: Any = UNSET  # analysed, and no problem that makes the tensor records untrustworthy
    # The tensor records themselves (for the config checks' key -> shape map); never printed.
    records: List[TensorRecord] = field(default_factory=list, metadata={"json": False})

    @classmethod
    def not_given(cls) -> "CheckpointFacts":
        return cls(path=None)

    @property
    def given(self) -> bool:
        return bool(self.path)

    def json_items(self) -> Iterator[Tuple[str, Any]]:
        if not self.given:  # what the probe has always said when no checkpoint was given
            return iter((("path", self.path), ("analysed", False), ("problems", self.problems)))
        return super().json_items()

    def problems_for(self, code: str) -> List[Problem]:
        """The problems the rules' table sends to finding `code`."""
        return [p for p in self.problems if p.code == code]

    def apply_layout(self, layout: Dict[str, Any]) -> None:
        """Take the header-only layout facts (`layout.analyse`); EMA facts join the defaults."""
        for name, value in layout.items():
            if name == "ema":
                self.ema = dict(self.ema, **value)
            else:
                setattr(self, name, value)

    @property
    def shapes(self) -> Dict[str, List[int]]:
        return {t.name: [int(d) for d in t.shape] for t in self.records}

    @property
    def dtypes(self) -> Dict[str, str]:
        return {t.name: t.dtype for t in self.records}
