"""`python -m diagnostics explain LOG [--json]`: where a pasted failure happened, which known
failure it is, what the checks on this machine say about its causes, and the fix.

Exit codes: 0 no confirmed blocking cause, 1 a confirmed blocking cause remains, 2 the log (or
another input) cannot be read. A log without a traceback is not an error: it gets the
`explain.no-traceback` finding and exit 0.
"""

from __future__ import annotations

import json
import sys
from typing import List

from ..cli import EXIT_BLOCKING, EXIT_OK, UsageError
from .common import add_target_options, context_from_args

_ICONS = {"confirmed": "[✗]", "likely": "[?]", "unverified": "[?]", "refuted": "[-]"}


def add_arguments(parser) -> None:
    parser.add_argument("log", metavar="LOG", help="log file holding the failure ('-' reads standard input)")
    parser.add_argument("--json", action="store_true", help="print the explanation as JSON")
    parser.add_argument("--no-confirm", action="store_true",
                        help="only match the log against the knowledge base; run no checks")
    add_target_options(parser)


def format_text(explanation, verbose: bool = False) -> str:
    """The explanation for a terminal: the error and its location, then the matches, best first."""
    out: List[str] = []
    problem = explanation.original_problem
    if problem is None or not explanation.parsed.has_traceback:
        out.append(f"No Python traceback found in {explanation.source} "
                   f"({len(explanation.parsed.lines)} lines read).")
    if problem is not None:
        first, *rest = (problem["error_message"] or "").splitlines() or [""]
        where = f" (log line {problem['log_line']})" if problem.get("log_line") else ""
        out.append(f"Error{where}: {first}")
        out.extend(f"    {line}" for line in rest[:12])
        if problem["file"]:
            out.append(f"  Location: {problem['file']}:{problem['line']} in {problem['qualname']}")
            if problem["code"]:
                out.append(f"      {problem['code']}")
        lib = problem.get("library_frame")
        if lib:
            out.append(f"  Raised in: {lib['file']}:{lib['line']} in {lib['qualname']}")
        if len(problem["chain"]) > 1:
            out.append("  Chain: " + " -> ".join(problem["chain"]))
        if problem.get("truncated"):
            out.append("  (the traceback is cut off in the log)")
    out.append("")
    if not explanation.matches:
        out.append("No known failure signature matches this log.")
    else:
        out.append("Known failures, best first:")
    for m in explanation.matches:
        icon = _ICONS[m.status] if (m.status != "confirmed" or m.blocking) else "[!]"
        out.append(f"{icon} {m.rank}. {m.signature.id} {m.signature.title} ({m.status})")
        out.append(f"      {m.summary()}")
        for hit in m.hits[:2]:
            label = f" [{hit.pattern.label}]" if hit.pattern.label else ""
            out.append(f"      matched line {hit.log_line}{label}")
            if hit.wording_note:
                out.append(f"      ! {hit.wording_note}")
        for n in m.reproduce:
            out.append(f"      • {n.statement}")
        for n in m.context:
            if n.outcome != "unavailable":
                out.append(f"      • {n.statement}")
        shown = m.causes if verbose else [c for c in m.causes if c.status != "unverified"][:4] or m.causes[:3]
        if shown:
            out.append("      Causes:")
        for c in shown:
            out.append(f"        - {c.cause.id} {c.cause.title}: {c.status}")
            for n in c.needs:
                out.append(f"            · {n.statement}")
        hidden = len(m.causes) - len(shown)
        if hidden > 0:
            out.append(f"        ({hidden} more cause(s) not decided here; --json lists them)")
        out.append(f"      Fix: {m.fix}")
        if m.signature.links:
            out.append(f"      See: {m.signature.links[0]}")
    if explanation.check_module_errors:
        out.append("")
        out.append("Check modules that failed to load: " + "; ".join(explanation.check_module_errors))
    out.append("")
    blocking = [m for m in explanation.matches if m.blocking]
    if blocking:
        out.append(f"{len(blocking)} confirmed blocking cause(s): "
                   + ", ".join(f"{m.signature.id} {m.signature.title}" for m in blocking))
    elif not explanation.confirmed_run:
        out.append("Checks were not run (--no-confirm): the matches are hypotheses.")
    else:
        out.append("No confirmed blocking cause on this machine.")
    return "\n".join(out)


def run(args) -> int:
    from ..knowledge.explain import decode_log, explain_text, read_log

    from_stdin = args.log == "-"
    args.error_log = None if from_stdin else args.log
    ctx = context_from_args(args)  # a missing or unreadable LOG is a usage error (exit 2)
    try:
        text = decode_log(sys.stdin.buffer.read()) if from_stdin else read_log(args.log)
    except OSError as exc:
        raise UsageError(f"error log {args.log} cannot be read: {exc.strerror or exc}")
    explanation = explain_text(text, ctx, confirm_causes=not args.no_confirm,
                               source="stdin" if from_stdin else args.log)
    if args.json:
        print(json.dumps(explanation.to_dict(), indent=2, default=str))
    else:
        print(format_text(explanation))
    return EXIT_BLOCKING if explanation.blocking else EXIT_OK
