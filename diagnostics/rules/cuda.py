"""GPU rules: is CUDA usable by this torch, is the driver new enough, does torch have kernels for the GPU.

Without an NVIDIA GPU every rule here is a `skip` that says so: a CPU machine is not a failure,
but the report must not pretend the CUDA path was verified.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

from ..findings import Finding, Status, verdict
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


def rule_cuda_available(torch_build: Dict[str, Any], gpu_driver: Dict[str, Any],
                        torch_cuda: Optional[Dict[str, Any]], environ: Mapping[str, str]) -> Finding:
    torch, driver = torch_build, gpu_driver
    evidence: Dict[str, Any] = {
        "torch": torch.get("version"), "torch_build": torch.get("kind"), "torch_cuda": torch.get("cuda"),
        "driver": driver.get("driver_version"), "driver_cuda": driver.get("driver_cuda"),
        "gpus": driver.get("gpus"), "CUDA_VISIBLE_DEVICES": environ.get("CUDA_VISIBLE_DEVICES"),
    }
    if not driver.get("present"):
        return verdict(Status.SKIP, NO_GPU, evidence=evidence)
    if torch.get("kind") == "cpu":
        cmd = reinstall_command(torch.get("version"), driver.get("driver_cuda"))
        return verdict(Status.FAIL, f"torch {torch.get('version')} is a CPU-only build, but this machine has an NVIDIA driver"
            + (f" ({driver['gpus'][0]['name']})" if driver.get("gpus") else "") + ": the model would run on the CPU "
            "or fail with 'Torch not compiled with CUDA enabled'.",
            evidence=evidence,
            cause="A CPU wheel was installed (e.g. from the default index on a machine without CUDA at build time).",
            fix=f"Install the CUDA build of torch for this driver:\n```bash\n{cmd}\n```",
        )
    if torch_cuda is None or not torch_cuda.get("imported"):
        err = (torch_cuda or {}).get("probe_error") or (torch_cuda or {}).get("import_error") or "unknown error"
        evidence["probe"] = torch_cuda
        return verdict(Status.FAIL, f"`import torch` failed in a child process: {err}",
                       evidence=evidence, cause="torch cannot be imported in this environment.",
                       fix="Run `python -c 'import torch'` to see the error; reinstall torch.")
    evidence["devices"] = torch_cuda.get("devices")
    if torch_cuda.get("available") and torch_cuda.get("devices"):
        names = ", ".join(f"{d['name']} (sm_{d['capability'].replace('.', '')}, "
                          f"{d['total_memory'] / 2**30:.1f} GiB)" for d in torch_cuda["devices"])
        return verdict(Status.OK, f"torch {torch_cuda.get('version')} (CUDA {torch_cuda.get('cuda_runtime')}) sees {names}.",
                       evidence=evidence)
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return verdict(Status.FAIL, f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU from torch.", evidence=evidence,
                       cause="The environment variable masks all devices.",
                       fix="Unset CUDA_VISIBLE_DEVICES or set it to the GPU index, e.g. `export CUDA_VISIBLE_DEVICES=0`.")
    init_error = torch_cuda.get("init_error") or torch_cuda.get("stderr_tail") or ""
    evidence["init_error"] = init_error[-1000:]
    return verdict(Status.FAIL, "An NVIDIA driver is present but torch.cuda.is_available() is False"
        + (f": {init_error.strip().splitlines()[-1]}" if init_error.strip() else "."),
        evidence=evidence,
        cause="The driver is too old for this torch build, the container lacks the GPU runtime "
              "(--gpus all / nvidia-container-toolkit), or the device nodes are not visible.",
        fix="Compare the driver with torch's CUDA version (cuda.driver), and run the container with GPU access.",
    )


def rule_cuda_driver(torch_build: Dict[str, Any], gpu_driver: Dict[str, Any]) -> Finding:
    torch, driver = torch_build, gpu_driver
    driver_version, driver_cuda, runtime = driver.get("driver_version"), driver.get("driver_cuda"), torch["cuda"]
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
                f"`{reinstall_command(torch.get('version'), driver_cuda)}`.",
        )
    if driver_cuda and parse_version(driver_cuda).release < parse_version(runtime).release:
        return verdict(Status.WARN, f"Driver {driver_version} supports CUDA {driver_cuda}, older than torch's CUDA {runtime}: "
            "minor-version compatibility applies (PTX JIT and some features are unavailable).",
            evidence=evidence,
            fix=f"Upgrade the driver, or `{reinstall_command(torch.get('version'), driver_cuda)}`.",
        )
    return verdict(Status.OK, f"Driver {driver_version} (CUDA {driver_cuda or '?'}) runs torch's CUDA {runtime}.",
                   evidence=evidence)


def rule_cuda_arch(torch_cuda: Dict[str, Any]) -> Finding:
    arch_list = torch_cuda.get("arch_list") or []
    sms = {a.split("_", 1)[1] for a in arch_list if a.startswith("sm_")}
    ptx = [a.split("_", 1)[1] for a in arch_list if a.startswith("compute_")]
    missing = []
    for device in torch_cuda["devices"]:
        capability = device["capability"].replace(".", "")
        if capability in sms or any(p.isdigit() and int(p) <= int(capability) for p in ptx):
            continue
        missing.append(f"{device['name']} (sm_{capability})")
    evidence = {"arch_list": arch_list, "devices": torch_cuda["devices"], "kernel_ok": torch_cuda.get("kernel_ok"),
                "kernel_error": torch_cuda.get("kernel_error")}
    if missing or torch_cuda.get("kernel_ok") is False:
        return verdict(Status.FAIL, ("torch has no kernels for " + ", ".join(missing) if missing else "A tiny CUDA kernel failed: "
             + str(torch_cuda.get("kernel_error"))) + " ('no kernel image is available for execution on the device').",
            evidence=evidence,
            cause=f"This torch build was compiled for {', '.join(arch_list) or 'no architectures'}.",
            fix="Install a torch build that covers the GPU's compute capability (newer GPUs need newer CUDA builds, "
                "e.g. Blackwell sm_120 needs CUDA 12.8+).",
        )
    return verdict(Status.OK, "torch has kernels for every visible GPU and a test kernel ran.",
                   evidence=evidence)


GPU_PRESENT = Precondition("NVIDIA driver present", ("gpu_driver",),
                           lambda driver: None if driver.get("present") else NO_GPU)
TORCH_INSTALLED = Precondition("torch installed", ("torch_build",),
                               lambda torch: None if torch.get("installed") else
                               "torch is not installed; CUDA checks did not run.")
CUDA_DEVICE_ASKED = Precondition("CUDA not turned off", ("options",),
                                 lambda options: "--device cpu was given; CUDA checks did not run."
                                 if options.device == "cpu" else None)
TORCH_CUDA_BUILD = Precondition("torch is a CUDA build", ("torch_build",),
                                lambda torch: None if torch.get("installed") and torch.get("kind") == "cuda"
                                and torch.get("cuda") else "torch is not a CUDA build; nothing to compare the driver with.")
TORCH_SEES_GPU = Precondition("torch sees a CUDA device", ("torch_cuda",),
                              lambda torch_cuda: None if torch_cuda and torch_cuda.get("devices") else
                              "torch sees no CUDA device (see cuda.available).")

CHECKS: List[Check] = [
    Check("cuda.available", "CUDA availability in torch", rule_cuda_available,
          reads=("torch_build", "gpu_driver", "torch_cuda", "environ"), requires=(TORCH_INSTALLED, CUDA_DEVICE_ASKED)),
    Check("cuda.driver", "NVIDIA driver vs torch CUDA runtime", rule_cuda_driver, reads=("torch_build", "gpu_driver"),
          requires=(GPU_PRESENT, TORCH_CUDA_BUILD)),
    Check("cuda.arch", "torch kernels for this GPU", rule_cuda_arch, reads=("torch_cuda",),
          requires=(GPU_PRESENT, TORCH_SEES_GPU)),
]
