"""`fleet run --engine slurm` on a real Slurm cluster: slurmctld and 4 emulated nodes on this host
(tests/slurm/cluster.sh). `.ci/run` starts it and sets LDM_DIAG_TEST_SLURM_CONF; without that, a
cluster is started here when the Slurm daemons are installed, and the tests skip otherwise."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

import pytest

from tests.fakehub import CLIP_ID, clip_repo, hermetic_env, populate_cache

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "tests" / "slurm" / "cluster.sh"
DAEMONS = ("slurmctld", "slurmd", "srun", "sinfo", "munged", "mungekey")
# Job states of a job that has ended (https://slurm.schedmd.com/squeue.html#SECTION_JOB-STATE-CODES);
# COMPLETING is not one: the job's processes may still be exiting.
ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE",
         "OUT_OF_MEMORY")


@pytest.fixture(scope="module")
def slurm_conf(tmp_path_factory):
    conf = os.environ.get("LDM_DIAG_TEST_SLURM_CONF")
    if conf:
        if not Path(conf).is_file():
            pytest.skip(f"LDM_DIAG_TEST_SLURM_CONF={conf} is not a file")
        yield conf
        return
    absent = [name for name in DAEMONS if shutil.which(name) is None]
    if absent:
        pytest.skip("no Slurm test cluster: LDM_DIAG_TEST_SLURM_CONF is unset and " + ", ".join(absent)
                    + " not installed (Debian: apt-get install slurmctld slurmd slurm-client munge; .ci/run does)")
    if os.geteuid() != 0:
        pytest.skip("the Slurm test cluster runs its daemons as root (SlurmUser=root)")
    base = tmp_path_factory.mktemp("slurm")
    proc = subprocess.run(["bash", str(CLUSTER), "start", str(base)], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        pytest.skip(f"the Slurm test cluster did not start: {proc.stderr[-800:]}")
    try:
        yield str(base / "slurm.conf")
    finally:
        subprocess.run(["bash", str(CLUSTER), "stop", str(base)], capture_output=True, text=True, timeout=30)


def _env(slurm_conf, base=None, **extra):
    env = dict(base if base is not None else os.environ)
    env.update(SLURM_CONF=slurm_conf, PYTHONPATH=os.pathsep.join([str(ROOT)] + [
        p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    env.update(extra)
    return env


def fleet_run(slurm_conf, out, *args, env=None, timeout=400):
    return subprocess.run([sys.executable, "-m", "diagnostics", "fleet", "run", "--engine", "slurm", "--nodes", "4",
                           "--out", str(out), *args], env=env or _env(slurm_conf), capture_output=True, text=True,
                          timeout=timeout)


def _fleet_json(out: Path):
    data = json.loads((out / "resolution-fleet.json").read_text(encoding="utf-8"))
    assert data["schema"] == "ldm-diagnostics-fleet/1"
    return data


def _wrapper(path: Path, body: str) -> str:
    path.write_text(f"#!/bin/sh\n{body}\nexec {sys.executable} \"$@\"\n", encoding="utf-8")
    path.chmod(0o755)
    return str(path)


def _no_steps_left(slurm_conf, seconds=30.0) -> str:
    """'' once squeue lists no job of ours, else what it still lists."""
    deadline, listed = time.monotonic() + seconds, ""
    while time.monotonic() < deadline:
        listed = subprocess.run(["squeue", "-h", "-n", "ldm-diagnostics", "-o", "%i %T"], capture_output=True,
                                text=True, timeout=10, env=_env(slurm_conf)).stdout.strip()
        if not listed:
            return ""
        time.sleep(0.1)
    return listed


def _job_exit_code(slurm_conf, job: str, seconds=400.0) -> int:
    """The exit code `sbatch --wait` gives once the job has ended: the script's own, or 1 when a signal
    ended it (`_job_wait` in https://github.com/SchedMD/slurm/blob/master/src/sbatch/sbatch.c). Asked
    of scontrol every 0.2 s: sbatch --wait itself sleeps 2 s, then 8 s, then 32 s between its looks."""
    deadline, shown = time.monotonic() + seconds, ""
    while time.monotonic() < deadline:
        shown = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True, text=True, timeout=10,
                               env=_env(slurm_conf)).stdout
        state = re.search(r"\bJobState=(\S+)", shown)
        if state and state.group(1) in ENDED:
            code, sig = re.search(r"\bExitCode=(\d+):(\d+)", shown).groups()
            return 1 if int(sig) else int(code)  # ExitCode=<exit code>:<signal>
        time.sleep(0.2)
    pytest.fail(f"job {job} did not end within {seconds:g} s: {shown.strip()}")


@pytest.fixture(scope="module")
def first_run(slurm_conf, tmp_path_factory):
    """One fleet run on the 4 nodes with CLIP cached and offline mode on, read by the four-nodes and
    the exit-0 tests (each node's report is the costly part)."""
    base = tmp_path_factory.mktemp("fleet-first")
    populate_cache(base / "hf" / "hub", CLIP_ID, clip_repo())
    proc = fleet_run(slurm_conf, base / "fleet", env=_env(slurm_conf, hermetic_env(base, HF_HUB_OFFLINE="1")))
    return proc, base / "fleet"


def test_four_nodes_four_ids_and_one_failing_node_is_missing_with_srun_words(slurm_conf, first_run, tmp_path):
    proc, first = first_run
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    out = tmp_path / "fleet"
    shutil.copytree(str(first), str(out))  # the second run below writes into this DIR
    data = _fleet_json(out)
    ids = sorted(n["node"] for n in data["nodes"])
    assert ids == ["n1", "n2", "n3", "n4"] and data["missing"] == []
    assert len({n["hostname"] for n in data["nodes"]}) == 1  # emulated nodes share the host name, not the id
    for node in ids:
        report = json.loads((out / "nodes" / node / "resolution-report.json").read_text(encoding="utf-8"))
        assert report["node"]["id"] == node and report["node"]["id_source"] == "SLURMD_NODENAME"
        assert report["node"]["engine"]["name"] == "slurm" and report["node"]["engine"]["slurm_step_nodelist"] == "n[1-4]"
    assert data["engine"]["nodelist"] == "n[1-4]" and data["engine"]["job_id"]
    assert proc.returncode == (1 if any(n["blocking_codes"] for n in data["nodes"]) else 0)

    # The same run again into the same DIR, n3 failing before the report starts. What the other
    # nodes report is not looked at: a short probe timeout stops their tokenizer child early.
    failing = _wrapper(tmp_path / "python-but-n3-fails",
                       'if [ "$SLURMD_NODENAME" = n3 ]; then echo "n3: GPU has fallen off the bus" >&2; exit 42; fi')
    proc = fleet_run(slurm_conf, out, "--python", failing, "--timeout", "0.2")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    data = _fleet_json(out)
    assert [m["node"] for m in data["missing"]] == ["n3"]
    reason = data["missing"][0]["reason"]
    assert "srun: error: n3: task 2: Exited with exit code 42" in reason  # the engine's words
    assert "GPU has fallen off the bus" in reason  # and the task's own stderr
    assert "earlier run" in reason  # n3's report of the first run is not taken for this one
    n3 = next(n for n in data["nodes"] if n["node"] == "n3")
    assert n3["status"] == "MISSING" and n3["blocking_codes"] == ["fleet.node-missing"]
    assert any(g["codes"] == ["fleet.node-missing"] and g["nodes"] == ["n3"] for g in data["groups"])
    assert "missing n3: srun: error: n3: task 2" in proc.stdout
    assert "n3" in (out / "resolution-fleet.md").read_text(encoding="utf-8").split("## Missing nodes")[1]


@pytest.mark.skipif(find_spec("transformers") is None or find_spec("huggingface_hub") is None,
                    reason="a healthy node needs transformers and huggingface_hub for the tokenizer check")
def test_exit_0_when_every_node_is_healthy(first_run):
    proc, out = first_run
    data = _fleet_json(out)
    blocking = sorted({code for n in data["nodes"] for code in n["blocking_codes"]})
    if blocking and "fleet.node-missing" not in blocking:
        pytest.skip(f"this machine blocks even with CLIP cached: {blocking}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert data["counts"] == {"nodes": 4, "reported": 4, "blocking": 0, "missing": 0}


def test_ctrl_c_cancels_the_step(slurm_conf, tmp_path):
    started = tmp_path / "started"
    started.mkdir()
    slow = _wrapper(tmp_path / "slow-python", f'touch "{started}/$SLURMD_NODENAME"; sleep 120')
    out = tmp_path / "fleet"
    proc = subprocess.Popen([sys.executable, "-m", "diagnostics", "fleet", "run", "--nodes", "4", "--out", str(out),
                             "--python", slow], env=_env(slurm_conf), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the step's 4 tasks run
            if len(list(started.iterdir())) == 4:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the step never ran")
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # SIGTERM is handled like Ctrl-C: the step is cancelled, not orphaned
            proc.terminate()
            proc.communicate(timeout=60)
    assert proc.returncode == 130, stdout + stderr
    assert _no_steps_left(slurm_conf) == ""
    data = _fleet_json(out)
    assert sorted(m["node"] for m in data["missing"]) == ["n1", "n2", "n3", "n4"]
    assert all("interrupted (Ctrl-C): the step was cancelled" in m["reason"] for m in data["missing"])
    assert data["engine"]["interrupted"] is True


def test_step_timeout_cancels_and_names_every_node(slurm_conf, tmp_path):
    slow = _wrapper(tmp_path / "slow-python", "sleep 120")
    proc = fleet_run(slurm_conf, tmp_path / "fleet", "--python", slow, "--step-timeout", "2", timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    data = _fleet_json(tmp_path / "fleet")
    assert sorted(m["node"] for m in data["missing"]) == ["n1", "n2", "n3", "n4"]
    assert all("timed out after 2 s" in m["reason"] for m in data["missing"])
    assert _no_steps_left(slurm_conf) == ""


def test_no_allocation_is_reported_with_srun_words(slurm_conf, tmp_path):
    proc = fleet_run(slurm_conf, tmp_path / "fleet", "--partition", "no-such-partition", timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    data = _fleet_json(tmp_path / "fleet")
    assert [m["node"] for m in data["missing"]] == [f"unallocated-{i}" for i in range(1, 5)]
    assert "partition" in data["missing"][0]["reason"].lower()


def test_sbatch_script_runs_the_fleet_on_the_cluster(slurm_conf, tmp_path):
    # The nodes' findings are not looked at: a short probe timeout (passed on to every node's report)
    # stops their tokenizer child early.
    script = subprocess.run([sys.executable, "-m", "diagnostics", "fleet", "manifest", "--engine", "slurm", "--nodes", "4",
                             "--partition", "debug", "--out", str(tmp_path / "fleet"), "--report-arg=--timeout=0.2"],
                            capture_output=True, text=True, timeout=60, env=_env(slurm_conf))
    assert script.returncode == 0, script.stderr
    path = tmp_path / "ldm-diagnostics.sbatch"
    path.write_text(script.stdout, encoding="utf-8")
    proc = subprocess.run(["sbatch", "--parsable", str(path)], capture_output=True, text=True, timeout=60,
                          cwd=str(tmp_path), env=_env(slurm_conf))
    job = proc.stdout.strip().split(";")[0]
    assert job.isdigit(), proc.stdout + proc.stderr
    returncode = _job_exit_code(slurm_conf, job)
    data = _fleet_json(tmp_path / "fleet" / job)
    assert sorted(n["node"] for n in data["nodes"]) == ["n1", "n2", "n3", "n4"]
    log = (tmp_path / f"ldm-diagnostics-{job}.out").read_text(encoding="utf-8")
    assert "Fleet: 4 nodes, 4 reported" in log
    assert returncode == (1 if data["counts"]["blocking"] else 0)
