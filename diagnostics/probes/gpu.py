"""GPU facts: the NVIDIA driver (nvidia-smi, /proc) and what torch sees, each in a subprocess.

CUDA initialisation can hang on a broken driver, so torch is asked in a child process with a
timeout, and only when torch is installed. The command runner comes from the context so tests can
fake `nvidia-smi` and the torch child.

Both probes return typed facts (`DriverFacts`, `TorchCudaFacts`); each `to_dict()` gives the JSON the
report writes.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, fields
from typing import Any, Dict, Mapping, Optional, Tuple

from .fact_record import UNSET

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


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as `nvidia-smi --query-gpu` lists it (the values as nvidia-smi prints them)."""

    name: str
    driver_version: str
    memory_mib: str
    compute_cap: Optional[str] = None  # absent from older nvidia-smi

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "driver_version": self.driver_version, "memory_mib": self.memory_mib,
                "compute_cap": self.compute_cap}


@dataclass(frozen=True)
class DriverFacts:
    """The NVIDIA driver as nvidia-smi, /proc/driver/nvidia and /dev/nvidia0 show it."""

    nvidia_smi: Optional[str]  # ok | not found | timed out | failed
    driver_version: Optional[str] = None
    driver_cuda: Optional[str] = None  # the highest CUDA version the driver supports ("CUDA Version:")
    gpus: Tuple[GpuInfo, ...] = ()
    proc_driver: Optional[str] = None  # the first line of /proc/driver/nvidia/version
    device_nodes: bool = False  # /dev/nvidia0 exists
    nvidia_smi_error: Optional[str] = None  # why nvidia-smi gave nothing; None when it worked

    @property
    def present(self) -> bool:
        """Any sign of an NVIDIA driver on this machine."""
        return bool(self.gpus or self.proc_driver or self.device_nodes)

    def to_dict(self) -> Dict[str, Any]:
        facts: Dict[str, Any] = {"nvidia_smi": self.nvidia_smi, "driver_version": self.driver_version,
                                 "driver_cuda": self.driver_cuda, "gpus": [gpu.to_dict() for gpu in self.gpus],
                                 "proc_driver": self.proc_driver, "device_nodes": self.device_nodes}
        if self.nvidia_smi_error is not None:
            facts["nvidia_smi_error"] = self.nvidia_smi_error
        facts["present"] = self.present
        return facts


@dataclass(frozen=True)
class CudaDevice:
    """One device as `torch.cuda.get_device_properties` describes it."""

    index: int
    name: str
    capability: str  # "8.6"
    total_memory: int  # bytes

    def to_dict(self) -> Dict[str, Any]:
        return {"index": self.index, "name": self.name, "capability": self.capability,
                "total_memory": self.total_memory}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CudaDevice":
        return cls(data["index"], data["name"], data["capability"], data["total_memory"])


