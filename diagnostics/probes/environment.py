"""Facts about the Python environment, read without importing the ML stack.

Versions come from `importlib.metadata` (as huggingface_hub's `dump_environment_info` does), and
whether torch is a CPU or CUDA build comes from its version suffix or the `torch/version.py` text,
so `python -m diagnostics report` stays fast and works where `import torch` would crash.

The probe returns typed facts (`EnvironmentFacts` holding `PythonFacts`, `TorchBuild`, `MemoryFacts`
and `DiskFacts`); each `to_dict()` gives the JSON the report writes. The installed versions stay a
mapping (package label -> version or None), as every rule that depends on versions reads them.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

# (label shown to users, distribution names to try). The label is the key used by the rules.
LDM_STACK: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("torch", ("torch",)),
    ("torchvision", ("torchvision",)),
    ("transformers", ("transformers",)),
    ("tokenizers", ("tokenizers",)),
    ("huggingface_hub", ("huggingface-hub", "huggingface_hub")),
    ("safetensors", ("safetensors",)),
    ("diffusers", ("diffusers",)),
    ("pytorch_lightning", ("pytorch-lightning", "pytorch_lightning")),
    ("lightning", ("lightning",)),
    ("torchmetrics", ("torchmetrics",)),
    ("omegaconf", ("omegaconf",)),
    ("open_clip_torch", ("open-clip-torch", "open_clip_torch")),
    ("xformers", ("xformers",)),
    ("numpy", ("numpy",)),
    ("accelerate", ("accelerate",)),
    ("einops", ("einops",)),
    ("kornia", ("kornia",)),
    ("taming-transformers", ("taming-transformers", "taming-transformers-rom1504", "taming_transformers")),
    ("protobuf", ("protobuf",)),
)


@dataclass(frozen=True)
class PythonFacts:
    """The interpreter the harness runs in, and the environment (conda, venv, system) it belongs to."""

    version: str  # "3.10.12"
    version_info: Tuple[int, ...]  # (3, 10, 12)
    implementation: str  # CPython, PyPy
    executable: str
    platform: str
    machine: str
    env_kind: str  # conda | venv | system
    env_name: str  # the conda env or venv directory name; "" for the system interpreter
    prefix: str

    def to_dict(self) -> Dict[str, Any]:
        return {"version": self.version, "version_info": list(self.version_info),
                "implementation": self.implementation, "executable": self.executable, "platform": self.platform,
                "machine": self.machine, "env_kind": self.env_kind, "env_name": self.env_name, "prefix": self.prefix}


@dataclass(frozen=True)
class TorchBuild:
    """The installed torch and the kind of build it is, told without importing it."""

    installed: bool
    version: Optional[str] = None
    kind: Optional[str] = None  # cpu | cuda | rocm | unknown; None when torch is not installed
    cuda: Optional[str] = None  # the CUDA version a cuda build is for ("12.1")
    source: Optional[str] = None  # what told the kind: "version suffix", "torch/version.py", "no build information"

    def to_dict(self) -> Dict[str, Any]:
        facts: Dict[str, Any] = {"installed": self.installed, "version": self.version, "kind": self.kind,
                                 "cuda": self.cuda}
        if self.source is not None:
            facts["source"] = self.source
        return facts


NO_TORCH = TorchBuild(installed=False)


@dataclass(frozen=True)
class MemoryFacts:
    """Total and available RAM in bytes (None when unknown), and where they were read."""

    total: Optional[int]
    available: Optional[int]
    source: str  # psutil | /proc/meminfo | sysconf | unavailable

    def to_dict(self) -> Dict[str, Any]:
        return {"total": self.total, "available": self.available, "source": self.source}


@dataclass(frozen=True)
class DiskFacts:
    """Free bytes on the working directory's file system (None when unknown)."""

    cwd: str
    cwd_free: Optional[int]

    def to_dict(self) -> Dict[str, Any]:
        return {"cwd": self.cwd, "cwd_free": self.cwd_free}


@dataclass(frozen=True)
class EnvironmentFacts:
    """Every environment fact of one run (memoised on the context as "environment")."""

    python: PythonFacts
    packages: Dict[str, Optional[str]]  # LDM_STACK label -> installed version, None when absent
    torch: TorchBuild
    memory: MemoryFacts
    disk: DiskFacts
    checkpoint_size: Optional[int]  # bytes of --checkpoint; None when none was given or it cannot be read

    def to_dict(self) -> Dict[str, Any]:
        return {"python": self.python.to_dict(), "packages": dict(self.packages), "torch": self.torch.to_dict(),
                "memory": self.memory.to_dict(), "disk": self.disk.to_dict(), "checkpoint_size": self.checkpoint_size}


def _metadata():
    import importlib.metadata as md  # stdlib from 3.8

    return md


def distribution(names: Sequence[str]):
    """The first installed distribution among `names`, or None. Broken metadata counts as absent."""
    md = _metadata()
    for name in names:
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        except Exception:  # unreadable metadata is reported as absent, never raised (pip check)
            continue
        if dist.version:
            return dist
    return None


