"""The fleet's pure parts: host lists, node identity, framing, srun's lines, grouping, YAML."""

from __future__ import annotations

import json

import pytest

from diagnostics.context import CommandResult, Context
from diagnostics.fleet.hostlist import compress, expand
from diagnostics.fleet.identity import choose_node_id, expand_out, node_identity, safe_file_name
from diagnostics.fleet.load import NodeInput, frame_report, framed_reports
from diagnostics.fleet.manifest import to_yaml
from diagnostics.fleet.merge import build_fleet
from diagnostics.fleet.render import node_names, render_html
from diagnostics.fleet.slurm import StepResult, parse_srun


def test_host_lists_expand_and_compress_back():
    assert expand("n[1-3,7]") == ["n1", "n2", "n3", "n7"]
    assert expand("gpu[08-10]-ib,login") == ["gpu08-ib", "gpu09-ib", "gpu10-ib", "login"]
    assert expand("a,b[2-1]") == ["a", "b[2-1]"]  # not a range Slurm writes: kept as text
    names = [f"node{i:03d}" for i in range(1, 1001) if i != 500] + ["login"]
    assert compress(names) == "node[001-499,501-1000],login"
    assert expand(compress(names)) == names
    assert compress(["ip-10-0-1-5", "ip-10-0-1-6"]) == "ip-10-0-1-[5-6]"


def test_long_node_lists_are_cut_at_a_whole_piece():
    names = [f"pod-{i}x" for i in range(0, 2000, 2)]
    text = node_names(names, limit=60)
    assert text.endswith("… (1000 nodes in all)") and len(text) < 100
    assert text.count("[") == text.count("]")


def test_node_id_order_and_file_names():
    assert choose_node_id("given", {"SLURMD_NODENAME": "n1", "NODE_NAME": "k"}) == {"id": "given", "source": "--node-id"}
    assert choose_node_id(None, {"SLURMD_NODENAME": "n1", "NODE_NAME": "k"}) == {"id": "n1", "source": "SLURMD_NODENAME"}
    assert choose_node_id("", {"NODE_NAME": "gke-gpu-1"}) == {"id": "gke-gpu-1", "source": "NODE_NAME"}
    assert choose_node_id(None, {})["source"] == "hostname"
    assert safe_file_name("../../etc") == "_.._etc" and safe_file_name("..") == "node"
    assert safe_file_name("a b/c") == "a_b_c"
    assert expand_out("reports/{node}", "../x") == "reports/_x"


def test_identity_reads_gpu_uuids_only_when_nvidia_smi_works():
    calls = []

    def runner(argv, timeout, env):
        calls.append(argv)
        return CommandResult(0, "0, NVIDIA H100 80GB HBM3, GPU-5f1c\n1, NVIDIA H100 80GB HBM3, GPU-77aa\n")

    ctx = Context(environ={"SLURM_JOB_ID": "12", "SLURM_PROCID": "3", "SLURMD_NODENAME": "gpu7"}, runner=runner)
    ctx.set_fact("gpu_driver", {"nvidia_smi": "ok", "driver_version": "550.54", "gpus": [{"name": "x"}, {"name": "y"}]})
    node = node_identity(ctx)
    assert node["id"] == "gpu7" and node["driver_version"] == "550.54"
    assert [g["uuid"] for g in node["gpus"]] == ["GPU-5f1c", "GPU-77aa"]
    assert node["engine"] == {"name": "slurm", "slurm_job_id": "12", "slurm_procid": "3"}
    ctx = Context(environ={"NODE_NAME": "k1", "POD_NAME": "p"}, runner=runner)
    ctx.set_fact("gpu_driver", {"nvidia_smi": "not found", "gpus": []})
    calls.clear()
    assert node_identity(ctx)["engine"]["name"] == "kubernetes" and calls == []


