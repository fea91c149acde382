"""From a path to tensor records: the one dispatch every user of the checkpoint readers goes through.

`read_tensor_records(path)` looks at the path (missing, link loop, folder, device...), sniffs the
first bytes, runs the reader for what they say (torch zip, safetensors, legacy torch or plain pickle,
diffusers folder) and returns a `CheckpointRecords`: the format, the reader's `ReadResult` (records,
safety facts, reader problems) and the problems found before any reader ran, each with the finding
code it belongs to. `inspect_checkpoint` builds its facts from it; the CLIP remedy copies the text
encoder's tensors from its located records. Nothing here raises for bad input.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from .records import Problem, ReadResult, TensorRecord, problem

# What a file is when it is no checkpoint at all, by the sniffed kind (the rules add cause and fix).
NOT_A_CHECKPOINT = {
    "lfs-pointer": "a git-lfs pointer file (a few lines of text), not the checkpoint it points to",
    "html": "an HTML page, not a checkpoint",
    "text": "a text file, not a checkpoint",
    "archive": "a {archive} file, not a torch or safetensors checkpoint",
    "unknown": "not a format a checkpoint is stored in (no zip, pickle, safetensors or text signature)",
}
WEIGHT_EXTENSIONS = (".ckpt", ".safetensors", ".pt", ".pth", ".bin")


@dataclass
class CheckpointRecords:
    """What `read_tensor_records` found at a path.

    `problems` are those found before a reader ran (the path, the file kind, I/O errors); the reader's
    own problems stay in `result.problems` (`all_problems` joins them).
    """

    path: str
    format: str = "unknown"  # safetensors, torch-zip, torch-legacy, pickle, diffusers-dir, unknown
    content: Optional[str] = None  # the sniffed kind, "directory" or "diffusers-dir"; None when never opened
    sniff: Optional[Dict[str, Any]] = None
    size_bytes: Optional[int] = None
    realpath: Optional[str] = None
    result: Optional[ReadResult] = None
    problems: List[Problem] = field(default_factory=list)
    seconds: float = 0.0  # spent in the reader

    @property
    def records(self) -> List[TensorRecord]:
        return self.result.tensors if self.result is not None else []

    @property
    def all_problems(self) -> List[Problem]:
        return self.problems + (self.result.problems if self.result is not None else [])

    @property
    def unsafe_globals(self) -> List[str]:
        pickle = self.result.pickle if self.result is not None else None
        return list((pickle or {}).get("unsafe_globals") or [])

    @property
    def byteorder(self) -> str:
        """The storages' byte order: torch >= 2.1 zips record it; every other format is little-endian."""
        value = self.result.container.get("byteorder") if self.result is not None else None
        return value or "little"


def read_tensor_records(path: str, locate: bool = False) -> CheckpointRecords:
    """Read the checkpoint at `path` without running any of its code; never raises for bad input.

    With `locate`, a reader that defers finding tensor bytes (`result.resolve`) does so before the file
    is closed, so every locatable record has its absolute `offset`. (The torch zip reader now reads
    every member's local header while reading, so its records come back located either way.)
    """
    from .sniff import HEAD_BYTES, classify_stat, open_file, sniff, stat_path

    out = CheckpointRecords(path=path)
    st, prob = stat_path(path)
    if prob is not None:
        out.problems.append(prob)
        return out
    out.realpath = os.path.realpath(path)
    if os.path.isdir(path):
        return _read_dir(path, out)
    out.size_bytes = st.st_size
    prob = classify_stat(path, st)
    if prob is not None:
        out.problems.append(prob)
        return out
    fh, prob = open_file(path)
    if prob is not None:
        out.problems.append(prob)
        return out
    with fh:
        try:
            head = fh.read(HEAD_BYTES)
        except OSError as exc:
            out.problems.append(problem("read-error",
                                        f"reading {path} failed: {exc.strerror or exc}", errno=exc.errno))
            return out
        out.sniff = sniff(head, st.st_size, path)
        out.content = out.sniff["kind"]
        t0 = time.perf_counter()
        out.result = _read_file(fh, st.st_size, out)
        if locate and out.result is not None and out.result.resolve is not None:
            try:
                out.result.resolve(fh, out.result.tensors)
            except (OSError, MemoryError) as exc:
                out.problems.append(problem("read-error", f"reading {path} failed: {exc}"))
        out.seconds = time.perf_counter() - t0
    return out


