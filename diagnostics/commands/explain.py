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
    parser.add_argument("--verbose", action="store_true",
                        help="print every match, cause and message line (by default at most 60 lines)")
    parser.add_argument("--no-confirm", action="store_true",
                        help="only match the log against the knowledge base; run no checks")
    add_target_options(parser)


MAX_LINES = 60  # one failure explains in at most this many lines unless --verbose
SHOWN_MATCHES = 3
_WIDTH = 300


def _cut(text: str, width: int = _WIDTH) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 5] + " [...]"


def _problem_lines(explanation, verbose: bool) -> List[str]:
    from ..knowledge.state_dict import parse_key_report

    out: List[str] = []
    problem = explanation.original_problem
    if problem is None or not explanation.parsed.has_traceback:
        out.append(f"No Python traceback found in {explanation.source} ({len(explanation.parsed.lines)} lines read).")
    if problem is None:
        return out
    first, *rest = (problem["error_message"] or "").splitlines() or [""]
    where = f" (log line {problem['log_line']})" if problem.get("log_line") else ""
    out.append(f"Error{where}: {first if verbose else _cut(first)}")
    report = parse_key_report(problem.get("message") or "")
    if report is not None and not verbose:
        out.extend(f"    {_cut(line, 400)}" for line in report.summary_lines())
    else:
        out.extend(f"    {line if verbose else _cut(line, 200)}" for line in rest[: None if verbose else 4])
        if not verbose and len(rest) > 4:
            out.append(f"    ({len(rest) - 4} more message lines: --verbose)")
    if problem["file"]:
        out.append(f"  Location: {problem['file']}:{problem['line']} in {problem['qualname']}")
        if problem["code"]:
            out.append(f"      {_cut(problem['code'], 200)}")
    lib = problem.get("library_frame")
    if lib:
        out.append(f"  Raised in: {lib['file']}:{lib['line']} in {lib['qualname']}")
    if len(problem["chain"]) > 1:
        out.append("  Chain: " + " -> ".join(problem["chain"]))
    if problem.get("truncated"):
        out.append("  (the traceback is cut off in the log)")
    return out


def _match_lines(m, verbose: bool) -> List[str]:
    icon = _ICONS[m.status] if (m.status != "confirmed" or m.blocking) else "[!]"
    out = [f"{icon} {m.rank}. {m.signature.title} ({m.status})",
           f"      {m.summary() if verbose else _cut(m.summary(), 500)}"]
    for hit in m.hits[: None if verbose else 1]:
        label = f" [{hit.pattern.label}]" if hit.pattern.label else ""
        out.append(f"      matched line {hit.log_line}{label}")
        if hit.wording_note:
            out.append(f"      ! {hit.wording_note}")
    for need in m.reproduce + [n for n in m.context if n.outcome != "unavailable"]:
        out.append(f"      • {_cut(need.statement)}")
    open_causes = [c for c in m.causes if c.status != "refuted"]
    shown = open_causes if verbose else ([c for c in open_causes if c.status != "unverified"][:3] or open_causes[:3])
    if shown:
        out.append("      Causes:")
    for cause in shown:
        out.append(f"        - {cause.cause.title}: {cause.status}")
        for need in cause.needs[: None if verbose else 2]:
            out.append(f"            · {_cut(need.statement, 200)}")
    hidden = len(open_causes) - len(shown)
    if hidden > 0:
        out.append(f"        ({hidden} more cause(s) not decided here; --verbose or --json lists them)")
    refuted = [c for c in m.causes if c.status == "refuted"]
    if refuted:
        out.append("      Ruled out here: " + ", ".join(c.cause.title for c in refuted))
    out.append(f"      Fix: {m.fix if verbose else _cut(m.fix, 600)}")
    if m.signature.links:
        out.append(f"      See: {m.signature.links[0]}")
    return out


def format_text(explanation, verbose: bool = False) -> str:
    """The explanation for a terminal: the error and its location, then the matches, best first.
    At most MAX_LINES lines unless `verbose`; `--json` keeps the full structure."""
    out = _problem_lines(explanation, verbose)
    out.append("")
    matches = explanation.matches
    if not matches:
        out.append("No known failure signature matches this log.")
    else:
        out.append("Known failures, best first:")
    main = matches if verbose else [m for m in matches if m.weight >= 3][:SHOWN_MATCHES] or matches[:1]
    for m in main:
        out.extend(_match_lines(m, verbose))
    others = [m for m in matches if m not in main]
    if others:
        out.append("Also in the log: " + "; ".join(f"{m.signature.title} ({m.status})"
                                                    for m in others))
    if explanation.check_module_errors:
        out.append("")
        out.append("Check modules that failed to load: " + "; ".join(explanation.check_module_errors))
    out.append("")
    blocking = [m for m in explanation.matches if m.blocking]
    if blocking:
        closing = (f"{len(blocking)} confirmed blocking cause(s): "
                   + ", ".join(m.signature.title for m in blocking))
    elif not explanation.confirmed_run:
        closing = "Checks were not run (--no-confirm): the matches are hypotheses."
    else:
        closing = "No confirmed blocking cause on this machine."
    if not verbose and len(out) + 1 > MAX_LINES:
        dropped = len(out) + 2 - MAX_LINES
        out = out[: MAX_LINES - 2] + [f"({dropped} more lines: --verbose)"]
    out.append(closing)
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
        print(format_text(explanation, verbose=getattr(args, "verbose", False)))
    return EXIT_BLOCKING if explanation.blocking else EXIT_OK
