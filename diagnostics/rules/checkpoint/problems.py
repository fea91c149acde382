"""What each kind of bad checkpoint input means: the one table from a probe's problem kind to a finding.

The checkpoint probes (`probes/checkpoint/`) say only what they saw (`truncated-zip`,
`header-too-large`, ...). Each row here says which finding reports that kind (`ckpt.format`: the path
does not hold a checkpoint we can read as one; `ckpt.corrupt`: a checkpoint whose structure is
damaged), how severe it is where that differs from the finding's default, the cause and the fix a
person reads, and why the row says so (in the spirit of picklescan's safe/unsafe global tables, where
every entry carries its reason).

Causes and fixes are templates: `{path}` is the inspected path, `{download}` the download advice, any
other `{name}` a piece of the problem's evidence. The few whose wording depends on the evidence are
functions of (evidence, path).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

FORMAT = "ckpt.format"
CORRUPT = "ckpt.corrupt"

DOWNLOAD_FIX = ("Download it again and compare its size with the source's: `ls -l {path}` against the model page (or the "
                "`size` line of its git-lfs pointer); `hf download <repo> <file>` (`huggingface-cli download` before "
                "huggingface_hub 1.0) resumes and verifies Hub downloads.")

Text = Union[str, Callable[[Mapping[str, Any], str], str]]


@dataclass(frozen=True)
class ProblemRow:
    code: str  # the finding that reports this kind
    cause: Text
    fix: Text
    why: str  # why the kind is reported by this finding, with this cause
    severity: Optional[str] = None  # "warn": reported, but the file stays readable; "fail": never a warning

    @property
    def blocks_reading(self) -> bool:
        """A damaged structure: the tensor records read from it cannot be trusted."""
        return self.code == CORRUPT and self.severity != "warn"

    def explain(self, evidence: Mapping[str, Any], path: str) -> Tuple[str, str]:
        """(cause, fix) for one problem of this kind."""
        return _render(self.cause, evidence, path), _render(self.fix, evidence, path)


class _Evidence(dict):
    def __missing__(self, key: str) -> str:
        return "None"


def _render(text: Text, evidence: Mapping[str, Any], path: str) -> str:
    if callable(text):
        return text(evidence, path)
    values = _Evidence(evidence)
    values.update(path=path, download=DOWNLOAD_FIX.format(path=path))
    return text.format_map(values)


def _symlink_loop_cause(evidence: Mapping[str, Any], path: str) -> str:
    chain = " -> ".join(str(link) for link in evidence.get("chain") or [])
    return f"Symbolic links point at each other, so the path never reaches a file (chain: {chain})."


def _directory_cause(evidence: Mapping[str, Any], path: str) -> str:
    unzipped = (" (it holds data.pkl: an unzipped torch checkpoint, which torch.load cannot read)"
                if evidence.get("unzipped_torch") else "")
    return f"A folder was given where a checkpoint file is expected{unzipped}."


def _directory_fix(evidence: Mapping[str, Any], path: str) -> str:
    candidates = evidence.get("candidates")
    example = f", e.g. {candidates[0]}" if candidates else ""
    return f"Pass the file inside it{example}; a diffusers folder needs model_index.json."


def _lfs_cause(evidence: Mapping[str, Any], path: str) -> str:
    expected = (f" (expected {evidence.get('expected_size')} bytes, sha256 {evidence.get('oid')})"
                if evidence.get("oid") else "")
    return f"The repository was cloned without git-lfs, so this is the ~130-byte pointer, not the weights{expected}."


_DOWNLOAD = "{download}"
_RESAVE = "Re-save it with `safetensors.torch.save_file`"

# kind -> row. Format rows first (what the path is), then the damaged structures, by container.
PROBLEMS: Dict[str, ProblemRow] = {
    # -- the path itself
    "not-found": ProblemRow(FORMAT, "The path does not exist.", "Check the path: `ls -l {path}`.",
                            "os.stat raises ENOENT: there is nothing to read."),
    "dangling-symlink": ProblemRow(
        FORMAT, "The symbolic link points to {target}, which is gone (moved, or a cache was cleaned).",
        "Point the link at the real file: `ln -sfn /path/to/model.ckpt {path}`.",
        "the link exists (lstat) but its target does not (stat raises ENOENT)."),
    "symlink-loop": ProblemRow(
        FORMAT, _symlink_loop_cause,
        "Find the real file and re-link: `ls -l {path}`, then `ln -sfn /path/to/model.ckpt {path}`.",
        "stat raises ELOOP: the links never reach a file."),
    "permission-denied": ProblemRow(
        FORMAT, "This user may not read the file (or list its folder).",
        "`ls -l {path}` shows the owner; `chmod a+r {path}` (and `chmod a+x` on its folders), or run as the owning user.",
        "open or stat raises EACCES/EPERM: the bytes exist but cannot be read by this user."),
    "not-regular-file": ProblemRow(FORMAT, "The path is a device, pipe or socket.", "Pass the checkpoint file itself.",
                                   "stat says neither a regular file nor a folder."),
    "os-error": ProblemRow(FORMAT, "The operating system refused to open the file.",
                           "`ls -l {path}`; copy it to a local disk.", "any other OSError from stat or open."),
    "directory": ProblemRow(FORMAT, _directory_cause, _directory_fix,
                            "a folder without model_index.json is no checkpoint torch or diffusers can load."),
    # -- what the first bytes say the file is
    "lfs-pointer": ProblemRow(
        FORMAT, _lfs_cause,
        "In the clone: `git lfs install && git lfs pull` (or download the file itself: `hf download <repo> <file>`).",
        "the file starts with git-lfs's `version https://git-lfs.github.com/spec/` line."),
    "html": ProblemRow(
        FORMAT, "The download URL answered with a web page (login, licence to accept, 404 or rate limit) and it was "
                "saved under the checkpoint's name.",
        "Accept the model's licence on its page if it has one, then download with a token: `hf download <repo> "
        "<file>` or `curl -L -H \"Authorization: Bearer $HF_TOKEN\" -o FILE URL`.",
        "the file starts with an HTML or XML tag."),
    "text": ProblemRow(FORMAT, "The file holds text, not weights (an error message, a config or a pointer).",
                       "Look at it (`head -c 300 {path}`) and download the checkpoint itself.",
                       "the first KiB is printable UTF-8 that does not replay as a pickle."),
    "archive": ProblemRow(FORMAT, "The file is another kind of archive.",
                          "Extract it, or download the .ckpt / .safetensors itself.",
                          "a gzip, 7z, tar, HDF5, GGUF or empty-zip signature: no format torch.load or safetensors reads."),
    "unknown": ProblemRow(FORMAT, "Neither zip, pickle nor safetensors: a wrong file, or bytes damaged from the start.",
                          _DOWNLOAD, "no signature matched and the first bytes are no pickle opcodes."),
    "zip-not-torch": ProblemRow(FORMAT, "A zip archive, but not torch.save's layout (no <root>/data.pkl).",
                                "If it is a download bundle, unzip it and pass the .ckpt or .safetensors inside.",
                                "torch.load looks for <root>/data.pkl and raises without it."),
    "torchscript": ProblemRow(
        FORMAT, "A TorchScript archive (torch.jit.save): code plus constants, not a state dict. ldm cannot load it, "
                "and torch.load(weights_only=True) refuses TorchScript.",
        "Use the original .ckpt / .safetensors release of the model.",
        "constants.pkl or code/ members: torch.jit.save's layout, never a plain state dict.", severity="fail"),
    "legacy-tar": ProblemRow(
        FORMAT, "torch's oldest format (before 0.4): a tar archive of pickles. torch.load(weights_only=False) still "
                "unpickles it; weights_only=True refuses it.",
        "Load it only if ckpt.unsafe-pickle passes, in a disposable environment, and re-save it "
        "(`torch.save(obj, 'model.ckpt')`), or get a current release of the model.",
        "a tar with sys_info/storages/tensors/pickle members: torch < 0.4's layout.", severity="fail"),
    "diffusers-no-weights": ProblemRow(FORMAT, "model_index.json is there but no component folder has weights.",
                                       "Download the weights too (`hf download <repo>` fetches the whole folder).",
                                       "a diffusers folder whose component folders hold no weight file."),
    # -- damaged structure: any container
    "empty": ProblemRow(CORRUPT, "The file is 0 bytes: a download or copy that never wrote anything (disk full, "
                                 "interrupted, or a placeholder).", _DOWNLOAD,
                        "a checkpoint of 0 bytes was cut before its first byte."),
    "read-error": ProblemRow(CORRUPT, "The disk or network file system returned an I/O error while reading.",
                             "Check `dmesg` for disk errors; copy the file to a local disk and try again.",
                             "read() raised OSError (EIO) or ran out of memory half-way through the file."),
    "impossible-shape": ProblemRow(CORRUPT, "Tensor shapes need more bytes than the whole file holds: the header or "
                                            "data.pkl is damaged.", _DOWNLOAD,
                                   "no file of this size can hold such a tensor: the description is damaged."),
    # -- damaged structure: torch zip
    "truncated-zip": ProblemRow(CORRUPT, "The zip's central directory, written last, is missing: the file was cut short "
                                         "(interrupted download or copy, full disk).", _DOWNLOAD,
                                "zipfile finds no end-of-central-directory record; torch.load raises "
                                "'failed finding central directory'."),
    "zip-error": ProblemRow(CORRUPT, "The zip structure is damaged.", _DOWNLOAD,
                            "zipfile's parser rejects the central directory."),
    "zip-too-many-members": ProblemRow(CORRUPT, "Far more zip members than any checkpoint has.", _DOWNLOAD,
                                       "a torch zip has one member per storage: a million is no checkpoint."),
    "zip-local-header": ProblemRow(CORRUPT, "A zip member's header is damaged.", _DOWNLOAD,
                                   "the central directory points at bytes without a local header signature."),
    "zip-member-truncated": ProblemRow(CORRUPT, "A zip member ends past the end of the file: cut short.", _DOWNLOAD,
                                       "a storage record's bytes run past the end of the file."),
    "zip-member-unreadable": ProblemRow(CORRUPT, "A zip member cannot be read (compressed or encrypted in a way torch "
                                                 "does not use).", _DOWNLOAD,
                                        "torch reads only stored and deflated members."),
    "missing-storage": ProblemRow(CORRUPT, "data.pkl refers to tensor storages that are not in the file.", _DOWNLOAD,
                                  "torch.load raises KeyError for a storage record it cannot find."),
    "storage-too-small": ProblemRow(CORRUPT, "Storage records are smaller than data.pkl says.", _DOWNLOAD,
                                    "the tensor bytes data.pkl describes are not all there."),
    "bad-storage-reference": ProblemRow(CORRUPT, "data.pkl refers to something that is not a torch storage.", _DOWNLOAD,
                                        "a tensor rebuild whose persistent id is no ('storage', ...) record."),
    "tensor-outside-storage": ProblemRow(CORRUPT, "A tensor reaches past the end of its storage.", _DOWNLOAD,
                                         "offset + strided size exceed the storage: torch raises on access."),
    # -- damaged structure: pickles and the legacy format
    "pickle-error": ProblemRow(CORRUPT, "The pickle inside is incomplete or damaged: torch.load fails with "
                                        "UnpicklingError / EOFError.", _DOWNLOAD,
                               "the replay stops before STOP: the unpickler would raise there too."),
    "pickle-too-large": ProblemRow(CORRUPT, "The pickle is hundreds of MiB, far more than a weights index; it may hide "
                                            "other data.", "Do not load it; get the safetensors release of the model.",
                                   "SD's data.pkl is ~200 KiB; we do not replay pickles over 256 MiB."),
    "legacy-truncated": ProblemRow(CORRUPT, "The file ends inside its data: cut short.", _DOWNLOAD,
                                   "the legacy format's pickles or storages end past the end of the file."),
    # -- damaged structure: safetensors (the reference implementation's errors)
    "safetensors-too-short": ProblemRow(CORRUPT, "Shorter than the 8-byte header length: cut short.", _DOWNLOAD,
                                        "safetensors needs 8 bytes of header length to start."),
    "header-too-large": ProblemRow(CORRUPT, "The first 8 bytes give an absurd header length: not a safetensors file, "
                                            "or its start is damaged (safetensors raises HeaderTooLarge).", _DOWNLOAD,
                                   "safetensors refuses headers over 100,000,000 bytes."),
    "header-beyond-file": ProblemRow(CORRUPT, "The header length points past the end of the file: cut short "
                                              "(safetensors raises MetadataIncompleteBuffer).", _DOWNLOAD,
                                     "8 + header length exceeds the file size."),
    "header-not-json": ProblemRow(CORRUPT, "The header is not valid JSON (safetensors raises "
                                           "InvalidHeaderDeserialization).", _DOWNLOAD,
                                  "the header must be UTF-8 JSON starting with '{'."),
    "header-not-object": ProblemRow(CORRUPT, "The header is not a JSON object.", _DOWNLOAD,
                                    "safetensors deserialises the header into a map of tensor entries."),
    "duplicate-keys": ProblemRow(CORRUPT, "The header names {key!r} twice, which safetensors forbids.",
                                 _RESAVE + ", or download it again.", "serde rejects duplicate map keys."),
    "bad-entry": ProblemRow(CORRUPT, "Header entries have unknown dtypes, bad shapes or bad offsets.", _DOWNLOAD,
                            "each entry needs a known dtype, a list of sizes and two ordered offsets."),
    "too-many-entries": ProblemRow(CORRUPT, "Millions of header entries: not a model.", _DOWNLOAD,
                                   "no diffusion checkpoint has two million tensors."),
    "size-mismatch": ProblemRow(CORRUPT, "Tensors' byte ranges do not match dtype x shape (safetensors raises "
                                         "TensorInvalidInfo).", _DOWNLOAD,
                                "end - begin must equal numel x bits / 8."),
    "offsets-not-contiguous": ProblemRow(CORRUPT, "Tensor byte ranges overlap or leave holes (safetensors raises "
                                                  "InvalidOffset).", _DOWNLOAD,
                                         "entries must tile the data buffer from offset 0."),
    "data-truncated": ProblemRow(CORRUPT, "The header describes more data than the file holds: {missing_bytes} bytes are "
                                          "missing at the end (an interrupted download).", _DOWNLOAD,
                                 "the last tensor ends past the end of the file: the download stopped early."),
    "trailing-bytes": ProblemRow(CORRUPT, "Bytes follow the last tensor; safetensors refuses such files "
                                          "(MetadataIncompleteBuffer).", "Download it again, or re-save it with "
                                                                         "`safetensors.torch.save_file`.",
                                 "the entries must cover the data buffer exactly.", severity="fail"),
    "bad-metadata": ProblemRow(CORRUPT, "__metadata__ must map strings to strings.", _RESAVE + ".",
                               "safe_open still reads the tensors; only the metadata is refused.", severity="warn"),
}

# A kind no row names (a reader newer than this table): reported as damage, with the download advice.
UNKNOWN_KIND = ProblemRow(CORRUPT, "The file is not a usable checkpoint.", _DOWNLOAD,
                          "a problem kind this table does not know yet is treated as damage.")


def problem_row(kind: str) -> ProblemRow:
    return PROBLEMS.get(kind, UNKNOWN_KIND)
