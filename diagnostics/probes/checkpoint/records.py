"""What every checkpoint reader produces: one `TensorRecord` per tensor, in one dtype vocabulary.

The safetensors header, a torch `data.pkl` and a diffusers folder all describe tensors differently
(`F16`, `torch.HalfStorage`, ...). The readers translate into these records so that layout analysis,
the deep scan and the value reader never care which container a tensor came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

# name -> (bits per element, safetensors code, torch legacy storage class)
DTYPES: Dict[str, Tuple[int, Optional[str], Optional[str]]] = {
    "float64": (64, "F64", "DoubleStorage"),
    "float32": (32, "F32", "FloatStorage"),
    "float16": (16, "F16", "HalfStorage"),
    "bfloat16": (16, "BF16", "BFloat16Storage"),
    "int64": (64, "I64", "LongStorage"),
    "int32": (32, "I32", "IntStorage"),
    "int16": (16, "I16", "ShortStorage"),
    "int8": (8, "I8", "CharStorage"),
    "uint8": (8, "U8", "ByteStorage"),
    "bool": (8, "BOOL", "BoolStorage"),
    "uint16": (16, "U16", None),
    "uint32": (32, "U32", None),
    "uint64": (64, "U64", None),
    "complex64": (64, "C64", "ComplexFloatStorage"),
    "complex128": (128, None, "ComplexDoubleStorage"),
    "float8_e4m3fn": (8, "F8_E4M3", None),
    "float8_e5m2": (8, "F8_E5M2", None),
    "float8_e4m3fnuz": (8, "F8_E4M3FNUZ", None),
    "float8_e5m2fnuz": (8, "F8_E5M2FNUZ", None),
    "float8_e8m0fnu": (8, "F8_E8M0", None),
    "float4_e2m1": (4, "F4", None),
    "float6_e2m3": (6, "F6_E2M3", None),
    "float6_e3m2": (6, "F6_E3M2", None),
    "qint8": (8, None, "QInt8Storage"),
    "quint8": (8, None, "QUInt8Storage"),
    "qint32": (32, None, "QInt32Storage"),
    "quint4x2": (8, None, "QUInt4x2Storage"),
    "quint2x4": (8, None, "QUInt2x4Storage"),
}

SAFETENSORS_DTYPES: Dict[str, str] = {code: name for name, (_, code, _) in DTYPES.items() if code}
STORAGE_DTYPES: Dict[str, str] = {storage: name for name, (_, _, storage) in DTYPES.items() if storage}

FLOAT_DTYPES = frozenset(
    ("float64", "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz",
     "float8_e5m2fnuz", "float8_e8m0fnu", "float4_e2m1", "float6_e2m3", "float6_e3m2")
)


def bits_of(dtype: str) -> int:
    return DTYPES[dtype][0] if dtype in DTYPES else 0


def itemsize(dtype: str) -> int:
    """Bytes per element, rounded up (sub-byte dtypes are only sized through `nbytes_of`)."""
    return max(1, (bits_of(dtype) + 7) // 8)


def numel_of(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def nbytes_of(dtype: str, shape) -> int:
    return (numel_of(shape) * bits_of(dtype) + 7) // 8


@dataclass
class TensorRecord:
    """One tensor as the file describes it; `offset` is the absolute file offset of its first byte."""

    name: str
    dtype: str
    shape: Tuple[int, ...]
    offset: Optional[int] = None  # None when the bytes cannot be located (missing storage, ...)
    storage: Optional[str] = None  # torch storage key; tensors sharing a storage share bytes
    contiguous: bool = True
    source: str = ""  # zip member / file part, for messages
    file: Optional[str] = None  # the file holding the bytes when it is not the inspected path (folders)
    within: int = 0  # byte offset inside its storage (torch zip: `offset` is resolved from it on demand)

    @property
    def numel(self) -> int:
        return numel_of(self.shape)

    @property
    def nbytes(self) -> int:
        return nbytes_of(self.dtype, self.shape)


@dataclass
class ReadResult:
    """What a container reader returns: tensors, top-level metadata, safety facts and problems."""

    tensors: List[TensorRecord] = field(default_factory=list)
    problems: List[Problem] = field(default_factory=list)
    container: Dict = field(default_factory=dict)
    pickle: Optional[Dict] = None  # safety facts for pickle-based formats
    training: Dict = field(default_factory=dict)
    top_level_keys: List[str] = field(default_factory=list)
    non_tensor_entries: List[Dict] = field(default_factory=list)
    other_tensors: Dict = field(default_factory=dict)  # tensors outside the state dict (optimizer states)
    metadata: Dict = field(default_factory=dict)  # safetensors __metadata__, diffusers configs
    hints: Dict = field(default_factory=dict)  # reader-specific facts for layout analysis
    # Fills `offset` of the given records from an open handle (torch zip: one local-header read per
    # storage, done only for the tensors whose bytes are read); None when offsets are already known.
    resolve: Optional[Callable[[Any, List["TensorRecord"]], None]] = None


class Problem(Mapping):
    """A structural fact about bad input: its `kind` (e.g. `truncated-zip`), a message and evidence.

    The probe names only the kind; which finding reports it (`code`), how bad it is (`severity`), and the
    cause and fix a person reads come from the rules' table (`rules/checkpoint/problems.py`). Read as a
    mapping, a problem is its JSON form (`code`, `kind`, `message`, `severity` where the table gives one,
    then the evidence), which is what `inspect --json` prints.
    """

    __slots__ = ("kind", "message", "evidence")

    def __init__(self, kind: str, message: str, evidence: Optional[Dict[str, Any]] = None) -> None:
        self.kind = kind
        self.message = message
        self.evidence: Dict[str, Any] = dict(evidence or {})

    @property
    def row(self):
        from ...rules.checkpoint.problems import problem_row

        return problem_row(self.kind)

    @property
    def code(self) -> str:
        return self.row.code

    @property
    def severity(self) -> Optional[str]:
        return self.row.severity

    @property
    def blocks_reading(self) -> bool:
        """The file's structure is damaged: its tensor records cannot be trusted."""
        return self.row.blocks_reading

    def with_evidence(self, **evidence: Any) -> "Problem":
        return Problem(self.kind, self.message, dict(self.evidence, **evidence))

    def to_dict(self) -> Dict[str, Any]:
        item: Dict[str, Any] = {"code": self.code, "kind": self.kind, "message": self.message}
        if self.severity is not None:
            item["severity"] = self.severity
        item.update(self.evidence)
        return item

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Problem):
            return (self.kind, self.message, self.evidence) == (other.kind, other.message, other.evidence)
        return Mapping.__eq__(self, other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Problem({self.kind!r}, {self.message!r}, {self.evidence!r})"


def problem(kind: str, message: str, **evidence: Any) -> Problem:
    """A structural fact about bad input; the rules' table turns `kind` into code, cause and fix."""
    return Problem(kind, message, evidence)
