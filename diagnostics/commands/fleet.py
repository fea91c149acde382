"""`python -m diagnostics fleet run|merge|manifest`: the report on every node, merged into one."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from ..cli import EXIT_BLOCKING, EXIT_OK, UsageError
from .common import add_target_options, options_from_args
from .report import _sigterm_as_interrupt

RUN_HELP = ("run the report on N Slurm nodes with one `srun --nodes N --ntasks-per-node 1` step, then merge. "
            "Every task runs this same interpreter and writes DIR/nodes/<node>/: Slurm sites share the "
            "file system between nodes (run it from a shared directory). Inside an sbatch allocation the "
            "step uses the allocation's nodes.")
MERGE_HELP = ("merge node reports from any engine (Slurm, Kubernetes pods, pdsh, Ansible): report JSON "
              "files, directories of them, or logs (`kubectl logs --prefix`) with lines from "
              "`report --stdout-json`. Writes resolution-fleet.{md,html,json}.")
MANIFEST_HELP = ("print a Kubernetes DaemonSet or indexed Job that runs the report on every GPU node, or an "
                 "sbatch script for Slurm")


def _add_run(sub) -> None:
    cmd = sub.add_parser("run", help="run the report on every node through Slurm, then merge", description=RUN_HELP)
    cmd.add_argument("--engine", choices=("slurm",), default="slurm", help="the engine that runs the tasks (slurm)")
    cmd.add_argument("--nodes", type=int, required=True, metavar="N", help="number of nodes (srun --nodes)")
    cmd.add_argument("--partition", metavar="P", help="Slurm partition (srun --partition)")
    cmd.add_argument("--srun-arg", action="append", default=[], metavar="ARG",
                     help="extra srun option, repeatable; write options as --srun-arg=--exclusive")
    cmd.add_argument("--out", default="reports/fleet", metavar="DIR",
                     help="fleet output on the shared file system (default reports/fleet): nodes/, logs/, "
                          "resolution-fleet.*")
    cmd.add_argument("--python", default=sys.executable, metavar="PATH",
                     help="interpreter the tasks run (default: this one, at the same path on every node)")
    cmd.add_argument("--step-timeout", type=float, default=1800.0, metavar="S",
                     help="seconds before the step is cancelled and unreported nodes count as missing (default 1800)")
    add_target_options(cmd)


def _add_merge(sub) -> None:
    cmd = sub.add_parser("merge", help="merge node reports from any engine", description=MERGE_HELP)
    cmd.add_argument("inputs", nargs="+", metavar="REPORT_OR_DIR", help="report JSON, directory, or log file")
    cmd.add_argument("--out", default="reports/fleet", metavar="DIR", help="where resolution-fleet.* go (default reports/fleet)")
    cmd.add_argument("--expect", metavar="NODES",
                     help="nodes that should have reported: a Slurm host list (n[1-4]), names separated by "
                          "commas or spaces (kubectl's node/NAME is fine), or @FILE with one name per line")
    cmd.add_argument("--format", default="md,html,json", help="comma-separated: md, html, json (default: all)")


def _add_manifest(sub) -> None:
    cmd = sub.add_parser("manifest", help="print a DaemonSet/Job manifest or an sbatch script", description=MANIFEST_HELP)
    cmd.add_argument("--engine", choices=("kubernetes", "slurm"), required=True)
    cmd.add_argument("--image", help="container image with ldm-diagnostics and the serving stack (kubernetes)")
    cmd.add_argument("--kind", choices=("daemonset", "job"), default="daemonset", help="kubernetes object (default daemonset)")
    cmd.add_argument("--namespace", default="default", metavar="NS", help="kubernetes namespace (default: default)")
    cmd.add_argument("--nodes", type=int, metavar="N", help="nodes for a Job (completions) or an sbatch script")
    cmd.add_argument("--partition", metavar="P", help="Slurm partition (sbatch)")
    cmd.add_argument("--hf-cache", default="/root/.cache/huggingface", metavar="HOST_PATH",
                     help="host path of the Hugging Face cache the serving pods mount (mounted read-only)")
    cmd.add_argument("--gpus", type=int, default=1, metavar="N", help="nvidia.com/gpu per pod (default 1; 0: none)")
    cmd.add_argument("--out", default="reports/fleet", metavar="DIR", help="fleet output directory in the sbatch script")
    cmd.add_argument("--report-arg", action="append", default=[], metavar="ARG",
                     help="extra `report` option for every node, repeatable (--report-arg=--device=cuda)")


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="fleet_command", metavar="action")
    _add_run(sub)
    _add_merge(sub)
    _add_manifest(sub)


def _formats(text: str) -> List[str]:
    from ..fleet.render import FORMATS

    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    if not formats or any(f not in FORMATS for f in formats):
        raise UsageError(f"--format takes a comma-separated list of {', '.join(FORMATS)}; got {text!r}")
    return formats


def parse_expect(text: Optional[str]) -> List[str]:
    from ..fleet.hostlist import expand

    if not text:
        return []
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise UsageError(f"--expect: cannot read {text[1:]}: {exc.strerror or exc}") from None
    names: List[str] = []
    for word in text.split():
        for name in expand(word):
            name = name[5:] if name.startswith("node/") else name
            if name and name not in names:
                names.append(name)
    return names


def _out_dir(path: str) -> Path:
    from ..report.write import check_writable_dir

    problem = check_writable_dir(path)
    if problem:
        raise UsageError(f"--out: {problem}")
    return Path(path)


def _save_framed(inputs, out: Path) -> None:
    """Framed reports (from logs) get a file of their own under DIR/nodes/, for the matrix's links."""
    import json

    from ..fleet.identity import safe_file_name
    from ..fleet.load import slim
    from ..report.write import atomic_write_text

    for item in inputs:
        if item.path is None and item.data is not None:
            target = out / "nodes" / safe_file_name(item.node) / "resolution-report.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(target, json.dumps(item.data, indent=1, ensure_ascii=False) + "\n")
            item.path, item.data = str(target), slim(item.data)


