"""Torch checkpoints read without `torch.load`: the zip format, the legacy formats and plain pickles.

Nothing is imported or called from the file: every pickle is replayed by `pickle_vm`. The work is split
by job:

- `torch_zip.py`: the zip container (torch >= 1.6), member by member through the local headers;
- `torch_legacy.py`: the formats before it (the legacy tar of torch < 0.4, the five-pickle legacy file
  of torch < 1.6) and plain pickles;
- `torch_objects.py`: what a replayed object graph means (where the state dict is, the tensor records,
  Lightning metadata, tensors outside the state dict);
- `pickle_streams.py`: every pickle of a byte range replayed, and the safety facts over a file's pickles.

This module is where callers import the readers from.
"""

from __future__ import annotations

from .pickle_streams import MAX_PICKLE_BYTES, MAX_STREAMS, pickle_facts, replay_streams
from .torch_legacy import LEGACY_MAGIC, LEGACY_PROTOCOL, TAR_MEMBERS, read_torch_pickle_file, read_torch_tar
from .torch_objects import (contiguous_stride, func_name, get_key, interpret, is_mapping, numpy_scalar, plain_value,
                            span_elements, storage_of, tensor_info)
from .torch_zip import MAX_ZIP_MEMBERS, read_torch_zip

__all__ = [
    "LEGACY_MAGIC", "LEGACY_PROTOCOL", "MAX_PICKLE_BYTES", "MAX_STREAMS", "MAX_ZIP_MEMBERS", "TAR_MEMBERS",
    "contiguous_stride", "func_name", "get_key", "interpret", "is_mapping", "numpy_scalar", "pickle_facts",
    "plain_value", "read_torch_pickle_file", "read_torch_tar", "read_torch_zip", "replay_streams",
    "span_elements", "storage_of", "tensor_info",
]
