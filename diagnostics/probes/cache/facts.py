"""What the cache probe returns: typed facts, with `to_dict()` giving the report's JSON.

The per-directory and per-file records (`locations`, a model's `resolution`, `scan`, `writable`)
stay plain dicts: the `provision-clip` remedy builds and reads the same records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, NamedTuple, Optional


class HubCacheDir(NamedTuple):
    """huggingface_hub's HF_HUB_CACHE and what decided it."""

    path: str
    decided_by: str
    hf_home: str


@dataclass(frozen=True)
class OfflineState:
    """Whether the loaders stay off the network, per installed version (knowledge base 1.5)."""

    hf_hub_offline: Optional[str]  # the raw value of HF_HUB_OFFLINE
    transformers_offline: Optional[str]  # the raw value of TRANSFORMERS_OFFLINE
    hub_offline: bool  # what huggingface_hub itself makes of the two
    effective: bool  # what the installed transformers does
    honoured: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return {"HF_HUB_OFFLINE": self.hf_hub_offline, "TRANSFORMERS_OFFLINE": self.transformers_offline,
                "hub_offline": self.hub_offline, "effective": self.effective, "honoured": list(self.honoured),
                "notes": list(self.notes)}


@dataclass(frozen=True)
class ModelCache:
    """One needed model and how its files resolve offline (`resolve_model`'s record)."""

    ref: str
    resolution: Dict[str, Any]

    def to_dict(self) -> Dict[str, Any]:
        return {"ref": self.ref, "resolution": self.resolution}


@dataclass(frozen=True)
class CacheFacts:
    """Every cache fact of one run."""

    locations: Dict[str, Any]  # cache_locations(): hub, transformers, endpoint, versions, set_vars
    offline: OfflineState
    models: List[ModelCache]
    scan: Dict[str, Any]  # scan_cache() of the directory transformers reads
    writable: Dict[str, Dict[str, Any]]  # cache path -> writable()
    disk_free: Dict[str, Optional[int]]  # cache path -> free bytes
    shadow: List[Dict[str, Any]]  # shadow_dirs()
    huggingface_hub_importable: bool

    def resolutions(self) -> Dict[str, Dict[str, Any]]:
        """ref -> resolution."""
        return {entry.ref: entry.resolution for entry in self.models}

    def to_dict(self) -> Dict[str, Any]:
        return {"locations": self.locations, "offline": self.offline.to_dict(),
                "models": [entry.to_dict() for entry in self.models], "scan": self.scan,
                "writable": self.writable, "disk_free": self.disk_free, "shadow": self.shadow,
                "huggingface_hub_importable": self.huggingface_hub_importable}
