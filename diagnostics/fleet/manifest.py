"""`fleet manifest`: a ready Kubernetes DaemonSet or indexed Job, or an sbatch script, that runs the
report on every GPU node and leaves each node's JSON where `fleet merge` reads it.

Kubernetes details relied on:
- GPU nodes carry `nvidia.com/gpu.present=true` (GPU feature discovery of the NVIDIA GPU operator,
  https://docs.nvidia.com/datacenter/cloud-native/gpu-operator/latest/gpu-feature-discovery.html)
  and are often tainted `nvidia.com/gpu:NoSchedule`; GPUs are the extended resource `nvidia.com/gpu`.
- `spec.nodeName` reaches the container as `NODE_NAME` through the downward API
  (https://kubernetes.io/docs/concepts/workloads/pods/downward-api/).
- An indexed Job with a required pod anti-affinity on `kubernetes.io/hostname` puts one pod per node
  (https://kubernetes.io/docs/concepts/workloads/controllers/job/#completion-mode).
- `kubectl logs -l SELECTOR` shows only 10 lines per pod unless `--tail=-1`; `--prefix` names the
  pod on every line (https://kubernetes.io/docs/reference/kubectl/generated/kubectl_logs/).
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from typing import Any, Dict, List

from ..cli import EXIT_OK, UsageError

NAME = "ldm-diagnostics"
LABELS = {"app.kubernetes.io/name": NAME}
GPU_LABEL = "nvidia.com/gpu.present"
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")
_SAFE_WORD = re.compile(r"^[A-Za-z0-9_.,\[\]-]+$")


def to_yaml(value: Any, indent: int = 0) -> str:
    """Block YAML for manifests: mappings and lists as blocks, every string double-quoted (JSON
    string syntax is valid YAML), so no value can change type or break the document."""
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            return pad + "{}\n"
        lines = []
        for key, item in value.items():
            name = key if _PLAIN_KEY.match(key) else json.dumps(key)
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{name}:\n{to_yaml(item, indent + 1)}")
            else:
                lines.append(f"{pad}{name}: {_scalar(item)}\n")
        return "".join(lines)
    if isinstance(value, list):
        lines = []
        for item in value:
            if isinstance(item, (dict, list)) and item:
                body = to_yaml(item, indent + 1)
                lines.append(f"{pad}- {body[len(pad) + 2:]}")
            else:
                lines.append(f"{pad}- {_scalar(item)}\n")
        return "".join(lines)
    return pad + _scalar(value) + "\n"


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return json.dumps(str(value), ensure_ascii=False)


def _report_shell(extra: List[str], then: str) -> str:
    report = ["python", "-m", "diagnostics", "report", "--out", "/reports", "--format", "json", "--stdout-json", *extra]
    return f"{shlex.join(report)}; echo \"ldm-diagnostics report exit $?\"; touch /reports/done; {then}"


def _pod_spec(args, then: str, restart: str) -> Dict[str, Any]:
    env = [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
           {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
           {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
           {"name": "HF_HOME", "value": args.hf_cache}]
    container: Dict[str, Any] = {
        "name": "report", "image": args.image, "command": ["sh", "-c", _report_shell(args.report_arg, then)],
        "env": env,
        "volumeMounts": [{"name": "hf-cache", "mountPath": args.hf_cache, "readOnly": True},
                         {"name": "reports", "mountPath": "/reports"}],
        "securityContext": {"allowPrivilegeEscalation": False},
    }
    if args.gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": args.gpus}}
    if restart == "Always":  # ready once the report is written: `kubectl rollout status` waits for it
        container["readinessProbe"] = {"exec": {"command": ["test", "-f", "/reports/done"]}, "periodSeconds": 5}
    return {
        "restartPolicy": restart,
        "terminationGracePeriodSeconds": 5,
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "containers": [container],
        "volumes": [{"name": "hf-cache", "hostPath": {"path": args.hf_cache, "type": "Directory"}},
                    {"name": "reports", "emptyDir": {}}],
    }


def daemonset(args) -> Dict[str, Any]:
    spec = _pod_spec(args, "while true; do sleep 3600; done", "Always")
    spec["nodeSelector"] = {GPU_LABEL: "true"}
    return {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": NAME, "namespace": args.namespace, "labels": dict(LABELS)},
            "spec": {"selector": {"matchLabels": dict(LABELS)},
                     "template": {"metadata": {"labels": dict(LABELS)}, "spec": spec}}}


def indexed_job(args) -> Dict[str, Any]:
    spec = _pod_spec(args, "exit 0", "Never")
    spec["affinity"] = {
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": GPU_LABEL, "operator": "In", "values": ["true"]}]}]}},
        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": dict(LABELS)}, "topologyKey": "kubernetes.io/hostname"}]},
    }
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": NAME, "namespace": args.namespace, "labels": dict(LABELS)},
            "spec": {"completions": args.nodes, "parallelism": args.nodes, "completionMode": "Indexed",
                     "backoffLimit": args.nodes, "ttlSecondsAfterFinished": 86400,
                     "template": {"metadata": {"labels": dict(LABELS)}, "spec": spec}}}


def kubernetes_manifest(args) -> str:
    if not args.image:
        raise UsageError("--image is required for --engine kubernetes: the serving image with ldm-diagnostics installed")
    if args.kind == "job" and not (args.nodes and args.nodes > 0):
        raise UsageError("--kind job needs --nodes N (one pod per GPU node, N completions)")
    ns, selector = args.namespace, "app.kubernetes.io/name=" + NAME
    if args.kind == "daemonset":
        body, wait = daemonset(args), f"kubectl rollout status -n {ns} daemonset/{NAME} --timeout=30m"
        what = "A DaemonSet: one pod on every node labelled nvidia.com/gpu.present=true."
    else:
        body, wait = indexed_job(args), f"kubectl wait -n {ns} --for=condition=complete job/{NAME} --timeout=30m"
        what = f"An indexed Job: {args.nodes} pods, at most one per GPU node (pod anti-affinity)."
    header = [
        f"# ldm-diagnostics report on every GPU node. {what}",
        "# Each pod prints its JSON report on stdout as one line (report --stdout-json). Collect and merge:",
        f"#   kubectl apply -f {NAME}.yaml",
        f"#   {wait}",
        f"#   kubectl logs -n {ns} -l {selector} --prefix --tail=-1 > fleet.log",
        "#   python -m diagnostics fleet merge fleet.log --out reports/fleet \\",
        f"#       --expect \"$(kubectl get nodes -l {GPU_LABEL}=true -o name)\"",
        f"#   kubectl delete -f {NAME}.yaml",
        f"# The Hugging Face cache is the host path {args.hf_cache}, mounted read-only where the serving pods see it.",
    ]
    if args.gpus:
        header.append(f"# Each pod asks for {args.gpus} nvidia.com/gpu: on a node whose GPUs are all busy it waits "
                      "(--gpus 0 checks without one).")
    return "\n".join(header) + "\n---\n" + to_yaml(body)


def sbatch_script(args) -> str:
    if args.partition and not _SAFE_WORD.match(args.partition):
        raise UsageError(f"--partition {args.partition!r}: letters, digits, '_', '-', '.' and ',' only")
    nodes = args.nodes or 1
    run = [sys.executable, "-m", "diagnostics", "fleet", "run", "--engine", "slurm"]
    lines = [
        "#!/bin/bash",
        f"# ldm-diagnostics report on {nodes} Slurm node(s), merged: `sbatch {NAME}.sbatch` from a directory on",
        "# the shared file system. The fleet report lands in the --out directory (resolution-fleet.{md,html,json});",
        "# the job fails when a node is blocking or did not report.",
        f"#SBATCH --job-name={NAME}",
        f"#SBATCH --nodes={nodes}",
        "#SBATCH --ntasks-per-node=1",
        f"#SBATCH --output={NAME}-%j.out",
    ]
    if args.partition:
        lines.append(f"#SBATCH --partition={args.partition}")
    lines += [
        "set -u",
        f"out={shlex.quote(args.out)}/\"$SLURM_JOB_ID\"",
        f"exec {shlex.join(run)} --nodes \"$SLURM_JOB_NUM_NODES\" --out \"$out\""
        + (" " + shlex.join(args.report_arg) if args.report_arg else ""),
    ]
    return "\n".join(lines) + "\n"


def print_manifest(args) -> int:
    if args.engine == "kubernetes":
        text = kubernetes_manifest(args)
    else:
        text = sbatch_script(args)
    sys.stdout.write(text)
    return EXIT_OK