def package_versions(stack=LDM_STACK) -> Dict[str, Optional[str]]:
    """Label → installed version (None when absent)."""
    versions: Dict[str, Optional[str]] = {}
    for label, names in stack:
        dist = distribution(names)
        versions[label] = dist.version if dist is not None else None
    return versions


def python_facts(environ=None) -> PythonFacts:
    environ = os.environ if environ is None else environ
    prefix = sys.prefix
    conda_prefix = environ.get("CONDA_PREFIX")
    if os.path.isdir(os.path.join(prefix, "conda-meta")) or (
        conda_prefix and os.path.realpath(conda_prefix) == os.path.realpath(prefix)
    ):
        kind = "conda"
        name = environ.get("CONDA_DEFAULT_ENV") or os.path.basename(prefix)
    elif getattr(sys, "base_prefix", prefix) != prefix or environ.get("VIRTUAL_ENV"):
        kind = "venv"
        name = os.path.basename(prefix)
    else:
        kind = "system"
        name = ""
    return PythonFacts(
        version=platform.python_version(),
        version_info=tuple(sys.version_info[:3]),
        implementation=platform.python_implementation(),
        executable=sys.executable,
        platform=platform.platform(),
        machine=platform.machine(),
        env_kind=kind,
        env_name=name,
        prefix=prefix,
    )


_CUDA_SUFFIX = re.compile(r"\+cu(\d+)$")
_VERSION_PY_CUDA = re.compile(r"^cuda\s*(?::[^=]*)?=\s*(None|['\"]([\d.]+)['\"])", re.M)
_VERSION_PY_HIP = re.compile(r"^hip\s*(?::[^=]*)?=\s*(None|['\"]([^'\"]+)['\"])", re.M)


def torch_build(version: Optional[str], version_py: Optional[str]) -> TorchBuild:
    """Classify a torch install (None: not installed) as cpu / cuda / rocm from its version and
    `torch/version.py` text."""
    if version is None:
        return NO_TORCH

    def build(kind: str, source: str, cuda: Optional[str] = None) -> TorchBuild:
        return TorchBuild(installed=True, version=version, kind=kind, cuda=cuda, source=source)

    suffix = _CUDA_SUFFIX.search(version)
    if suffix:
        digits = suffix.group(1)
        return build("cuda", "version suffix", f"{digits[:-1]}.{digits[-1]}")
    if version.endswith("+cpu"):
        return build("cpu", "version suffix")
    if "+rocm" in version:
        return build("rocm", "version suffix")
    if version_py:
        cuda = _VERSION_PY_CUDA.search(version_py)
        if cuda and cuda.group(2):
            return build("cuda", "torch/version.py", cuda.group(2))
        hip = _VERSION_PY_HIP.search(version_py)
        if hip and hip.group(2):
            return build("rocm", "torch/version.py")
        if cuda:
            return build("cpu", "torch/version.py")
    return build("unknown", "no build information")


def torch_facts() -> TorchBuild:
    dist = distribution(("torch",))
    if dist is None:
        return NO_TORCH
    version_py = None
    try:
        path = Path(str(dist.locate_file("torch/version.py")))
        version_py = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        pass
    return torch_build(dist.version, version_py)


def memory_facts() -> MemoryFacts:
    """Total and available RAM in bytes, from psutil when present, else /proc/meminfo or sysconf."""
    try:
        import psutil  # optional

        vm = psutil.virtual_memory()
        return MemoryFacts(int(vm.total), int(vm.available), "psutil")
    except Exception:
        pass
    try:
        info = {}
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                info[key] = int(rest.split()[0]) * 1024
        return MemoryFacts(info.get("MemTotal"), info.get("MemAvailable"), "/proc/meminfo")
    except (OSError, ValueError, IndexError):
        pass
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        return MemoryFacts(page * os.sysconf("SC_PHYS_PAGES"), page * os.sysconf("SC_AVPHYS_PAGES"), "sysconf")
    except (ValueError, OSError, AttributeError):
        return MemoryFacts(None, None, "unavailable")


def disk_free(path) -> Optional[int]:
    """Free bytes on the file system holding `path` (its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(str(p)).free
    except OSError:
        return None


def probe_environment(ctx) -> EnvironmentFacts:
    """All environment facts for one run (memoised on the context as "environment")."""
    checkpoint = ctx.options.checkpoint
    checkpoint_size = None
    if checkpoint:
        try:
            checkpoint_size = os.stat(checkpoint).st_size
        except OSError:
            pass
    return EnvironmentFacts(
        python=python_facts(ctx.environ),
        packages=package_versions(),
        torch=torch_facts(),
        memory=memory_facts(),
        disk=DiskFacts(cwd=str(ctx.cwd), cwd_free=disk_free(ctx.cwd)),
        checkpoint_size=checkpoint_size,
    )


def installed_versions(ctx) -> Dict[str, Optional[str]]:
    """Label -> installed version of the LDM stack for this run (memoised with the environment facts);
    what every rule that depends on versions reads."""
    return ctx.fact("environment", probe_environment).packages
