"""A fact bundle with named fields that prints as the JSON it always was.

Probes return dataclasses built on `FactRecord`, so a reader sees what a probe returns and the rules
read attributes (`facts.format`, `ldm_config.summary`). `to_dict()` gives the JSON form (`inspect --json`,
the report's facts): the fields in declaration order, less those still `UNSET` (keys that only some
inputs produce) and those declared with `metadata={"json": False}` (e.g. the tensor records a
checkpoint fact keeps for the config checks). Read as a mapping (`facts["format"]`, `facts.get(...)`),
a record is that JSON form too, so code that reads the facts as data (templates, the report's tables)
needs no change.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Iterator, Mapping, Tuple


class _Unset:
    """A field no probe step has set: left out of the JSON form; false, so `facts.x or {}` reads well."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


def jsonable(value: Any) -> Any:
    """The JSON form of a value that may hold records (each through its own `to_dict`)."""
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    if isinstance(value, list):
        return [jsonable(item) for item in value]
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    return value


class FactRecord(Mapping):
    """Base of the typed fact bundles (subclasses are `@dataclass(eq=False)`: they compare as mappings)."""

    def json_items(self) -> Iterator[Tuple[str, Any]]:
        """(name, value) of the fields in the JSON form, values as stored."""
        for spec in fields(self):
            if spec.metadata.get("json", True) is False:
                continue
            value = getattr(self, spec.name)
            if value is not UNSET:
                yield spec.name, value

    def to_dict(self) -> dict:
        return {name: jsonable(value) for name, value in self.json_items()}

    def __getitem__(self, key: str) -> Any:
        for name, value in self.json_items():
            if name == key:
                return jsonable(value)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self.json_items())

    def __len__(self) -> int:
        return sum(1 for _ in self.json_items())
