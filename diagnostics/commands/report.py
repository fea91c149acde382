"""`python -m diagnostics report`: run every check, print the summary, write md/html/json."""

from __future__ import annotations

import sys

from ..cli import EXIT_BLOCKING, EXIT_OK, UsageError
from ..findings import Status
from .common import add_target_options, context_from_args


def add_arguments(parser) -> None:
    add_target_options(parser)
    parser.add_argument("--out", default="reports",
                        help="directory for the report files (default: reports/); {node} in it becomes the node id")
    parser.add_argument("--format", default="md,html,json",
                        help="comma-separated formats to write: md, html, json (default: all)")
    parser.add_argument("--error-log", metavar="LOG",
                        help="log with the failure to quote and explain in the report (env LDM_DIAG_ERROR_LOG)")
    parser.add_argument("--node-id", metavar="ID",
                        help="this node's name in a fleet (default: $SLURMD_NODENAME, $NODE_NAME, the host name)")
    parser.add_argument("--stdout-json", action="store_true",
                        help="also print the JSON report on stdout as one framed line, for `kubectl logs` "
                             "and `fleet merge`")
    parser.add_argument("--deep", action="store_true", help="read all checkpoint tensors: NaN/Inf scan, EMA statistics")
    parser.add_argument("--hash", action="store_true", help="sha256, AutoV2 and legacy A1111 hashes of the checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="print no progress on stderr")
    parser.add_argument("-v", "--verbose", action="store_true", help="show every finding and crash tracebacks")


def _formats(text: str):
    from ..report.render import FORMATS

    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise UsageError(f"--format takes a comma-separated list of {', '.join(FORMATS)}; got {text!r}")
    return formats


def _explain_findings(original_problem):
    return original_problem.explanation.findings()


def _explain_log(ctx):
    """`--error-log`: the traceback fills Original Problem, the confirmed causes Root Cause Analysis.
    Confirmation reuses the results of this run (memoised on the context) instead of running the
    checks again; the `original_problem` fact is the explained log."""
    from ..registry import Check, run_check

    return run_check(Check("explain.traceback", "Error log explanation", _explain_findings,
                           reads=("original_problem",)), ctx)


def _sigterm_as_interrupt() -> None:
    """`docker stop` sends SIGTERM: treat it like Ctrl-C so an incomplete report is still written."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, handler)
    except (ValueError, OSError, AttributeError):  # not the main thread, or no SIGTERM here
        pass


def run(args) -> int:
    from .. import progress
    from ..registry import all_checks, run_check
    from ..report.build import build_report
    from ..report.render import output_paths, write_report
    from ..report.terminal import marks_for, render_terminal
    from ..report.write import check_writable_dir

    from ..fleet.identity import choose_node_id, expand_out, node_identity

    formats = _formats(args.format)
    ctx = context_from_args(args)
    args.out = expand_out(args.out, choose_node_id(args.node_id, ctx.environ)["id"])
    problem = check_writable_dir(args.out)
    if problem:  # before any check runs: a report we cannot write is a usage error
        raise UsageError(f"--out: {problem}")

    results, interrupted = [], False
    _sigterm_as_interrupt()
    with progress.use(progress.for_stream(sys.stderr, enabled=not args.no_progress)) as reporter:
        bytes_progress = progress.BytesProgress(reporter)
        ctx.progress = bytes_progress  # --deep / --hash report bytes read as they go
        try:
            for check in all_checks():
                reporter.check(check.id)
                result = run_check(check, ctx)
                results.append(result)
                reporter.check_done(check.id, result.status.value, result.seconds)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bytes_progress.close()
    if ctx.options.error_log and not interrupted:
        results.append(_explain_log(ctx))
    crashed = [r.check.id for r in results if r.status is Status.ERROR]
    incomplete = interrupted or bool(crashed)
    paths = [str(p) for p in output_paths(args.out, formats, incomplete).values()]
    report = build_report(results, ctx, written=paths, original_problem=ctx.facts.get("original_problem"),
                          incomplete=incomplete, node=node_identity(ctx, args.node_id))
    write_report(report, args.out, formats)
    if args.stdout_json:
        from ..fleet.load import frame_report
        from ..report.render import render_json

        print(frame_report(report.node["id"], render_json(report)), flush=True)

    for line in render_terminal(results, marks_for(sys.stdout), verbose=args.verbose, actions=report.actions):
        print(report.redact(line))
    if interrupted:
        print(f"Interrupted after {len(results)} checks: the last complete report was left as it was.")
    elif crashed:
        print(f"Incomplete: {', '.join(crashed)} crashed (see the report); the last complete report was left as it was.")
    print(f"Status: {report.status}" + (" (incomplete)" if incomplete else "") + f". Reports: {', '.join(paths)}")
    if interrupted:
        return 130
    return EXIT_BLOCKING if report.blocking else EXIT_OK
