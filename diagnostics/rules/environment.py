"""Rules about the Python environment itself: interpreter, packages, torch/transformers, RAM, disk."""

from __future__ import annotations

from typing import List, Mapping, Optional

from ..findings import Finding, Status, verdict
from ..probes.environment import DiskFacts, MemoryFacts, PythonFacts, TorchBuild
from ..registry import Check
from ..util import fmt_bytes

# Headroom a checkpoint needs in RAM beyond its size while ldm loads it (state dict + model).
RAM_FACTOR = 2.0


def rule_python(python: PythonFacts) -> Finding:
    where = {"conda": "conda env", "venv": "virtualenv", "system": "system interpreter"}[python.env_kind]
    label = f"{where} {python.env_name!r}" if python.env_name else where
    evidence = {"version": python.version, "implementation": python.implementation, "executable": python.executable,
                "env_kind": python.env_kind, "env_name": python.env_name, "prefix": python.prefix}
    if tuple(python.version_info) < (3, 8):
        return verdict(
            Status.FAIL,
            f"Python {python.version} is older than 3.8, which this harness and current torch need.",
            evidence=evidence,
            cause="Python 3.7 and older are end-of-life; no supported torch/transformers wheels exist for them.",
            fix="Create an environment with Python 3.8 or newer, e.g. `conda create -n ldm python=3.10`.",
        )
    return verdict(
        Status.OK,
        f"{python.implementation} {python.version} in {label} ({python.executable})",
        evidence=evidence,
    )


def rule_packages(versions: Mapping[str, Optional[str]], torch_build: TorchBuild) -> Finding:
    packages, torch = versions, torch_build
    present = {k: v for k, v in packages.items() if v}
    absent = sorted(k for k, v in packages.items() if not v)
    build = ""
    if torch.installed:
        build = f"; torch is a {torch.kind} build" + (f" for CUDA {torch.cuda}" if torch.cuda else "")
    summary = ", ".join(f"{k} {v}" for k, v in present.items()) or "None of the LDM stack is installed"
    return verdict(
        Status.INFO if present else Status.WARN,
        summary + build,
        evidence={"installed": present, "not_installed": absent, "torch_build": torch.to_dict()},
        cause="" if present else "No package of the latent-diffusion stack is installed in this interpreter.",
        fix="" if present else "Activate the environment the model runs in, or install its requirements.",
    )


def _missing(package: str, versions: Mapping[str, Optional[str]], why: str, fix: str) -> Finding:
    version = versions.get(package)
    if version:
        return verdict(Status.OK, f"{package} {version} is installed.", evidence={"version": version})
    return verdict(
        Status.FAIL, f"{package} is not installed in this environment.",
        evidence={"version": None},
        cause=why,
        fix=fix,
    )


def rule_torch_missing(versions: Mapping[str, Optional[str]]) -> Finding:
    return _missing(
        "torch", versions,
        "The ldm code, every checkpoint load and every model step need PyTorch.",
        "Install the torch build that matches your GPU driver, e.g. "
        "`pip install torch --index-url https://download.pytorch.org/whl/cu121` "
        "(CPU only: `--index-url https://download.pytorch.org/whl/cpu`).",
    )


def rule_transformers_missing(versions: Mapping[str, Optional[str]]) -> Finding:
    return _missing(
        "transformers", versions,
        "ldm's FrozenCLIPEmbedder imports CLIPTokenizer and CLIPTextModel from transformers.",
        "Install the version your code was written for, e.g. `pip install transformers==4.19.2` for the "
        "original Stable Diffusion environment.",
    )


def rule_resources(memory: MemoryFacts, disk: DiskFacts, checkpoint_size: Optional[int]) -> Finding:
    evidence = {
        "ram_total": fmt_bytes(memory.total),
        "ram_available": fmt_bytes(memory.available),
        "disk_free_cwd": fmt_bytes(disk.cwd_free),
        "checkpoint_size": fmt_bytes(checkpoint_size) if checkpoint_size is not None else None,
        "source": memory.source,
    }
    available = memory.available
    if checkpoint_size and available is not None and available < checkpoint_size * RAM_FACTOR:
        return verdict(
            Status.WARN,
            f"{fmt_bytes(available)} RAM available for a {fmt_bytes(checkpoint_size)} checkpoint; loading needs "
            f"about {fmt_bytes(checkpoint_size * RAM_FACTOR)}.",
            evidence=evidence,
            cause="ldm loads the whole state dict into RAM (torch.load) before copying it into the model.",
            fix="Free memory, add swap, or use a pruned fp16 checkpoint (about 2 GiB for SD 1.x).",
        )
    return verdict(
        Status.OK,
        f"{evidence['ram_available']} of {evidence['ram_total']} RAM available, "
        f"{evidence['disk_free_cwd']} free on the working directory's disk.",
        evidence=evidence,
    )


CHECKS: List[Check] = [
    Check("env.python", "Python interpreter", rule_python, reads=("python",)),
    Check("env.packages", "LDM stack versions", rule_packages, reads=("versions", "torch_build")),
    Check("env.torch-missing", "torch in this environment", rule_torch_missing, reads=("versions",)),
    Check("env.transformers-missing", "transformers in this environment", rule_transformers_missing,
          reads=("versions",)),
    Check("env.resources", "RAM and disk", rule_resources, reads=("memory", "disk", "checkpoint_size")),
]
