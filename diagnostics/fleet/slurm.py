"""`fleet run --engine slurm`: one `srun` step, one task per node, each writing its own report.

Slurm sites share the file system between nodes, so every task runs this same interpreter and
writes `DIR/nodes/<node id>/resolution-report.json`. srun is run with `-v` because its verbose
lines name the job, the step, the step's node list and which task runs where; its error lines
(`srun: error: n3: task 2: Exited with exit code 3`) are the engine's words for a node that did not
report. Task output goes to `DIR/logs/task-%t.{out,err}`: `%t` is the task id, unique per node
here, while `%N` is the host name, which emulated nodes share
(https://slurm.schedmd.com/srun.html#SECTION_FILENAME-PATTERN).

Ctrl-C or the step timeout cancels the step the way srun documents it: two SIGINTs within one
second terminate the tasks (https://slurm.schedmd.com/srun.html#SECTION_SIGNALS-AND-ESCAPE-SEQUENCES),
then `scancel JOB.STEP`, then srun itself is killed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from .hostlist import expand

RUN_VARIABLE = "LDM_DIAG_FLEET_RUN"  # the run id every task's report records, to tell old reports apart
_JOB = re.compile(r"srun: jobid (?P<job>\d+): nodes\(\d+\):`(?P<nodes>[^']*)'")
_LAUNCH = re.compile(r"launching StepId=(?P<job>\d+)\.(?P<step>\d+) on host (?P<node>\S+), \d+ tasks: (?P<tasks>[\d,\- ]+)")
_NODE_ERROR = re.compile(r"srun: error: (?P<node>[^\s:]+): tasks? (?P<tasks>[\d,\-]+): (?P<text>.*)$")
_OPTION_DUMP = re.compile(r"^srun: [\w-]+ +: ")  # `srun -v` echoing its options, e.g. "srun: error   : PATH"
_NOISE = ("launch/slurm", "defined options", "-----", "end of defined options", "route/default", "launch_p_step",
          "srun: jobid ", "srun: launching ")


@dataclass
class StepResult:
    argv: List[str]
    returncode: Optional[int]
    stderr_lines: List[str]
    timed_out: bool = False
    interrupted: bool = False
    error: str = ""  # srun could not be started
    job_id: Optional[str] = None
    step_id: Optional[str] = None
    nodelist: str = ""
    task_nodes: Dict[str, str] = field(default_factory=dict)  # task id -> node
    node_errors: Dict[str, List[str]] = field(default_factory=dict)  # node -> srun's error lines

    @property
    def nodes(self) -> List[str]:
        return expand(self.nodelist)

    def general_errors(self) -> List[str]:
        """srun's own messages that name no node (no allocation, bad option, unknown partition)."""
        return [line for line in self.stderr_lines if ("error" in line or "fatal" in line or "Unable" in line)
                and not _NODE_ERROR.search(line) and not _OPTION_DUMP.match(line)]


def srun_command(nodes: int, out_dir: Path, python: str, report_args: Sequence[str],
                 partition: Optional[str] = None, srun_args: Sequence[str] = ()) -> List[str]:
    """The srun line: `--nodes N --ntasks-per-node 1`, task output per task id, the report per node id."""
    logs = out_dir / "logs"
    argv = ["srun", "-v", f"--nodes={nodes}", "--ntasks-per-node=1", "--kill-on-bad-exit=0",
            "--job-name=ldm-diagnostics", f"--output={logs}/task-%t.out", f"--error={logs}/task-%t.err"]
    if partition:
        argv.append(f"--partition={partition}")
    argv += list(srun_args)
    argv += [python, "-m", "diagnostics", "report", "--out", str(out_dir / "nodes" / "{node}"), *report_args]
    return argv


def parse_srun(result: StepResult) -> StepResult:
    for line in result.stderr_lines:
        match = _JOB.search(line)
        if match:
            result.job_id, result.nodelist = match.group("job"), match.group("nodes")
        match = _LAUNCH.search(line)
        if match:
            result.job_id, result.step_id = match.group("job"), match.group("step")
            for task in expand(f"t[{match.group('tasks').replace(' ', '')}]"):
                result.task_nodes[task[1:]] = match.group("node")
        match = _NODE_ERROR.search(line)
        if match:
            result.node_errors.setdefault(match.group("node"), []).append(line.strip())
    return result


def _cancel(proc: subprocess.Popen, result: StepResult, wait: float = 15.0) -> None:
    """Terminate the step: SIGINT twice within a second, then scancel JOB.STEP, then kill srun."""
    try:
        for attempt in range(2):
            if attempt:
                # Pending signals are not queued: one sent before srun has taken the first would merge
                # with it. No sleep after the second one: the wait below ends when srun does.
                time.sleep(0.3)
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        proc.wait(timeout=wait)
        return
    except subprocess.TimeoutExpired:
        pass
    parse_srun(result)
    if result.job_id and result.step_id is not None:
        try:
            subprocess.run(["scancel", "--quiet", f"{result.job_id}.{result.step_id}"], timeout=10,
                           stdin=subprocess.DEVNULL, capture_output=True)
            proc.wait(timeout=10)
            return
        except (OSError, subprocess.TimeoutExpired):
            pass
    proc.kill()
    proc.wait(timeout=10)


def _echo(line: str) -> None:
    """srun's messages that matter, without its verbose chatter; exit code 1 is a node's blocking verdict."""
    if _OPTION_DUMP.match(line) or any(noise in line for noise in _NOISE) or line.endswith("Exited with exit code 1"):
        return
    if line.strip():
        print(line, file=sys.stderr, flush=True)


def run_step(argv: List[str], timeout: float, environ: Optional[Dict[str, str]] = None,
             echo: Callable[[str], None] = _echo) -> StepResult:
    """Run srun until it ends, the timeout passes or Ctrl-C; never raises for the step's own failures."""
    result = StepResult(list(argv), None, [])
    try:
        # A session of its own: the terminal's Ctrl-C reaches only us, and we cancel the step in order.
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, errors="replace", env=environ, start_new_session=True)
    except OSError as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        return result

    def read() -> None:
        for line in proc.stderr:
            line = line.rstrip("\n")
            result.stderr_lines.append(line)
            echo(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        try:
            # Returns as soon as srun exits; Popen.wait polls in short sleeps, so Ctrl-C still lands here.
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            result.timed_out = True
            _cancel(proc, result)
    except KeyboardInterrupt:
        result.interrupted = True
        _cancel(proc, result)
    reader.join(timeout=10)
    result.returncode = proc.returncode
    return parse_srun(result)


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""
    return " | ".join(text.splitlines()[-lines:])


def failure_words(result: StepResult, out_dir: Path, timeout: float) -> Dict[str, str]:
    """Per node of the step: what srun (and the task's own stderr) said. Used for nodes without a report."""
    by_node_task = {node: task for task, node in result.task_nodes.items()}
    words: Dict[str, str] = {}
    for node in result.nodes or list(result.node_errors):
        parts = list(result.node_errors.get(node, []))
        task = by_node_task.get(node)
        if task is not None:
            tail = _tail(out_dir / "logs" / f"task-{task}.err")
            if tail:
                parts.append(f"task {task} stderr: {tail}")
        if result.timed_out:
            parts.append(f"the step timed out after {timeout:g} s and was cancelled")
        elif result.interrupted:
            parts.append("interrupted (Ctrl-C): the step was cancelled")
        if not parts:
            parts.append(f"srun exited {result.returncode} and this node wrote no report")
        words[node] = "; ".join(parts)
    return words


def new_run_id() -> str:
    return f"{os.getpid()}-{time.time_ns()}"
