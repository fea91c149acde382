"""The few tensor values inspection needs without `--deep`, read from their own bytes with `struct`.

`position_ids` (77 values, 616 bytes), `model_ema.decay` and `model_ema.num_updates` (one value each)
decide three findings; reading them costs a seek and a few hundred bytes, whatever the file size.
"""

from __future__ import annotations

import struct
from typing import Any, Dict, List, Optional

from .records import TensorRecord

_FORMATS = {"float64": "d", "float32": "f", "float16": "e", "int64": "q", "int32": "i", "int16": "h",
            "int8": "b", "uint8": "B", "bool": "?"}
MAX_VALUES = 4096


def read_values(fh, record: TensorRecord, limit: int = MAX_VALUES) -> Optional[List[Any]]:
    """The tensor's values in order (contiguous tensors of plain dtypes only), or None if unreadable."""
    if record.offset is None or not record.contiguous or record.numel > limit:
        return None
    count = record.numel
    if record.dtype == "bfloat16":
        raw = _read(fh, record.offset, 2 * count)
        if raw is None:
            return None
        halves = struct.unpack(f"<{count}H", raw)
        return [struct.unpack("<f", struct.pack("<I", h << 16))[0] for h in halves]
    fmt = _FORMATS.get(record.dtype)
    if fmt is None:
        return None
    size = struct.calcsize("<" + fmt) * count
    raw = _read(fh, record.offset, size)
    if raw is None:
        return None
    return list(struct.unpack(f"<{count}{fmt}", raw))


def _read(fh, offset: int, size: int) -> Optional[bytes]:
    try:
        fh.seek(offset)
        raw = fh.read(size)
    except (OSError, ValueError, OverflowError):
        return None
    return raw if len(raw) == size else None


def position_ids_facts(record: Optional[TensorRecord], values: Optional[List[Any]]) -> Dict[str, Any]:
    """{"status": ok|absent|broken|unreadable, ...}: ids must be int64 and exactly 0..76."""
    if record is None:
        return {"status": "absent"}
    facts: Dict[str, Any] = {"key": record.name, "dtype": record.dtype, "shape": list(record.shape)}
    problems: List[str] = []
    if record.dtype != "int64":
        problems.append(f"dtype is {record.dtype}, not int64")
    if values is None:
        facts["status"] = "broken" if problems else "unreadable"
        facts["problems"] = problems or ["values could not be read"]
        return facts
    bad = []
    for i, v in enumerate(values):
        if v != i:
            bad.append({"index": i, "value": v, "as_int": int(v) if v == v and abs(v) < 1e18 else None})
    if len(values) != 77:
        problems.append(f"{len(values)} ids instead of 77")
    if bad:
        problems.append(f"{len(bad)} ids differ from 0..76")
    facts["bad_indices"] = [b["index"] for b in bad][:77]
    facts["bad_values"] = bad[:20]
    # What a cast to int64 (as transformers < 4.31 does on load) would give: truncation, so 75.9975 -> 75.
    facts["wrong_after_cast"] = [b["index"] for b in bad if b["as_int"] != b["index"]][:77]
    facts["status"] = "broken" if problems else "ok"
    facts["problems"] = problems
    return facts


def scalar(fh, record: Optional[TensorRecord]) -> Optional[Any]:
    if record is None or record.numel != 1:
        return None
    values = read_values(fh, record, limit=1)
    return values[0] if values else None
