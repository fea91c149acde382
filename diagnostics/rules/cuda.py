"""GPU rules: is CUDA usable by this torch, is the driver new enough, does torch have kernels for the GPU.

Without an NVIDIA GPU every rule here is a `skip` that says so: a CPU machine is not a failure,
but the report must not pretend the CUDA path was verified.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

from ..findings import Finding, Status, verdict
from ..probes.environment import TorchBuild
from ..probes.fact_record import UNSET
from ..probes.gpu import DriverFacts, TorchCudaFacts
from ..registry import Check, Precondition
from ..util import parse_version

NO_GPU = "No NVIDIA GPU or driver found on this machine (no nvidia-smi, /dev/nvidia0 or /proc/driver/nvidia); CUDA checks did not run."

# Minimum driver per CUDA major version for minor-version compatibility (NVIDIA CUDA compatibility guide).
MIN_DRIVER = {11: "450.80.02", 12: "525.60.13", 13: "580.65.06"}

# PyTorch wheel indexes, newest first; a driver supporting CUDA X.Y can run any index <= X.Y.
TORCH_INDEXES = ("13.0", "12.9", "12.8", "12.6", "12.4", "12.1", "11.8")


def torch_index_for(driver_cuda: Optional[str]) -> str:
    best = parse_version(driver_cuda) if driver_cuda else None
    for index in TORCH_INDEXES:
        if best is None or parse_version(index).release <= best.release:
            return "cu" + index.replace(".", "")
    return "cu118"


def reinstall_command(torch_version: Optional[str], driver_cuda: Optional[str]) -> str:
    base = (torch_version or "").split("+")[0]
    pin = f"torch=={base}" if base else "torch"
    return f"pip install --force-reinstall {pin} --index-url https://download.pytorch.org/whl/{torch_index_for(driver_cuda)}"


def _devices(torch_cuda: TorchCudaFacts) -> Optional[List[Dict[str, Any]]]:
    """The devices as evidence (None when the child did not list them)."""
    return None if torch_cuda.devices is None else [device.to_dict() for device in torch_cuda.devices]


def _reported(value: Any) -> Any:
    """A value the child may not have reported, as the summary shows it (None when it did not)."""
    return None if value is UNSET else value


def rule_cuda_available(torch_build: TorchBuild, gpu_driver: DriverFacts,
                        torch_cuda: Optional[TorchCudaFacts], environ: Mapping[str, str]) -> Finding:
    torch, driver = torch_build, gpu_driver
    evidence: Dict[str, Any] = {
        "torch": torch.version, "torch_build": torch.kind, "torch_cuda": torch.cuda,
        "driver": driver.driver_version, "driver_cuda": driver.driver_cuda,
        "gpus": [gpu.to_dict() for gpu in driver.gpus], "CUDA_VISIBLE_DEVICES": environ.get("CUDA_VISIBLE_DEVICES"),
    }
    if not driver.present:
        return verdict(Status.SKIP, NO_GPU, evidence=evidence)
    if torch.kind == "cpu":
        cmd = reinstall_command(torch.version, driver.driver_cuda)
        return verdict(Status.FAIL, f"torch {torch.version} is a CPU-only build, but this machine has an NVIDIA driver"
            + (f" ({driver.gpus[0].name})" if driver.gpus else "") + ": the model would run on the CPU "
            "or fail with 'Torch not compiled with CUDA enabled'.",
            evidence=evidence,
            cause="A CPU wheel was installed (e.g. from the default index on a machine without CUDA at build time).",
            fix=f"Install the CUDA build of torch for this driver:\n```bash\n{cmd}\n```",
        )
    if torch_cuda is None or not torch_cuda.imported:
        err = (torch_cuda.probe_error or torch_cuda.import_error if torch_cuda is not None else None) or "unknown error"
        evidence["probe"] = torch_cuda.to_dict() if torch_cuda is not None else None
        return verdict(Status.FAIL, f"`import torch` failed in a child process: {err}",
                       evidence=evidence, cause="torch cannot be imported in this environment.",
                       fix="Run `python -c 'import torch'` to see the error; reinstall torch.")
    evidence["devices"] = _devices(torch_cuda)
    if torch_cuda.available and torch_cuda.devices:
        names = ", ".join(f"{d.name} (sm_{d.capability.replace('.', '')}, "
                          f"{d.total_memory / 2**30:.1f} GiB)" for d in torch_cuda.devices)
        return verdict(Status.OK, f"torch {_reported(torch_cuda.version)} (CUDA {_reported(torch_cuda.cuda_runtime)}) "
                       f"sees {names}.", evidence=evidence)
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return verdict(Status.FAIL, f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU from torch.", evidence=evidence,
                       cause="The environment variable masks all devices.",
                       fix="Unset CUDA_VISIBLE_DEVICES or set it to the GPU index, e.g. `export CUDA_VISIBLE_DEVICES=0`.")
    init_error = torch_cuda.init_error or torch_cuda.stderr_tail or ""
    evidence["init_error"] = init_error[-1000:]
    return verdict(Status.FAIL, "An NVIDIA driver is present but torch.cuda.is_available() is False"
        + (f": {init_error.strip().splitlines()[-1]}" if init_error.strip() else "."),
        evidence=evidence,
        cause="The driver is too old for this torch build, the container lacks the GPU runtime "
              "(--gpus all / nvidia-container-toolkit), or the device nodes are not visible.",
        fix="Compare the driver with torch's CUDA version (cuda.driver), and run the container with GPU access.",
    )


def rule_cuda_driver(torch_build: TorchBuild, gpu_driver: DriverFacts) -> Finding:
    torch, driver = torch_build, gpu_driver
    driver_version, driver_cuda, runtime = driver.driver_version, driver.driver_cuda, torch.cuda
    evidence = {"driver": driver_version, "driver_cuda": driver_cuda, "torch_cuda": runtime}
    if not driver_version:
        return verdict(Status.SKIP, "nvidia-smi did not report a driver version.", evidence=evidence)
    major = parse_version(runtime).release[0]
    minimum = MIN_DRIVER.get(major)
    parsed_driver = parse_version(driver_version)
    if minimum and parsed_driver is not None and parsed_driver.release < parse_version(minimum).release:
        return verdict(Status.FAIL, f"Driver {driver_version} is too old for torch's CUDA {runtime} runtime (needs >= {minimum}).",
            evidence=evidence,
            cause="Each CUDA major version needs a minimum driver; torch then reports "
                  "'The NVIDIA driver on your system is too old'.",
            fix=f"Upgrade the NVIDIA driver to >= {minimum}, or install a torch build for the driver's CUDA: "
                f"`{reinstall_command(torch.version, driver_cuda)}`.",
        )
    if driver_cuda and parse_version(driver_cuda).release < parse_version(runtime).release:
        return verdict(Status.WARN, f"Driver {driver_version} supports CUDA {driver_cuda}, older than torch's CUDA {runtime}: "
            "minor-version compatibility applies (PTX JIT and some features are unavailable).",
            evidence=evidence,
            fix=f"Upgrade the driver, or `{reinstall_command(torch.version, driver_cuda)}`.",
        )
    return verdict(Status.OK, f"Driver {driver_version} (CUDA {driver_cuda or '?'}) runs torch's CUDA {runtime}.",
                   evidence=evidence)


def rule_cuda_arch(torch_cuda: TorchCudaFacts) -> Finding:
    arch_list = list(torch_cuda.arch_list or [])
    sms = {a.split("_", 1)[1] for a in arch_list if a.startswith("sm_")}
    ptx = [a.split("_", 1)[1] for a in arch_list if a.startswith("compute_")]
    missing = []
    for device in torch_cuda.devices:
        capability = device.capability.replace(".", "")
        if capability in sms or any(p.isdigit() and int(p) <= int(capability) for p in ptx):
            continue
        missing.append(f"{device.name} (sm_{capability})")
    evidence = {"arch_list": arch_list, "devices": _devices(torch_cuda), "kernel_ok": torch_cuda.kernel_ok,
                "kernel_error": torch_cuda.kernel_error}
    if missing or torch_cuda.kernel_ok is False:
        return verdict(Status.FAIL, ("torch has no kernels for " + ", ".join(missing) if missing else "A tiny CUDA kernel failed: "
             + str(torch_cuda.kernel_error)) + " ('no kernel image is available for execution on the device').",
            evidence=evidence,
            cause=f"This torch build was compiled for {', '.join(arch_list) or 'no architectures'}.",
            fix="Install a torch build that covers the GPU's compute capability (newer GPUs need newer CUDA builds, "
                "e.g. Blackwell sm_120 needs CUDA 12.8+).",
        )
    return verdict(Status.OK, "torch has kernels for every visible GPU and a test kernel ran.",
                   evidence=evidence)


GPU_PRESENT = Precondition("NVIDIA driver present", ("gpu_driver",),
                           lambda driver: None if driver.present else NO_GPU)
TORCH_INSTALLED = Precondition("torch installed", ("torch_build",),
                               lambda torch: None if torch.installed else
                               "torch is not installed; CUDA checks did not run.")
CUDA_DEVICE_ASKED = Precondition("CUDA not turned off", ("options",),
                                 lambda options: "--device cpu was given; CUDA checks did not run."
                                 if options.device == "cpu" else None)
TORCH_CUDA_BUILD = Precondition("torch is a CUDA build", ("torch_build",),
                                lambda torch: None if torch.installed and torch.kind == "cuda"
                                and torch.cuda else "torch is not a CUDA build; nothing to compare the driver with.")
TORCH_SEES_GPU = Precondition("torch sees a CUDA device", ("torch_cuda",),
                              lambda torch_cuda: None if torch_cuda and torch_cuda.devices else
                              "torch sees no CUDA device (see cuda.available).")

CHECKS: List[Check] = [
    Check("cuda.available", "CUDA availability in torch", rule_cuda_available,
          reads=("torch_build", "gpu_driver", "torch_cuda", "environ"), requires=(TORCH_INSTALLED, CUDA_DEVICE_ASKED)),
    Check("cuda.driver", "NVIDIA driver vs torch CUDA runtime", rule_cuda_driver, reads=("torch_build", "gpu_driver"),
          requires=(GPU_PRESENT, TORCH_CUDA_BUILD)),
    Check("cuda.arch", "torch kernels for this GPU", rule_cuda_arch, reads=("torch_cuda",),
          requires=(GPU_PRESENT, TORCH_SEES_GPU)),
]