@dataclass(frozen=True)
class TorchCudaFacts:
    """What torch in a child interpreter says about CUDA (`TORCH_CUDA_SCRIPT`), or why it could not say.

    A field the child did not report is None and stays out of the JSON form, except `version`,
    `cuda_runtime` and `compiled_with_cuda`, which can be a reported None (a CPU build): those are
    `UNSET` when not reported."""

    imported: bool
    version: Any = UNSET  # torch.__version__
    cuda_runtime: Any = UNSET  # torch.version.cuda: None for a CPU build
    compiled_with_cuda: Any = UNSET  # torch.backends.cuda.is_built(); None where torch lacks it
    arch_list: Optional[Tuple[str, ...]] = None  # torch.cuda.get_arch_list(): "sm_86", "compute_90"
    available: Optional[bool] = None  # torch.cuda.is_available()
    init_error: Optional[str] = None  # what is_available() raised
    kernel_ok: Optional[bool] = None  # a tiny kernel ran and gave the right answer (asked when available)
    kernel_error: Optional[str] = None
    devices: Optional[Tuple[CudaDevice, ...]] = None
    import_error: Optional[str] = None  # what `import torch` (or a later step) raised
    probe_error: Optional[str] = None  # why the child gave no answer
    timed_out: Optional[bool] = None  # set when the child could not run to its end
    stderr_tail: Optional[str] = None  # the child's last stderr

    def to_dict(self) -> Dict[str, Any]:
        facts: Dict[str, Any] = {}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if value is UNSET or value is None and spec.name not in _MAY_BE_NONE:
                continue
            if spec.name == "devices":
                value = [device.to_dict() for device in value]
            elif spec.name == "arch_list":
                value = list(value)
            facts[spec.name] = value
        return facts

    @classmethod
    def from_child(cls, data: Mapping[str, Any], stderr_tail: Optional[str] = None) -> "TorchCudaFacts":
        """The facts from the child's JSON line (keys as `TORCH_CUDA_SCRIPT` writes them)."""
        values: Dict[str, Any] = {spec.name: data[spec.name] for spec in fields(cls) if spec.name in data}
        values["imported"] = bool(data.get("imported"))
        if values.get("devices") is not None:
            values["devices"] = tuple(CudaDevice.from_dict(device) for device in values["devices"])
        if values.get("arch_list") is not None:
            values["arch_list"] = tuple(values["arch_list"])
        if stderr_tail is not None:
            values["stderr_tail"] = stderr_tail
        return cls(**values)


# Reported values that can be None (UNSET, not None, marks them as not reported).
_MAY_BE_NONE = ("version", "cuda_runtime", "compiled_with_cuda")


def probe_driver(ctx) -> DriverFacts:
    """NVIDIA driver facts from nvidia-smi, falling back to /proc/driver/nvidia/version."""
    proc_driver = None
    try:
        with open("/proc/driver/nvidia/version", encoding="utf-8", errors="replace") as fh:
            proc_driver = fh.readline().strip()
    except OSError:
        pass
    found = {"proc_driver": proc_driver, "device_nodes": os.path.exists("/dev/nvidia0")}
    query = ctx.runner(
        ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap", "--format=csv,noheader,nounits"],
        NVIDIA_SMI_TIMEOUT, None,
    )
    if query.returncode is None:
        return DriverFacts("timed out" if query.timed_out else "not found", nvidia_smi_error=query.error, **found)
    if query.returncode != 0:
        return DriverFacts("failed", nvidia_smi_error=(query.stdout + query.stderr).strip()[:500], **found)
    gpus = []
    for line in query.stdout.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3:
            gpus.append(GpuInfo(parts[0], parts[1], parts[2], parts[3] if len(parts) > 3 else None))
    header = ctx.runner(["nvidia-smi"], NVIDIA_SMI_TIMEOUT, None)
    match = _CUDA_VERSION.search(header.stdout or "")
    return DriverFacts("ok", driver_version=gpus[-1].driver_version if gpus else None,
                       driver_cuda=match.group(1) if match else None, gpus=tuple(gpus), **found)


def probe_torch_cuda(ctx, torch_installed: bool) -> Optional[TorchCudaFacts]:
    """What `torch.cuda` reports, from a child interpreter; None when torch is not installed."""
    if not torch_installed:
        return None
    from .. import progress

    with progress.step("cuda: asking torch in a child process", timeout=ctx.options.timeout):
        result = ctx.runner([ctx.python, "-c", TORCH_CUDA_SCRIPT], ctx.options.timeout, ctx.environ)
    if result.returncode is None:
        return TorchCudaFacts(imported=False, probe_error=result.error or "could not run", timed_out=result.timed_out)
    for line in reversed(result.stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                return TorchCudaFacts.from_child(json.loads(line), stderr_tail=result.stderr.strip()[-2000:])
            except (ValueError, TypeError, KeyError, AttributeError):  # not the child's line: no answer
                break
    return TorchCudaFacts(imported=False, probe_error=f"torch probe exited {result.returncode}",
                          stderr_tail=(result.stderr or result.stdout).strip()[-2000:])
