"""Key -> shape for the config checks (`config.*`), from the one checkpoint reader.

The config rules compare the yaml with the checkpoint's tensor names and shapes. Those come from the
checkpoint facts (`ctx.fact("checkpoint")`: the file is read once, without running it); only for a
file our readers cannot turn into a state dict does `probes/model.py` ask torch in a child process.
`to_dict()` is the summary the report keeps (`checkpoint_layout`): the full map stays out of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ..fact_record import UNSET, FactRecord
from .facts import STATE_DICT_FORMATS, CheckpointFacts

READER_SOURCE = "checkpoint reader (names and shapes; no code executed)"


@dataclass(eq=False)
class CheckpointShapes(FactRecord):
    ok: bool
    source: Optional[str] = None
    format: Any = UNSET
    error: Any = UNSET  # {"kind", "message"} when not ok
    unsafe_globals: Any = UNSET  # read by our readers: the globals the pickle names
    extras: Any = UNSET  # read by torch in the child: the top-level entries besides the state dict
    shapes: Dict[str, List[int]] = field(default_factory=dict, metadata={"json": False})
    dtypes: Dict[str, str] = field(default_factory=dict, metadata={"json": False})

    def json_items(self) -> Iterator[Tuple[str, Any]]:
        yield from super().json_items()
        if self.ok:
            yield "tensors", len(self.shapes)

    @classmethod
    def failed(cls, kind: str, message: str, source: Optional[str] = None, **error: Any) -> "CheckpointShapes":
        return cls(ok=False, source=source, error=dict({"kind": kind, "message": message}, **error))


NO_CHECKPOINT = CheckpointShapes.failed("no-checkpoint", "no --checkpoint was given")


def shapes_from_facts(facts: CheckpointFacts) -> Optional[CheckpointShapes]:
    """The shapes our readers found, or None when they found no state dict (then torch is asked)."""
    if facts.format not in STATE_DICT_FORMATS or not facts.records:
        return None
    return CheckpointShapes(ok=True, source=READER_SOURCE, format=facts.format, shapes=facts.shapes,
                            dtypes=facts.dtypes, unsafe_globals=list(facts.unsafe_globals))
