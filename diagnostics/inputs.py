"""The paths a user names, checked before any check runs: one clear line per mistake.

Every front-end (the commands and the pytest plugin) calls `input_problems(options)` and turns
each line into its usage error (exit 2). The checks themselves then only ever see a checkpoint
that is a file (or a diffusers folder) and a config that is text.

What is a usage error here and what stays a finding: a YAML or prose file given as the checkpoint
is the wrong argument (a usage error); a damaged checkpoint (empty, a git-lfs pointer, an HTML
login page saved under the checkpoint's name, random bytes) is the right argument with a bad
file, and the checkpoint checks name it (`ckpt.corrupt`, `ckpt.format`).
"""

from __future__ import annotations

import os
import re
from typing import List, Optional

HEAD_BYTES = 4096
YAML_SUFFIXES = (".yaml", ".yml")
TEXT_SUFFIXES = (".txt", ".log", ".md", ".json", ".py", ".cfg", ".ini", ".toml")
# Text that is still a (damaged) checkpoint, named by the checkpoint checks: git-lfs pointers,
# HTML pages saved under the checkpoint's name, protocol-0 pickles (text opcodes).
_DAMAGED_CHECKPOINT_TEXT = re.compile(
    rb"^(version https://git-lfs|\s*<(!doctype|html|head|body|\?xml|!--)|\(|\}|\]|c[\w.]+\n\w+\n)", re.I)
_YAML_KEY_LINE = re.compile(rb"^[A-Za-z_][\w.-]*:(\s|$)", re.M)


def _head(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as fh:
            return fh.read(HEAD_BYTES)
    except OSError:
        return None


def looks_like_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # more than a character cut at the end of the sample
            return False
    return True


def looks_like_checkpoint(head: bytes) -> bool:
    """Zip (torch >= 1.6), a binary pickle (legacy torch) or a safetensors header."""
    return head.startswith(b"PK\x03\x04") or (head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5) \
        or (len(head) >= 9 and head[8:9] == b"{" and b'"' in head[9:12])


def looks_like_yaml(path: str, head: bytes) -> bool:
    return path.lower().endswith(YAML_SUFFIXES) or (looks_like_text(head) and bool(_YAML_KEY_LINE.search(head))
                                                    and b"model:" in head)


def _readable_problem(path: str, what: str) -> str:
    if not os.path.lexists(path):
        return f"{what} {path} does not exist"
    if not os.path.exists(path):
        return f"{what} {path} is a broken symbolic link (its target does not exist)"
    if not os.access(path, os.R_OK):
        return f"{what} {path} is not readable (permission denied)"
    return ""


def _candidates(folder: str) -> List[str]:
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    return [n for n in names if n.lower().endswith((".ckpt", ".safetensors", ".pt", ".pth", ".bin"))][:3]


def checkpoint_problem(path: str, option: str = "--checkpoint") -> str:
    """'' when `path` can be given as a checkpoint, else the one line that says why not."""
    problem = _readable_problem(path, f"{option}")
    if problem:
        return problem
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "model_index.json")):
            return ""  # a diffusers folder
        found = _candidates(path)
        hint = f"; it holds {', '.join(found)}: pass one of those" if found else ""
        return (f"{option} {path} is a directory, not a checkpoint file (and not a diffusers folder: "
                f"no model_index.json){hint}")
    if not os.path.isfile(path):
        return f"{option} {path} is not a regular file"
    head = _head(path)
    if head is None:
        return f"{option} {path} cannot be read"
    if not head or looks_like_checkpoint(head) or _DAMAGED_CHECKPOINT_TEXT.match(head):
        return ""  # the checkpoint checks judge it
    if looks_like_yaml(path, head):
        return f"{option} {path} is a YAML config, not a checkpoint; did you mean --config {path}?"
    if looks_like_text(head) and (path.lower().endswith(TEXT_SUFFIXES) or b"\n" in head):
        first = head.split(b"\n", 1)[0][:60].decode("utf-8", "replace").strip()
        return f"{option} {path} is a text file ({first!r}...), not a checkpoint (.ckpt, .safetensors or a diffusers folder)"
    return ""


def config_problem(path: str, option: str = "--config") -> str:
    """'' when `path` can be read as an LDM YAML config, else the one line that says why not."""
    problem = _readable_problem(path, option)
    if problem:
        return problem
    if os.path.isdir(path):
        return f"{option} {path} is a directory, not a YAML file"
    head = _head(path)
    if head is None:
        return f"{option} {path} cannot be read"
    if looks_like_checkpoint(head):
        return f"{option} {path} is a checkpoint, not a YAML config; did you mean --checkpoint {path}?"
    if head and not looks_like_text(head):
        return f"{option} {path} is a binary file, not YAML text (an LDM config is a .yaml file)"
    return ""


def swapped(checkpoint: Optional[str], config: Optional[str]) -> bool:
    """--checkpoint names a YAML file and --config a checkpoint: the two were swapped."""
    if not checkpoint or not config or not os.path.isfile(checkpoint) or not os.path.isfile(config):
        return False
    ckpt_head, config_head = _head(checkpoint) or b"", _head(config) or b""
    return looks_like_yaml(checkpoint, ckpt_head) and looks_like_checkpoint(config_head)


def input_problems(options) -> List[str]:
    """Every problem with the paths in `options` (Options), one line each; [] when all is well."""
    checkpoint, config = getattr(options, "checkpoint", None), getattr(options, "config", None)
    if swapped(checkpoint, config):
        return [f"--checkpoint and --config look swapped: {checkpoint} is a YAML config and {config} a "
                f"checkpoint; did you mean --checkpoint {config} --config {checkpoint}?"]
    problems = []
    if checkpoint:
        problems.append(checkpoint_problem(checkpoint))
    if config:
        problems.append(config_problem(config))
    error_log = getattr(options, "error_log", None)
    if error_log:
        problem = _readable_problem(error_log, "error log")
        if not problem and os.path.isdir(error_log):
            problem = f"error log {error_log} is a directory, not a file"
        problems.append(problem)
    code_root = getattr(options, "code_root", None)
    if code_root and not os.path.isdir(code_root):
        problems.append(f"code root {code_root} is not a directory")
    return [p for p in problems if p]
