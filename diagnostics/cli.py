"""`python -m diagnostics <command>`: a thin dispatcher. Commands are modules imported only when
needed, and none imports torch at module level, so `--help` stays instant."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from typing import List, Optional

from . import __version__

EXIT_OK, EXIT_BLOCKING, EXIT_USAGE = 0, 1, 2
EXIT_INTERNAL = 70  # a bug in the harness itself (EX_SOFTWARE); never confused with a verdict

# name -> (module with add_arguments(parser) and run(args) -> int, one-line help)
COMMANDS = {
    "report": ("diagnostics.commands.report", "run every check and write the resolution report (md, html, json)"),
    "inspect": ("diagnostics.commands.inspect", "analyse a checkpoint without running its code (--deep, --hash, --json)"),
    "explain": ("diagnostics.commands.explain", "explain a failure log: location, known cause confirmed by checks, fix"),
    "provision-clip": ("diagnostics.commands.provision_clip", "put the checkpoint's CLIP where FrozenCLIPEmbedder loads it offline"),
    "fleet": ("diagnostics.commands.fleet", "the report on every node of a Slurm or Kubernetes fleet, merged (run, merge, manifest)"),
}


class UsageError(Exception):
    """Bad arguments or unreadable input given by the user: exit 2 before any check runs."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m diagnostics",
        description="Pre-deployment triage for latent-diffusion (ldm / Stable Diffusion) models. "
        "Exit codes: 0 nothing blocking, 1 blocking findings, 2 usage error.",
    )
    parser.add_argument("--version", action="version", version=f"ldm-diagnostics {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="command")
    for name, (module, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(cmd)
        cmd.set_defaults(_module=module, _parser=cmd)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # the subcommand's own usage, not the top-level one
        getattr(args, "_parser", parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return importlib.import_module(args._module).run(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # checks are already isolated; this is the harness's own bug
        print(f"ldm-diagnostics failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        if os.environ.get("LDM_DIAG_DEBUG"):
            traceback.print_exc()
        else:
            print("Set LDM_DIAG_DEBUG=1 to see the traceback, and please report it.", file=sys.stderr)
        return EXIT_INTERNAL
