"""Who a node is: the `node` block of every report's JSON.

The node id comes, in order, from `report --node-id`, `$SLURMD_NODENAME` (set by slurmd for every
task: https://slurm.schedmd.com/srun.html#SECTION_OUTPUT-ENVIRONMENT-VARIABLES), `$NODE_NAME`
(the Kubernetes downward API, `spec.nodeName`: https://kubernetes.io/docs/concepts/workloads/pods/downward-api/),
and last the host name. Emulated or containerised nodes can share a host name, so the host name is
recorded but the merge keys on the id. GPU UUIDs and the driver come from `nvidia-smi` when the
driver probe found it working.
"""

from __future__ import annotations

import re
import socket
from typing import Any, Dict, List, Mapping, Optional

NVIDIA_SMI_TIMEOUT = 10.0
PLACEHOLDER = "{node}"

# Engine variables worth keeping: job, step and task ids, and the node set the engine gave the job.
SLURM_VARIABLES = ("SLURM_CLUSTER_NAME", "SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_PROCID", "SLURM_NODEID",
                   "SLURM_LOCALID", "SLURM_JOB_NODELIST", "SLURM_STEP_NODELIST", "SLURM_JOB_PARTITION")
KUBERNETES_VARIABLES = ("NODE_NAME", "POD_NAME", "POD_NAMESPACE", "POD_UID", "JOB_COMPLETION_INDEX")


def choose_node_id(explicit: Optional[str], environ: Mapping[str, str]) -> Dict[str, str]:
    """{"id": ..., "source": ...}: the first of --node-id, SLURMD_NODENAME, NODE_NAME, host name."""
    if explicit and explicit.strip():
        return {"id": explicit.strip(), "source": "--node-id"}
    for name in ("SLURMD_NODENAME", "NODE_NAME"):
        value = (environ.get(name) or "").strip()
        if value:
            return {"id": value, "source": name}
    return {"id": socket.gethostname() or "unknown", "source": "hostname"}


def safe_file_name(node_id: str) -> str:
    """A node id as a single path component (ids come from the environment: no `/` or `..`)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", node_id).strip(".") or "node"
    return cleaned[:200]


def expand_out(out: str, node_id: str) -> str:
    """`--out reports/{node}` -> `reports/n3`: one directory per node on a shared file system."""
    return out.replace(PLACEHOLDER, safe_file_name(node_id))


def _engine(environ: Mapping[str, str]) -> Dict[str, Any]:
    if environ.get("SLURM_JOB_ID"):
        return {"name": "slurm", **{name.lower(): environ[name] for name in SLURM_VARIABLES if environ.get(name)}}
    if environ.get("KUBERNETES_SERVICE_HOST") or environ.get("POD_NAME"):
        return {"name": "kubernetes",
                **{name.lower(): environ[name] for name in KUBERNETES_VARIABLES if environ.get(name)}}
    return {"name": None}


def _gpu_uuids(ctx, driver: Dict[str, Any]) -> List[Dict[str, str]]:
    """name and UUID per GPU; only asked when the driver probe found nvidia-smi working."""
    if driver.get("nvidia_smi") != "ok":
        return []
    result = ctx.runner(["nvidia-smi", "--query-gpu=index,name,uuid", "--format=csv,noheader"],
                        NVIDIA_SMI_TIMEOUT, None)
    gpus = []
    if result.returncode == 0:
        for line in result.stdout.strip().splitlines():
            parts = [part.strip() for part in line.split(",")]
            if len(parts) >= 3:
                gpus.append({"index": parts[0], "name": parts[1], "uuid": parts[2]})
    return gpus


def node_identity(ctx, explicit: Optional[str] = None) -> Dict[str, Any]:
    """The `node` block: id and where it came from, host name, GPUs, driver, engine ids."""
    chosen = choose_node_id(explicit, ctx.environ)
    driver = ctx.facts.get("gpu_driver") or {}
    gpus = _gpu_uuids(ctx, driver)
    if not gpus:
        gpus = [{"index": str(i), "name": gpu.get("name"), "uuid": None} for i, gpu in enumerate(driver.get("gpus") or [])]
    return {
        "id": chosen["id"],
        "id_source": chosen["source"],
        "hostname": socket.gethostname(),
        "gpus": gpus,
        "driver_version": driver.get("driver_version"),
        "nvidia_smi": driver.get("nvidia_smi"),
        "engine": _engine(ctx.environ),
        "fleet_run": ctx.environ.get("LDM_DIAG_FLEET_RUN"),  # set by `fleet run` for the reports of one step
    }
