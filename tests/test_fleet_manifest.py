"""`fleet manifest`: the Kubernetes DaemonSet and indexed Job validated offline against the real
Kubernetes schemas (kubernetes-validate bundles them; `--strict` rejects unknown fields), the
container's command run here for real, and the sbatch script checked with `bash -n`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "registry.example.com/sd-serving:2.1"


def manifest(*args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "diagnostics", "fleet", "manifest", *args], capture_output=True,
                          text=True, timeout=60, env=env)


def _documents(text):
    yaml = pytest.importorskip("yaml", reason="PyYAML (a dependency of kubernetes-validate) reads the manifests")
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _validate_cli(path: Path, version: str):
    return subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", "-k", version, str(path)],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def kubernetes_validate():
    return pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed (pip install "
                               "kubernetes-validate; part of the `test` extra)")


@pytest.mark.parametrize("kind", ["daemonset", "job"])
@pytest.mark.parametrize("version", ["1.27", "1.37"])
def test_manifests_pass_the_strict_kubernetes_schemas(kubernetes_validate, tmp_path, kind, version):
    proc = manifest("--engine", "kubernetes", "--image", IMAGE, "--kind", kind, "--nodes", "8", "--namespace", "ml-serving")
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / f"{kind}.yaml"
    path.write_text(proc.stdout, encoding="utf-8")
    check = _validate_cli(path, version)
    assert check.returncode == 0 and "passed" in check.stdout, check.stdout + check.stderr
    (doc,) = _documents(proc.stdout)
    assert kubernetes_validate.validate(doc, version, strict=True)


def test_strict_validation_rejects_what_kubernetes_would(kubernetes_validate, tmp_path):
    """The validator bites: an unknown field and a wrong type in our own manifest both fail."""
    (doc,) = _documents(manifest("--engine", "kubernetes", "--image", IMAGE).stdout)
    doc["spec"]["template"]["spec"]["containers"][0]["gpuCount"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, "1.37", strict=True)
    del doc["spec"]["template"]["spec"]["containers"][0]["gpuCount"]
    doc["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "soon"
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(doc), encoding="utf-8")
    assert _validate_cli(path, "1.37").returncode != 0


def test_daemonset_targets_gpu_nodes_and_prints_the_report(tmp_path):
    # The report's findings are not looked at: a short probe timeout (passed on as a report option)
    # stops its tokenizer child early.
    proc = manifest("--engine", "kubernetes", "--image", IMAGE, "--hf-cache", "/mnt/models/hf", "--namespace", "ml",
                    "--report-arg=--timeout=0.2")
    assert "kubectl logs -n ml -l app.kubernetes.io/name=ldm-diagnostics --prefix --tail=-1" in proc.stdout
    assert "fleet merge fleet.log" in proc.stdout
    (doc,) = _documents(proc.stdout)
    assert doc["kind"] == "DaemonSet" and doc["metadata"]["namespace"] == "ml"
    pod = doc["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    (container,) = pod["containers"]
    assert container["image"] == IMAGE and container["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert env["HF_HOME"]["value"] == "/mnt/models/hf"
    mount = next(m for m in container["volumeMounts"] if m["name"] == "hf-cache")
    assert mount == {"name": "hf-cache", "mountPath": "/mnt/models/hf", "readOnly": True}
    volume = next(v for v in pod["volumes"] if v["name"] == "hf-cache")
    assert volume["hostPath"]["path"] == "/mnt/models/hf"

    # The container's own command, run here: its stdout, as kubectl would prefix it, merges.
    script = container["command"][2].replace("/reports", str(tmp_path / "reports"))
    script = script.replace("while true; do sleep 3600; done", "true")
    assert container["command"][:2] == ["sh", "-c"] and "--stdout-json" in script
    (tmp_path / "reports").mkdir()
    env = dict(os.environ, NODE_NAME="gpu-node-7", PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.pop("SLURMD_NODENAME", None)
    run = subprocess.run(["sh", "-c", script.replace("python -m", f"{sys.executable} -m")], capture_output=True,
                         text=True, timeout=300, env=env)
    assert "ldm-diagnostics report exit" in run.stdout and (tmp_path / "reports" / "done").exists(), run.stderr[-2000:]
    log = tmp_path / "fleet.log"
    log.write_text("".join(f"[pod/ldm-diagnostics-x1/report] {line}\n" for line in run.stdout.splitlines()), encoding="utf-8")
    merged = subprocess.run([sys.executable, "-m", "diagnostics", "fleet", "merge", str(log), "--out", str(tmp_path / "f")],
                            capture_output=True, text=True, timeout=120, env=env)
    assert merged.returncode in (0, 1), merged.stderr
    data = json.loads((tmp_path / "f" / "resolution-fleet.json").read_text(encoding="utf-8"))
    (node,) = data["nodes"]
    assert node["node"] == "gpu-node-7" and node["status"] != "UNREADABLE"
    report = json.loads((tmp_path / "f" / node["report"]).read_text(encoding="utf-8"))
    assert report["node"]["id_source"] == "NODE_NAME"


def test_job_is_indexed_with_one_pod_per_gpu_node():
    (doc,) = _documents(manifest("--engine", "kubernetes", "--image", IMAGE, "--kind", "job", "--nodes", "12").stdout)
    spec = doc["spec"]
    assert doc["kind"] == "Job" and spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == 12
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert anti["topologyKey"] == "kubernetes.io/hostname"
    term = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
    assert term["matchExpressions"] == [{"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]}]


def test_sbatch_script_is_valid_bash_with_the_options(tmp_path):
    proc = manifest("--engine", "slurm", "--nodes", "16", "--partition", "gpu-a100", "--out", "/shared/ldm diag",
                    "--report-arg=--device=cuda")
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / "ldm-diagnostics.sbatch"
    path.write_text(proc.stdout, encoding="utf-8")
    check = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "#!/bin/bash"
    assert {"#SBATCH --nodes=16", "#SBATCH --ntasks-per-node=1", "#SBATCH --partition=gpu-a100"} <= set(lines)
    assert f"exec {sys.executable} -m diagnostics fleet run --engine slurm" in proc.stdout
    assert "'/shared/ldm diag'" in proc.stdout and proc.stdout.rstrip().endswith("--device=cuda")


@pytest.mark.parametrize("args, words", [
    (["--engine", "kubernetes"], "--image is required"),
    (["--engine", "kubernetes", "--image", IMAGE, "--kind", "job"], "--kind job needs --nodes"),
    (["--engine", "slurm", "--partition", "gpu; rm -rf /"], "--partition"),
    (["--engine", "nomad"], "invalid choice"),
])
def test_manifest_usage_errors(args, words):
    proc = manifest(*args)
    assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
