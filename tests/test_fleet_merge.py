"""`fleet merge` over real node reports made on this machine under different conditions: the plain
environment, the Hub endpoint on a closed port, a venv without the ML stack, and (with transformers)
a healthy node with CLIP in its cache. Also `kubectl logs --prefix` output, bad inputs, escaping."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from importlib.util import find_spec
from pathlib import Path

import pytest

from tests.fakehub import CLIP_ID, clip_repo, closed_port, hermetic_env, populate_cache

ROOT = Path(__file__).resolve().parents[1]


HEALTHY = find_spec("transformers") is not None and find_spec("huggingface_hub") is not None


class _Report:
    """`report` started in the background, its output in files (a pipe nobody reads yet would stall
    it: --stdout-json prints the whole report); `finish()` waits and gives the CompletedProcess."""

    def __init__(self, python, out: str, node: str, env=None, extra=()):
        environ = dict(env if env is not None else os.environ)
        environ["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p])
        for name in ("SLURMD_NODENAME", "NODE_NAME"):
            environ.pop(name, None)
        self.files = [tempfile.TemporaryFile(mode="w+", encoding="utf-8") for _ in range(2)]
        self.outputs = ["", ""]
        self.proc = subprocess.Popen([python, "-m", "diagnostics", "report", "--node-id", node, "--out", out,
                                      "--format", "json,html", *extra], env=environ, stdout=self.files[0],
                                     stderr=self.files[1])
        self.done = None

    def finish(self) -> subprocess.CompletedProcess:
        if self.done is None:
            try:
                self.proc.wait(timeout=300)
            finally:
                self.stop()
            stdout, stderr = self.outputs
            self.done = subprocess.CompletedProcess(self.proc.args, self.proc.returncode, stdout, stderr)
        return self.done

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.files:
            self.outputs = []
            for handle in self.files:
                handle.seek(0)
                self.outputs.append(handle.read())
                handle.close()
            self.files = []


def fleet(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "diagnostics", "fleet", *args], capture_output=True, text=True,
                          timeout=300, env=env, cwd=cwd)


@pytest.fixture(scope="module")
def healthy(tmp_path_factory):
    """A node with CLIP cached and offline mode on, alone in its DIR/nodes/: started here, so that it
    runs while `reports` makes the others; `healthy()` waits for it and gives (DIR/nodes, the run)."""
    if not HEALTHY:
        yield None
        return
    base = tmp_path_factory.mktemp("fleet-healthy")
    populate_cache(base / "hf" / "hub", CLIP_ID, clip_repo())
    run = _Report(sys.executable, str(base / "nodes" / "{node}"), "healthy-1", env=hermetic_env(base, HF_HUB_OFFLINE="1"))
    yield lambda: (base / "nodes", run.finish())
    run.stop()


@pytest.fixture(scope="module")
def reports(tmp_path_factory, healthy, request):
    """DIR/nodes/<node>/resolution-report.{json,html}, one per condition (`--out DIR/nodes/{node}`),
    made side by side (and beside the `healthy` node, started first)."""
    base = tmp_path_factory.mktemp("fleet-nodes")
    out = str(base / "nodes" / "{node}")
    started = {
        "normal-1": _Report(sys.executable, out, "normal-1"),
        "normal-2": _Report(sys.executable, out, "normal-2", extra=("--stdout-json",)),
        "hub-down-1": _Report(sys.executable, out, "hub-down-1",
                              env=dict(os.environ, HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}")),
    }
    try:
        # Asked for only now, so that a venv being built does not hold the other reports back.
        started["bare-1"] = _Report(request.getfixturevalue("bare_python"), out, "bare-1")
        made = {node: run.finish() for node, run in started.items()}
    finally:
        for run in started.values():
            run.stop()
    for node, proc in made.items():
        assert proc.returncode in (0, 1), (node, proc.stdout[-1000:], proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return base, made


def _merge_json(out: Path):
    data = json.loads((out / "resolution-fleet.json").read_text(encoding="utf-8"))
    assert data["schema"] == "ldm-diagnostics-fleet/1"
    return data


def test_merge_groups_nodes_by_causes_and_shows_drift(reports, tmp_path):
    base, _ = reports
    proc = fleet("merge", str(base / "nodes"), "--out", str(tmp_path / "fleet"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    data = _merge_json(tmp_path / "fleet")
    nodes = {n["node"]: n for n in data["nodes"]}
    assert set(nodes) == {"normal-1", "normal-2", "hub-down-1", "bare-1"}
    for node in nodes.values():
        assert node["status"] in ("UNRESOLVED", "DEGRADED", "RESOLVED")
        assert (tmp_path / "fleet" / node["report"]).is_file()
    assert "env.torch-missing" in nodes["bare-1"]["blocking_codes"]
    assert nodes["normal-1"]["blocking_codes"] == nodes["normal-2"]["blocking_codes"]
    assert nodes["hub-down-1"]["blocking_codes"] != nodes["normal-1"]["blocking_codes"]

    # Where this interpreter itself lacks the ML stack (the Python 3.8 CI job), "bare" is "normal".
    has_stack = find_spec("torch") is not None
    groups = data["groups"]
    assert len(groups) >= (3 if has_stack else 2)
    assert [g["count"] for g in groups] == sorted((g["count"] for g in groups), reverse=True)
    assert set(groups[0]["nodes"]) >= {"normal-1", "normal-2"}
    assert groups[0]["summary"].startswith(f"{len(groups[0]['nodes'])} of 4 nodes: ")
    for group in groups:  # every cause of a group comes with its fix, once
        assert [c["code"] for c in group["causes"]] == group["codes"]
        assert all(c["fix"] for c in group["causes"])

    md = (tmp_path / "fleet" / "resolution-fleet.md").read_text(encoding="utf-8")
    assert md.index("## Groups") < md.index("## Drift") < md.index("## Nodes × areas")
    html = (tmp_path / "fleet" / "resolution-fleet.html").read_text(encoding="utf-8")
    page = os.path.relpath(base / "nodes" / "bare-1" / "resolution-report.html", tmp_path / "fleet")
    assert f'href="{page}"' in html  # the matrix links each node's own report, relative to the fleet report
    assert "Status: UNRESOLVED" in proc.stdout
    if not has_stack:
        return
    drift = {item["key"]: {v["value"]: v["nodes"] for v in item["values"]} for item in data["drift"]}
    assert drift["package: torch"]["not installed"] == ["bare-1"]
    assert set(drift["package: torch"][next(v for v in drift["package: torch"] if v != "not installed")]) == \
        {"normal-1", "normal-2", "hub-down-1"}
    assert "torch CUDA build" in drift and "not installed" in drift["torch CUDA build"]
    assert "2 of 4 nodes:" in md and "package: torch" in md


def _kubectl_log(pod_outputs):
    """What `kubectl logs -l ... --prefix --tail=-1` prints: each pod's lines, each with its prefix."""
    lines = []
    for pod, text in pod_outputs:
        lines += [f"[pod/{pod}/report] {line}" for line in text.splitlines()]
    return "\n".join(lines) + "\n"


