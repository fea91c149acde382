"""Options and input validation shared by the commands."""

from __future__ import annotations

import os
from pathlib import Path

from ..cli import UsageError
from ..context import Context, Options


def add_target_options(parser) -> None:
    """What the deployment is: the same options as the pytest plugin, LDM_DIAG_* as fallbacks."""
    parser.add_argument("--checkpoint", help="checkpoint file or diffusers folder (env LDM_DIAG_CHECKPOINT)")
    parser.add_argument("--config", help="LDM yaml config, e.g. v1-inpainting-inference.yaml (env LDM_DIAG_CONFIG)")
    parser.add_argument("--code-root", help="directory holding the ldm package (env LDM_DIAG_CODE_ROOT)")
    parser.add_argument("--model-id", action="append", default=[], metavar="ID",
                        help="extra Hugging Face model id the deployment needs (repeatable)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where model checks run (default: auto)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds for each subprocess probe (default 60)")


def options_from_args(args, environ=None) -> Options:
    environ = os.environ if environ is None else environ
    options = Options.from_values(
        environ,
        checkpoint=getattr(args, "checkpoint", None),
        config=getattr(args, "config", None),
        code_root=getattr(args, "code_root", None),
        model_ids=list(getattr(args, "model_id", None) or []),
        error_log=getattr(args, "error_log", None),
        device=getattr(args, "device", "auto"),
        deep=getattr(args, "deep", False),
        hash=getattr(args, "hash", False),
        timeout=getattr(args, "timeout", 60.0),
    )
    validate_inputs(options)
    return options


def _readable(path: str, what: str, directory_ok: bool = False) -> None:
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{what} {path} does not exist")
    if p.is_dir():
        if directory_ok:
            if not os.access(p, os.R_OK | os.X_OK):
                raise UsageError(f"{what} {path} is not readable")
            return
        raise UsageError(f"{what} {path} is a directory, not a file")
    if not os.access(p, os.R_OK):
        raise UsageError(f"{what} {path} is not readable (permission denied)")


def validate_inputs(options: Options) -> None:
    """Inputs the user named must exist and be readable: otherwise exit 2 before any check runs."""
    # A checkpoint that exists but is unreadable, a directory or a link loop is a finding of the
    # checkpoint checks (ckpt.corrupt / ckpt.format), not a usage error; only a wrong path is.
    if options.checkpoint and not os.path.lexists(options.checkpoint):
        raise UsageError(f"checkpoint {options.checkpoint} does not exist")
    if options.config:
        _readable(options.config, "config")
    if options.error_log:
        _readable(options.error_log, "error log")
    if options.code_root and not Path(options.code_root).is_dir():
        raise UsageError(f"code root {options.code_root} is not a directory")


def context_from_args(args) -> Context:
    environ = dict(os.environ)
    return Context(options_from_args(args, environ), environ=environ)
