"""Facts about the Python environment, read without importing the ML stack.

Versions come from `importlib.metadata` (as huggingface_hub's `dump_environment_info` does), and
whether torch is a CPU or CUDA build comes from its version suffix or the `torch/version.py` text,
so `python -m diagnostics report` stays fast and works where `import torch` would crash.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import sys
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


def python_facts(environ=None) -> Dict[str, Any]:
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
    return {
        "version": platform.python_version(),
        "version_info": list(sys.version_info[:3]),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "env_kind": kind,
        "env_name": name,
        "prefix": prefix,
    }


_CUDA_SUFFIX = re.compile(r"\+cu(\d+)$")
_VERSION_PY_CUDA = re.compile(r"^cuda\s*(?::[^=]*)?=\s*(None|['\"]([\d.]+)['\"])", re.M)
_VERSION_PY_HIP = re.compile(r"^hip\s*(?::[^=]*)?=\s*(None|['\"]([^'\"]+)['\"])", re.M)


def torch_build(version: Optional[str], version_py: Optional[str]) -> Dict[str, Any]:
    """Classify a torch install as cpu / cuda / rocm from its version and `torch/version.py` text."""
    if version is None:
        return {"kind": None, "cuda": None}
    suffix = _CUDA_SUFFIX.search(version)
    if suffix:
        digits = suffix.group(1)
        return {"kind": "cuda", "cuda": f"{digits[:-1]}.{digits[-1]}", "source": "version suffix"}
    if version.endswith("+cpu"):
        return {"kind": "cpu", "cuda": None, "source": "version suffix"}
    if "+rocm" in version:
        return {"kind": "rocm", "cuda": None, "source": "version suffix"}
    if version_py:
        cuda = _VERSION_PY_CUDA.search(version_py)
        if cuda and cuda.group(2):
            return {"kind": "cuda", "cuda": cuda.group(2), "source": "torch/version.py"}
        hip = _VERSION_PY_HIP.search(version_py)
        if hip and hip.group(2):
            return {"kind": "rocm", "cuda": None, "source": "torch/version.py"}
        if cuda:
            return {"kind": "cpu", "cuda": None, "source": "torch/version.py"}
    return {"kind": "unknown", "cuda": None, "source": "no build information"}


def torch_facts() -> Dict[str, Any]:
    dist = distribution(("torch",))
    if dist is None:
        return {"installed": False, "version": None, "kind": None, "cuda": None}
    version_py = None
    try:
        path = Path(str(dist.locate_file("torch/version.py")))
        version_py = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        pass
    facts = {"installed": True, "version": dist.version}
    facts.update(torch_build(dist.version, version_py))
    return facts


def memory_facts() -> Dict[str, Any]:
    """Total and available RAM in bytes, from psutil when present, else /proc/meminfo or sysconf."""
    try:
        import psutil  # optional

        vm = psutil.virtual_memory()
        return {"total": int(vm.total), "available": int(vm.available), "source": "psutil"}
    except Exception:
        pass
    try:
        info = {}
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                info[key] = int(rest.split()[0]) * 1024
        return {"total": info.get("MemTotal"), "available": info.get("MemAvailable"), "source": "/proc/meminfo"}
    except (OSError, ValueError, IndexError):
        pass
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        return {
            "total": page * os.sysconf("SC_PHYS_PAGES"),
            "available": page * os.sysconf("SC_AVPHYS_PAGES"),
            "source": "sysconf",
        }
    except (ValueError, OSError, AttributeError):
        return {"total": None, "available": None, "source": "unavailable"}


def disk_free(path) -> Optional[int]:
    """Free bytes on the file system holding `path` (its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(str(p)).free
    except OSError:
        return None


def probe_environment(ctx) -> Dict[str, Any]:
    """All environment facts for one run (memoised on the context as "environment")."""
    checkpoint = ctx.options.checkpoint
    checkpoint_size = None
    if checkpoint:
        try:
            checkpoint_size = os.stat(checkpoint).st_size
        except OSError:
            pass
    return {
        "python": python_facts(ctx.environ),
        "packages": package_versions(),
        "torch": torch_facts(),
        "memory": memory_facts(),
        "disk": {"cwd": str(ctx.cwd), "cwd_free": disk_free(ctx.cwd)},
        "checkpoint_size": checkpoint_size,
    }


def installed_versions(ctx) -> Dict[str, Optional[str]]:
    """Label -> installed version of the LDM stack for this run (memoised with the environment facts);
    what every rule that depends on versions reads."""
    return ctx.fact("environment", probe_environment)["packages"]
