"""One table of facts: each fact's name and the probe that gathers it, in one place.

A check names the facts it reads (`Check.reads`, `Precondition.reads`) and those it gathers only
when its rule asks (`Check.on_demand`); the registry looks each name up here and memoises the
probe's result on the `Context`, so the GPU child process or a checkpoint scan runs once however
many checks read it. Probes are named as "module:function" and imported only when a check asks,
which keeps `python -m diagnostics --help` free of heavy imports.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Dict

FACT_PROBES: Dict[str, str] = {
    # the world the run looks at (views of the Context); "ctx" is the context itself, for hand-made
    # checks in tests: no registered check reads it
    "ctx": "diagnostics.facts:context",
    "environ": "diagnostics.facts:environ",
    "options": "diagnostics.facts:options",
    "cwd": "diagnostics.facts:cwd",
    # interpreter, packages, RAM and disk
    "environment": "diagnostics.probes.environment:probe_environment",
    "versions": "diagnostics.probes.environment:installed_versions",
    "python": "diagnostics.facts:python",
    "torch_build": "diagnostics.facts:torch_build",
    "memory": "diagnostics.facts:memory",
    "disk": "diagnostics.facts:disk",
    "checkpoint_size": "diagnostics.facts:checkpoint_size",
    # the ldm code and the packages that declare requirements on huggingface_hub
    "ldm": "diagnostics.probes.code:probe_ldm",
    "hub_requirements": "diagnostics.rules.compat:hub_requirement_conflicts_of",
    # GPU
    "gpu_driver": "diagnostics.probes.gpu:probe_driver",
    "torch_cuda": "diagnostics.facts:torch_cuda",
    # Hugging Face cache and Hub
    "needed_models": "diagnostics.probes.needed_models:probe_needed_models",
    "cache": "diagnostics.probes.cache:probe_cache",
    "hub": "diagnostics.probes.hub:probe_hub",
    "hub_downloads": "diagnostics.probes.cache:hub_downloads",
    "tokenizer": "diagnostics.rules.cache:tokenizer_results",  # ref -> the CLIP tokenizer loaded in a child
    # checkpoint, config, model
    "checkpoint": "diagnostics.probes.checkpoint:probe_checkpoint",
    "checkpoint_layout": "diagnostics.probes.model:probe_checkpoint_shapes",  # key -> shape (JSON: a summary)
    "ldm_config": "diagnostics.probes.ldm_config:probe_ldm_config",
    "model": "diagnostics.probes.model:probe_model",
    "text_encoder_files": "diagnostics.probes.model:probe_text_encoder_files",
    # --error-log, explained against this run's results (JSON: the original problem)
    "original_problem": "diagnostics.knowledge.explanation:explain_error_log",
}


def probe_for(name: str) -> Callable[[Any], Any]:
    try:
        target = FACT_PROBES[name]
    except KeyError:
        raise KeyError(f"no fact named {name!r}: add it to diagnostics.facts.FACT_PROBES") from None
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


# Views of the context itself: handed over as they are, never memoised into the facts that the
# report writes out (the environment may hold tokens; the context is not data).
CONTEXT_VIEWS = ("ctx", "environ", "options", "cwd")


def get_fact(ctx, name: str) -> Any:
    """The fact `name` for this context, gathered once."""
    if name in CONTEXT_VIEWS:
        return probe_for(name)(ctx)
    return ctx.fact(name, probe_for(name))


# --- facts that are a view of the context or of another fact -------------------------------------


def context(ctx):
    return ctx


def environ(ctx) -> Dict[str, str]:
    return ctx.environ


def options(ctx):
    return ctx.options


def cwd(ctx):
    """The working directory the run looks at (relative model paths, shadowing directories)."""
    return ctx.cwd


def python(ctx):
    """The interpreter (`probes.environment.PythonFacts`)."""
    return get_fact(ctx, "environment").python


def torch_build(ctx):
    """The installed torch and its build (`probes.environment.TorchBuild`)."""
    return get_fact(ctx, "environment").torch


def memory(ctx):
    """RAM (`probes.environment.MemoryFacts`)."""
    return get_fact(ctx, "environment").memory


def disk(ctx):
    """Free disk space (`probes.environment.DiskFacts`)."""
    return get_fact(ctx, "environment").disk


def checkpoint_size(ctx):
    """Bytes of --checkpoint, or None."""
    return get_fact(ctx, "environment").checkpoint_size


def torch_cuda(ctx):
    """torch's own view of CUDA, from a child process (`probes.gpu.TorchCudaFacts`); None where no driver
    is present or --device cpu."""
    from .probes.gpu import probe_torch_cuda

    if not get_fact(ctx, "gpu_driver").present or ctx.options.device == "cpu":
        return None
    return probe_torch_cuda(ctx, get_fact(ctx, "torch_build").installed)