def test_merge_reads_kubectl_logs_with_framed_reports(reports, tmp_path):
    _, made = reports
    framed = made["normal-2"].stdout
    assert "@ldm-diagnostics-report/1 node=normal-2 {" in framed
    own = json.loads(framed.split("@ldm-diagnostics-report/1 node=normal-2 ", 1)[1].splitlines()[0])
    assert own["schema"] == "ldm-diagnostics/1" and own["node"]["id"] == "normal-2"
    # Two more pods: the same output for another node id, and one killed while writing its line.
    other = framed.replace("node=normal-2", "node=gpu-b").replace('"id":"normal-2"', '"id":"gpu-b"')
    frame = next(line for line in framed.splitlines() if "@ldm-diagnostics-report/1" in line)
    cut = "Status: UNRESOLVED\n" + frame.replace("node=normal-2", "node=gpu-c")[: len(frame) // 2] + "\n"
    log = tmp_path / "fleet.log"
    log.write_text(_kubectl_log([("ldm-diagnostics-a1", framed), ("ldm-diagnostics-b2", other),
                                 ("ldm-diagnostics-c3", cut)]), encoding="utf-8")
    proc = fleet("merge", str(log), "--out", str(tmp_path / "out"), "--expect", "node/normal-2 node/gpu-b node/gpu-c node/gpu-d")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    data = _merge_json(tmp_path / "out")
    nodes = {n["node"]: n for n in data["nodes"]}
    assert nodes["gpu-b"]["status"] == nodes["normal-2"]["status"] != "UNREADABLE"
    assert nodes["gpu-c"]["status"] == "UNREADABLE" and "cut short" in nodes["gpu-c"]["reason"]
    assert nodes["gpu-d"]["status"] == "MISSING" and data["missing"] == [{"node": "gpu-d", "reason": "no report from this node"}]
    # framed reports got files of their own, so the matrix links to them
    assert (tmp_path / "out" / nodes["gpu-b"]["report"]).is_file()
    assert nodes["gpu-b"]["source"].startswith(f"{log}:")


@pytest.mark.skipif(not HEALTHY, reason="a healthy node needs transformers and huggingface_hub for the tokenizer check")
def test_exit_0_only_when_no_node_blocks_and_none_is_missing(healthy, tmp_path):
    nodes, proc = healthy()
    data = json.loads((nodes / "healthy-1" / "resolution-report.json").read_text(encoding="utf-8"))
    if data["blocking"]:
        pytest.skip(f"this machine blocks even with CLIP cached: {data['blocking']}")
    assert proc.returncode == 0
    ok = fleet("merge", str(nodes), "--out", str(tmp_path / "a"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert _merge_json(tmp_path / "a")["groups"][0]["summary"] == "1 of 1 nodes: nothing blocking"
    short = fleet("merge", str(nodes), "--out", str(tmp_path / "b"), "--expect", "healthy-[1-2]")
    assert short.returncode == 1 and "missing healthy-2" in short.stdout


def test_usage_errors_exit_2(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "other.json").write_text('{"schema": "something-else/1"}', encoding="utf-8")
    (tmp_path / "broken.json").write_text('{"schema": "ldm-diagnostics/1", "findings": [', encoding="utf-8")
    (tmp_path / "notes.txt").write_text("no reports here\n", encoding="utf-8")
    cases = {
        str(tmp_path / "nope.json"): "does not exist",
        str(tmp_path / "empty"): "no node report found",
        str(tmp_path / "other.json"): "not an ldm-diagnostics report",
        str(tmp_path / "broken.json"): "not readable as a report",
        str(tmp_path / "notes.txt"): "holds no node report",
    }
    for path, words in cases.items():
        proc = fleet("merge", path, "--out", str(tmp_path / "out"))
        assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr, (path, proc.stderr)
    assert fleet("merge").returncode == 2  # argparse: REPORT_OR_DIR is required
    assert fleet().returncode == 2 and "run, merge or manifest" in fleet().stderr


def test_hostile_text_is_escaped_and_secrets_redacted(reports, tmp_path):
    base, _ = reports
    data = json.loads((base / "nodes" / "normal-1" / "resolution-report.json").read_text(encoding="utf-8"))
    token = "hf_" + "Q" * 30
    hostile = "<script>alert(1)</script>|x"
    data["node"]["id"] = hostile
    finding = next(f for f in data["findings"] if f["code"] == data["blocking"][0])
    finding["summary"] = f"proxy said Authorization: Bearer {token} <img src=x onerror=alert(2)>"
    (tmp_path / "hostile.json").write_text(json.dumps(data), encoding="utf-8")
    proc = fleet("merge", str(tmp_path / "hostile.json"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 1, proc.stderr
    for name in ("resolution-fleet.md", "resolution-fleet.html", "resolution-fleet.json"):
        assert token not in (tmp_path / "out" / name).read_text(encoding="utf-8"), name
    html = (tmp_path / "out" / "resolution-fleet.html").read_text(encoding="utf-8")
    assert "<script>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    md = (tmp_path / "out" / "resolution-fleet.md").read_text(encoding="utf-8")
    # Markdown text outside code spans has its tags neutralised: `<` is written `\<` (no HTML entities)
    assert re.search(r"(?<!\\)<img src=x", md) is None and "\\<img src=x" in md
    assert "\\|x" in md  # a pipe in a node id does not split the table row
    assert token not in proc.stdout