def test_frames_survive_prefixes_and_name_a_cut_node():
    report = {"schema": "ldm-diagnostics/1", "node": {"id": "g1"}, "status": "RESOLVED", "blocking": []}
    line = frame_report("g1", json.dumps(report))
    text = f"starting\n[pod/a/report] {line}\ng2: {line[:40]}\n"
    first, second = framed_reports(text, "log")
    assert first.node == "g1" and first.data == report and first.origin == "[pod/a/report]"
    assert second.node == "g1" and second.data is None and "cut short" in second.error


def _input(node, status="UNRESOLVED", blocking=(), torch="2.4.0"):
    data = {"schema": "ldm-diagnostics/1", "status": status, "blocking": list(blocking), "node": {"id": node},
            "findings": [{"code": code, "status": "fail", "summary": f"{code} broke", "fix": f"fix {code}"}
                         for code in blocking],
            "facts": {"environment": {"packages": {"torch": torch}}}}
    return NodeInput(node, f"{node}.json", data=data)


def test_groups_largest_first_with_one_fix_each_and_drift_only_where_nodes_differ(tmp_path):
    inputs = [_input(f"n{i}", blocking=["cuda.driver"]) for i in range(1, 4)]
    inputs.append(_input("n4", status="RESOLVED", torch="2.5.1"))
    report = build_fleet(inputs, str(tmp_path), expected=["n1", "n2", "n3", "n4", "n5"],
                         failures={"n5": "srun: error: n5: task 4: Exited with exit code 42"})
    summaries = [g["summary"] for g in report.groups]
    # largest first; at equal size a group with blocking causes comes before the healthy one
    assert summaries == ["3 of 5 nodes: cuda.driver fail", "1 of 5 nodes: fleet.node-missing fail",
                         "1 of 5 nodes: nothing blocking"]
    assert report.groups[0]["causes"] == [{"code": "cuda.driver", "status": "fail", "title": "",
                                           "summary": "cuda.driver broke", "fix": "fix cuda.driver"}]
    torch = next(item for item in report.drift if item["key"] == "package: torch")
    assert [(v["value"], v["nodes"]) for v in torch["values"]] == [("2.4.0", ["n1", "n2", "n3"]), ("2.5.1", ["n4"])]
    assert all(item["key"] != "driver" for item in report.drift)  # the same on every node: no drift row
    assert report.missing == [{"node": "n5", "reason": "srun: error: n5: task 4: Exited with exit code 42"}]


def test_a_thousand_identical_nodes_are_one_matrix_row(tmp_path):
    inputs = [_input(f"n{i}", blocking=["hub.dns"]) for i in range(1, 1001)]
    report = build_fleet(inputs, str(tmp_path))
    assert len(report.matrix) == 1 and len(report.matrix[0]["nodes"]) == 1000
    html = render_html(report, environ={})
    assert "1000 of 1000 nodes: hub.dns fail" in html and "n[1-1000]" in html
    assert html.count("<tr>") < 20


def test_parse_srun_lines():
    lines = ["srun: jobid 41: nodes(3):`gpu[1-3]', cpu counts: 1(x3)",
             "srun: launching StepId=41.0 on host gpu2, 1 tasks: 1",
             "srun: error: gpu2: task 1: Exited with exit code 42"]
    result = parse_srun(StepResult(["srun"], 1, lines))
    assert (result.job_id, result.step_id, result.nodes) == ("41", "0", ["gpu1", "gpu2", "gpu3"])
    assert result.task_nodes == {"1": "gpu2"} and result.node_errors == {"gpu2": [lines[2]]}
    assert result.general_errors() == []


def test_yaml_strings_keep_their_type():
    yaml = pytest.importorskip("yaml", reason="PyYAML reads the YAML back")
    value = {"a": ["yes", "0123", "x: y", "multi\nline", 'q"uote', True, 3, {}], "nvidia.com/gpu": 1,
             "list": [{"name": "n", "items": [1]}], "empty": []}
    assert yaml.safe_load(to_yaml(value)) == value