def _read_file(fh, size: int, out: CheckpointRecords) -> Optional[ReadResult]:
    sniffed = out.sniff or {}
    kind = sniffed.get("kind")
    path = out.path
    try:
        if kind == "empty":
            out.problems.append(problem("empty", f"{path} is empty (0 bytes)"))
            return None
        if kind == "zip":
            from .torchfile import read_torch_zip

            result = read_torch_zip(fh, size)
            torch_zip = not any(p.kind == "zip-not-torch" for p in result.problems)
            out.format = "torch-zip" if torch_zip else "unknown"
            if result.container.get("torchscript"):
                result.problems.append(problem("torchscript", "a TorchScript archive (code + constants), not a state dict"))
            return result
        if kind == "safetensors":
            from .safetensors_fmt import read_safetensors

            out.format = "safetensors"
            result = read_safetensors(fh, size)
            return _disguised_pickle(fh, size, out, result) or result
        if kind == "pickle":
            return _read_pickle_file(fh, size, out)
        if kind == "archive" and sniffed.get("archive") == "tar":
            from .torchfile import read_torch_tar

            result = read_torch_tar(fh, size)
            if result is not None:
                out.format = "torch-legacy"
                return result
        if sniffed.get("pickle_prefix"):
            found = _disguised_pickle(fh, size, out, None)
            if found is not None:
                return found
    except (OSError, MemoryError) as exc:
        out.problems.append(problem("read-error", f"reading {path} failed: {exc}"))
        return None
    details = {k: v for k, v in sniffed.items() if k != "kind"}
    message = NOT_A_CHECKPOINT.get(kind or "unknown", str(kind))
    if kind == "html" and sniffed.get("title"):
        message += f" (title: {sniffed['title']!r})"
    elif kind == "text" and sniffed.get("first_line"):
        message += f": {sniffed['first_line']!r}"
    elif kind == "archive":
        message = message.format(archive=sniffed.get("archive"))
    out.problems.append(problem(str(kind), message, **details))
    return None


def _read_pickle_file(fh, size: int, out: CheckpointRecords) -> ReadResult:
    from .torchfile import read_torch_pickle_file

    result = read_torch_pickle_file(fh, size)
    out.format = "torch-legacy" if result.container.get("kind") == "legacy" else "pickle"
    return result


# safetensors header problems after which the file is no safetensors file at all
_NOT_SAFETENSORS = ("safetensors-too-short", "header-too-large", "header-beyond-file", "header-not-json",
                    "header-not-object")


def _disguised_pickle(fh, size: int, out: CheckpointRecords, result: Optional[ReadResult]) -> Optional[ReadResult]:
    """The pickle reading of a file sniffed as something else, when it is one (issue 8).

    `torch.load` unpickles every file that is not a zip: a pickle whose ninth byte is `{` looks like a
    safetensors header, and a pickle without a PROTO opcode can start with almost any byte. When the
    safetensors header is unusable (or the file was of unknown kind) but its first bytes are valid
    pickle opcodes, the whole file is replayed; if that names globals, it is reported as the pickle it is.
    """
    from .pickle_vm import pickle_evidence

    if result is not None:
        fatal = any(p.kind in _NOT_SAFETENSORS for p in result.problems)
        fh.seek(0)
        evidence = pickle_evidence(fh.read(4096))
        if not (evidence == "pickle" or fatal and evidence == "prefix"):
            return None
    sniffed_as = out.content
    fh.seek(0)
    saved = out.format
    pickled = _read_pickle_file(fh, size, out)
    if not (pickled.pickle or {}).get("globals"):
        out.format = saved
        return None
    pickled.container.setdefault("anomalies", []).append(
        {"kind": "disguised-pickle", "sniffed_as": sniffed_as,
         "detail": f"the first bytes look like {sniffed_as}, but torch.load would unpickle the file"})
    out.content = "pickle"
    return pickled


def _read_dir(path: str, out: CheckpointRecords) -> CheckpointRecords:
    from .diffusers_dir import is_diffusers_dir, read_diffusers_dir

    out.content = "directory"
    try:
        if not os.access(path, os.R_OK | os.X_OK):
            raise PermissionError(path)
        names = sorted(os.listdir(path))
    except OSError as exc:
        out.problems.append(problem("permission-denied",
                                    f"{path} is a directory this user cannot list", detail=str(exc)))
        return out
    if not is_diffusers_dir(path):
        candidates = [n for n in names if n.lower().endswith(WEIGHT_EXTENSIONS)]
        unzipped = "data.pkl" in names or any(os.path.isfile(os.path.join(path, n, "data.pkl")) for n in names[:50])
        out.problems.append(problem("directory",
            f"{path} is a directory, not a checkpoint file" + (" (it looks like an unzipped torch checkpoint)"
                                                              if unzipped else ""),
            candidates=candidates[:20], unzipped_torch=unzipped, entries=len(names)))
        return out
    out.format = "diffusers-dir"
    out.content = "diffusers-dir"
    t0 = time.perf_counter()
    out.result = read_diffusers_dir(path)  # offsets are located file by file, names prefixed by folder
    out.seconds = time.perf_counter() - t0
    return out