def _finish(report, out: Path, formats: List[str]) -> int:
    from ..fleet.render import terminal_lines, write_fleet

    written = write_fleet(report, out, formats)
    for line in terminal_lines(report, written):
        print(line)
    return EXIT_BLOCKING if (report.blocking or report.missing) else EXIT_OK


def _merge(args) -> int:
    from ..fleet.load import ReportInputError, read_inputs
    from ..fleet.merge import build_fleet, expected_from_reports

    formats = _formats(args.format)
    expected = parse_expect(args.expect)
    try:
        inputs = read_inputs(args.inputs)
    except ReportInputError as exc:
        raise UsageError(str(exc)) from None
    out = _out_dir(args.out)
    _save_framed(inputs, out)
    report = build_fleet(inputs, str(out), expected or expected_from_reports(inputs))
    return _finish(report, out, formats)


def _report_args(args) -> List[str]:
    """The node's `report` options, from this command's target options (paths made absolute)."""
    options = options_from_args(args)  # the same validation as `report`: a wrong path is exit 2 here
    argv: List[str] = []
    for flag, value in (("--checkpoint", options.checkpoint), ("--config", options.config),
                        ("--code-root", options.code_root)):
        if value:
            argv += [flag, os.path.abspath(value)]
    for model_id in args.model_id:
        argv += ["--model-id", model_id]
    return argv + ["--device", args.device, "--timeout", f"{args.timeout:g}", "--format", "json,html"]


def _current_inputs(out: Path, run_id: str, started: float):
    """This step's node reports; reports left by an earlier run into the same DIR do not count."""
    from ..fleet.load import ReportInputError, read_inputs

    try:
        inputs = read_inputs([str(out / "nodes")])
    except ReportInputError:
        return [], {}
    current, stale = [], {}
    for item in inputs:
        node = (item.data or {}).get("node") or {}
        fresh = (node.get("fleet_run") == run_id) if item.data is not None else \
            (item.path is not None and os.path.getmtime(item.path) >= started)
        if fresh:
            current.append(item)
        else:
            stale[item.node] = f"only a report from an earlier run was found ({item.source})"
    return current, stale


def _run(args) -> int:
    from ..fleet.merge import build_fleet
    from ..fleet.slurm import RUN_VARIABLE, failure_words, new_run_id, run_step, srun_command

    if args.nodes < 1:
        raise UsageError("--nodes must be at least 1")
    if shutil.which("srun") is None:
        raise UsageError("srun is not on PATH: run `fleet run --engine slurm` on a Slurm login node or inside an allocation")
    report_args = _report_args(args)
    out = _out_dir(args.out).resolve()
    for sub in ("nodes", "logs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    run_id, started = new_run_id(), time.time() - 1
    argv = srun_command(args.nodes, out, args.python, report_args, args.partition, args.srun_arg)
    print(f"Running the report on {args.nodes} node(s): {shlex.join(argv)}", flush=True)
    _sigterm_as_interrupt()  # a killed login shell or `scancel` of an sbatch job cancels the step too
    result = run_step(argv, args.step_timeout, dict(os.environ, **{RUN_VARIABLE: run_id}))
    if result.error:
        raise UsageError(f"cannot start srun: {result.error}")
    inputs, stale = _current_inputs(out, run_id, started)
    failures: Dict[str, str] = failure_words(result, out, args.step_timeout)
    reported = {item.node for item in inputs}
    for node, words in stale.items():
        if node not in reported:
            failures[node] = f"{failures[node]}; {words}" if node in failures else words
    expected = result.nodes
    general = result.general_errors()
    if not expected and len(inputs) < args.nodes:  # srun never said which nodes: count what is missing
        why = "; ".join(general[-5:]) or f"srun exited {result.returncode} without naming the step's nodes"
        for index in range(len(inputs), args.nodes):
            failures[f"unallocated-{index + 1}"] = why
    engine = {"name": "slurm", "command": shlex.join(argv), "job_id": result.job_id, "step_id": result.step_id,
              "nodelist": result.nodelist, "returncode": result.returncode, "timed_out": result.timed_out,
              "interrupted": result.interrupted, "messages": general[-20:]}
    report = build_fleet(inputs, str(out), expected, failures, engine)
    code = _finish(report, out, ["md", "html", "json"])
    return 130 if result.interrupted else code


def run(args) -> int:
    command = getattr(args, "fleet_command", None)
    if command == "run":
        return _run(args)
    if command == "merge":
        return _merge(args)
    if command == "manifest":
        from ..fleet.manifest import print_manifest

        return print_manifest(args)
    raise UsageError("fleet needs an action: run, merge or manifest (see python -m diagnostics fleet --help)")
