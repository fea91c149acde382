"""Options and input validation shared by the commands."""

from __future__ import annotations

import os
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


def validate_inputs(options: Options) -> None:
    """The paths the user named must be what their option says (see diagnostics/inputs.py):
    otherwise exit 2, with one line, before any check runs."""
    from ..inputs import input_problems

    problems = input_problems(options)
    if problems:
        raise UsageError(problems[0])


def validate_checkpoint_argument(path: str, name: str = "checkpoint") -> None:
    """The same rules for a checkpoint given as a positional argument (inspect CKPT)."""
    from ..inputs import checkpoint_problem

    problem = checkpoint_problem(path, name)
    if problem:
        raise UsageError(problem)


def context_from_args(args) -> Context:
    environ = dict(os.environ)
    return Context(options_from_args(args, environ), environ=environ)
