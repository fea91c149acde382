"""GPU facts: the NVIDIA driver (nvidia-smi, /proc) and what torch sees, each in a subprocess.

CUDA initialisation can hang on a broken driver, so torch is asked in a child process with a
timeout, and only when torch is installed. The command runner comes from the context so tests can
fake `nvidia-smi` and the torch child.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Dict, Optional

NVIDIA_SMI_TIMEOUT = 10.0

# Runs in a child interpreter; prints one JSON line. Keep it Python 3.8-compatible.
TORCH_CUDA_SCRIPT = r"""
import json, sys
out = {"imported": False}
try:
    import torch
    out["imported"] = True
    out["version"] = torch.__version__
    out["cuda_runtime"] = torch.version.cuda
    out["compiled_with_cuda"] = torch.backends.cuda.is_built() if hasattr(torch.backends, "cuda") else None
    try:
        out["arch_list"] = torch.cuda.get_arch_list()
    except Exception as exc:
        out["arch_list"] = []
    try:
        out["available"] = bool(torch.cuda.is_available())
    except Exception as exc:
        out["available"] = False
        out["init_error"] = "%s: %s" % (type(exc).__name__, exc)
    devices = []
    if out["available"]:
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            devices.append({"index": i, "name": p.name, "capability": "%d.%d" % (p.major, p.minor),
                            "total_memory": int(p.total_memory)})
        try:
            x = (torch.ones(1, device="cuda") + 1).item()
            out["kernel_ok"] = x == 2.0
        except Exception as exc:
            out["kernel_ok"] = False
            out["kernel_error"] = "%s: %s" % (type(exc).__name__, exc)
    out["devices"] = devices
except Exception as exc:
    out["import_error"] = "%s: %s" % (type(exc).__name__, exc)
sys.stdout.write("\n" + json.dumps(out) + "\n")
"""

_CUDA_VERSION = re.compile(r"CUDA Version:\s*([\d.]+)")


def probe_driver(ctx) -> Dict[str, Any]:
    """NVIDIA driver facts from nvidia-smi, falling back to /proc/driver/nvidia/version."""
    facts: Dict[str, Any] = {"nvidia_smi": None, "driver_version": None, "driver_cuda": None, "gpus": [],
                             "proc_driver": None, "device_nodes": os.path.exists("/dev/nvidia0")}
    try:
        with open("/proc/driver/nvidia/version", encoding="utf-8", errors="replace") as fh:
            facts["proc_driver"] = fh.readline().strip()
    except OSError:
        pass
    query = ctx.runner(
        ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap", "--format=csv,noheader,nounits"],
        NVIDIA_SMI_TIMEOUT, None,
    )
    if query.returncode is None:
        facts["nvidia_smi"] = "timed out" if query.timed_out else "not found"
        facts["nvidia_smi_error"] = query.error
    elif query.returncode != 0:
        facts["nvidia_smi"] = "failed"
        facts["nvidia_smi_error"] = (query.stdout + query.stderr).strip()[:500]
    else:
        facts["nvidia_smi"] = "ok"
        for line in query.stdout.strip().splitlines():
            parts = [p.strip() for p in line.split(",")]
            if len(parts) >= 3:
                gpu = {"name": parts[0], "driver_version": parts[1], "memory_mib": parts[2],
                       "compute_cap": parts[3] if len(parts) > 3 else None}
                facts["gpus"].append(gpu)
                facts["driver_version"] = parts[1]
        header = ctx.runner(["nvidia-smi"], NVIDIA_SMI_TIMEOUT, None)
        match = _CUDA_VERSION.search(header.stdout or "")
        if match:
            facts["driver_cuda"] = match.group(1)
    facts["present"] = bool(facts["gpus"] or facts["proc_driver"] or facts["device_nodes"])
    return facts


def probe_torch_cuda(ctx, torch_installed: bool) -> Optional[Dict[str, Any]]:
    """What `torch.cuda` reports, from a child interpreter; None when torch is not installed."""
    if not torch_installed:
        return None
    from .. import progress

    with progress.step("cuda: asking torch in a child process", timeout=ctx.options.timeout):
        result = ctx.runner([ctx.python, "-c", TORCH_CUDA_SCRIPT], ctx.options.timeout, ctx.environ)
    if result.returncode is None:
        return {"imported": False, "probe_error": result.error or "could not run", "timed_out": result.timed_out}
    for line in reversed(result.stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except ValueError:
                break
            data["stderr_tail"] = result.stderr.strip()[-2000:]
            return data
    return {"imported": False, "probe_error": f"torch probe exited {result.returncode}",
            "stderr_tail": (result.stderr or result.stdout).strip()[-2000:]}
