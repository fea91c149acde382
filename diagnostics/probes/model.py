"""Facts about building the user's model: the child-process run, the checkpoint's tensor shapes, CLIP files.

- `probe_model` runs `python -m diagnostics.probes._model_child` (import, instantiate, load, device,
  smoke forward) with the context's runner and timeout, and turns its stage lines into one
  JSON-serialisable dict (`ctx.fact("model")`), the source of the report's Model Instantiation
  section. A timeout, a crash or a kill (out of memory) is a fact that names the stage it hit.
- `checkpoint_shapes` gives key -> shape for the static config checks: from the checkpoint facts
  (`probes/checkpoint/`, the one non-executing reader), else from
  `torch.load(weights_only=True, mmap=True, map_location="meta")` in a child process.
- `text_encoder_files` says which CLIP files a `version:` (hub id or directory) lacks on disk;
  `probe_text_encoder_files` asks it for the config's text encoder (the `text_encoder_files` fact).

Missing, unexpected and size-mismatched keys are grouped by component prefix here (data only: the
explanations are the rules' job), keeping counts and the first keys so a 688-key EMA gap stays small.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..context import DEFAULT_CLIP_ID
from ._model_child.protocol import MARK, parse_event_line
from .cache import hub_cache_dir
from .checkpoint import probe_checkpoint
from .checkpoint.shapes import NO_CHECKPOINT, CheckpointShapes, shapes_from_facts
from .environment import probe_environment
from .ldm_config import probe_ldm_config

CHILD_MODULE = "diagnostics.probes._model_child"
KEYS_KEPT = 20  # per group: enough to explain, small enough for a report
OUTPUT_KEPT = 200  # lines of the user's code output kept in the facts
STAGES = ("import", "instantiate", "load", "device", "smoke")

# Component prefixes of an LDM state dict, most specific first (checkpoint-anchors.md, section 9.5).
COMPONENTS: Tuple[Tuple[str, str], ...] = (
    ("model.diffusion_model.", "unet"),
    ("model_ema.", "ema"),
    ("first_stage_model.", "vae"),
    ("cond_stage_model.", "text_encoder"),
    ("conditioner.", "text_encoder"),
    ("control_model.", "controlnet"),
    ("depth_model.", "depth"),
    ("embedder.", "image_embedder"),
    ("model.", "wrapper"),
)


def component_of(key: str) -> str:
    for prefix, name in COMPONENTS:
        if key.startswith(prefix):
            return name
    return "other"


def component_prefix(component: str) -> str:
    for prefix, name in COMPONENTS:
        if name == component:
            return prefix
    return ""


def group_keys(keys: Sequence[Any], key_of=lambda k: k, kept: int = KEYS_KEPT) -> List[Dict[str, Any]]:
    """[{component, prefix, count, keys (first `kept`)}] in COMPONENTS order; items may be dicts (via key_of)."""
    groups: Dict[str, Dict[str, Any]] = {}
    for item in keys:
        name = component_of(key_of(item))
        group = groups.setdefault(name, {"component": name, "prefix": component_prefix(name), "count": 0, "keys": []})
        group["count"] += 1
        if len(group["keys"]) < kept:
            group["keys"].append(item)
    order = [name for _, name in COMPONENTS] + ["other"]
    return sorted(groups.values(), key=lambda g: order.index(g["component"]))


# ---------------------------------------------------------------------------------------------
# child process


def child_env(ctx) -> Dict[str, str]:
    """The context's environment, plus our package on PYTHONPATH (after the user's entries)."""
    env = dict(ctx.environ)
    root = str(Path(__file__).resolve().parents[2])
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in parts:
        parts.append(root)
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env["PYTHONUNBUFFERED"] = "1"  # so what the user's code printed survives a kill
    return env


def parse_child_output(stdout: str) -> Tuple[List[Dict[str, Any]], List[str]]:
    """(events, other lines) from the child's stdout."""
    events: List[Dict[str, Any]] = []
    other: List[str] = []
    for line in stdout.splitlines():
        event = parse_event_line(line)
        if event is not None:
            events.append(event)
        elif line.startswith(MARK) or line.strip():
            other.append(line)
    return events, other


def model_request(ctx) -> Dict[str, Any]:
    opts = ctx.options
    return {
        "config": os.path.abspath(opts.config) if opts.config else None,
        "checkpoint": os.path.abspath(opts.checkpoint) if opts.checkpoint else None,
        "code_root": os.path.abspath(opts.code_root) if opts.code_root else None,
        "device": opts.device,
        "dtype": getattr(opts, "dtype", None) or ctx.environ.get("LDM_DIAG_DTYPE") or "fp32",
        "latent_size": None,  # the child picks 16 (128 px) for SD on the CPU, 64 (512 px) on a GPU
        "smoke": True,
        "meta": True,
    }


def _tail(text: str, lines: int = OUTPUT_KEPT) -> List[str]:
    out = [line for line in text.splitlines() if line.strip()]
    return out[-lines:]


def summarise_output(lines: Sequence[str]) -> Dict[str, Any]:
    """Lines of the user's code that the report quotes (the seed's 'DiffusionWrapper has 859.54 M params.')."""
    notable: Dict[str, Any] = {"xformers_missing": False, "params_lines": []}
    for line in lines:
        text = line.strip()
        if "No module 'xformers'" in text:
            notable["xformers_missing"] = True
        elif " M params." in text and " has " in text:
            notable["params_lines"].append(text)
        elif "Running in" in text and "prediction mode" in text:
            notable["prediction_mode"] = text
    return notable


CLIP_NESTED = "cond_stage_model.transformer.text_model."
CLIP_FLAT = "cond_stage_model.transformer."


def clip_key_shift(missing: Sequence[str], unexpected: Sequence[str]) -> Optional[Dict[str, Any]]:
    """Text-encoder keys that differ only by the `text_model.` level (transformers 4 vs 5 CLIPTextModel names).

    Returns {"file": "text_model" | "flat", "count": n} or None.
    """
    def flat(key: str) -> str:
        return CLIP_FLAT + key[len(CLIP_NESTED):] if key.startswith(CLIP_NESTED) else key

    miss = set(missing)
    file_nested = [k for k in unexpected if k.startswith(CLIP_NESTED) and flat(k) in miss]
    if file_nested:
        return {"file": "text_model", "count": len(file_nested)}
    unexp = set(unexpected)
    model_nested = [k for k in missing if k.startswith(CLIP_NESTED) and flat(k) in unexp]
    if model_nested:
        return {"file": "flat", "count": len(model_nested)}
    return None


def _group_stage_keys(data: Dict[str, Any]) -> None:
    data["clip_key_shift"] = clip_key_shift(data.get("missing") or [], data.get("unexpected") or [])
    for name in ("missing", "unexpected"):
        keys = data.get(name) or []
        data[name] = {"count": len(keys), "groups": group_keys(keys)}
    mism = data.get("mismatched") or []
    data["mismatched"] = {"count": len(mism), "groups": group_keys(mism, key_of=lambda m: m["key"])}


def run_model_child(ctx, request: Dict[str, Any]) -> Dict[str, Any]:
    """Run the child for `request`; returns the facts (never raises)."""
    timeout = float(ctx.options.timeout)
    argv = [ctx.python, "-m", CHILD_MODULE, json.dumps(request)]
    from .. import progress  # live progress: the stages as the child reports them

    with progress.step("model: building it in a child process", timeout=timeout) as step:
        result = progress.run_child(ctx.runner, argv, timeout, child_env(ctx), step.child_event, MARK)
        if result.timed_out:
            step.done(f"stopped after {timeout:g} s (--timeout)", failed=True)
    events, other = parse_child_output(result.stdout or "")
    facts: Dict[str, Any] = {
        "ran": True, "request": request, "timeout": timeout, "returncode": result.returncode,
        "timed_out": bool(result.timed_out), "stages": {}, "skipped": {}, "error": None, "last_stage": None,
    }
    begun: Optional[str] = None
    finished = False
    for ev in events:
        kind, stage = ev.get("event"), ev.get("stage")
        if kind == "begin":
            begun = stage
            facts["last_stage"] = stage
        elif kind == "end":
            data = dict(ev.get("data") or {})
            if stage == "load":
                _group_stage_keys(data)
            facts["stages"][stage] = data
            begun = None
        elif kind == "skip":
            facts["skipped"][stage] = ev.get("reason")
        elif kind == "error":
            facts["error"] = dict(ev.get("error") or {}, stage=stage, seconds=ev.get("seconds"))
            begun = None
        elif kind == "done":
            finished = True
    stderr_lines = _tail(result.stderr or "")
    facts["output"] = _tail("\n".join(other))
    facts["stderr"] = stderr_lines
    facts["notable"] = summarise_output(other + stderr_lines)
    if facts["error"] is None and not finished:
        stage = begun or facts["last_stage"] or "start"
        if result.timed_out:
            facts["error"] = {"stage": stage, "kind": "timeout", "type": "Timeout",
                              "message": f"the child process was stopped after {timeout:g} s (--timeout)"}
        elif result.returncode is None:
            facts["error"] = {"stage": stage, "kind": "not-started", "type": "OSError",
                              "message": result.error or "the child process could not start"}
        else:
            rc = result.returncode
            signal_note = f" (signal {-rc})" if rc < 0 else ""
            facts["error"] = {"stage": stage, "kind": "killed" if rc < 0 else "crashed", "type": "ChildExit",
                              "returncode": rc,
                              "message": f"the child process exited with {rc}{signal_note} during {stage}"
                                         + (": " + stderr_lines[-1] if stderr_lines else "")}
    return facts


def probe_model(ctx) -> Dict[str, Any]:
    """`ctx.fact("model")`: build and load the model described by --config (and --checkpoint)."""
    opts = ctx.options
    if not opts.config:
        return {"ran": False, "reason": "no-config",
                "message": "No --config was given, so no model was built (pass --config, --checkpoint and --code-root)."}
    config = ctx.fact("ldm_config", probe_ldm_config)
    if not config.get("loaded"):
        return {"ran": False, "reason": "config-unreadable",
                "message": "The config could not be read (see config.load)."}
    if not ctx.fact("environment", probe_environment).torch.installed:
        return {"ran": False, "reason": "torch-missing", "message": "torch is not installed (see env.torch-missing)."}
    if opts.code_root and not os.path.isdir(opts.code_root):
        return {"ran": False, "reason": "code-root-missing",
                "message": f"--code-root {opts.code_root} is not a directory", "code_root": opts.code_root}
    return run_model_child(ctx, model_request(ctx))


# ---------------------------------------------------------------------------------------------
# checkpoint key -> shape, for the static checks


def read_checkpoint_shapes(ctx, path: str) -> CheckpointShapes:
    """Key -> shape from `torch.load(weights_only=True, map_location='meta')` in a child process: for the
    files the checkpoint readers (`probes/checkpoint/`) could not turn into a state dict."""
    if os.path.isdir(path):
        return CheckpointShapes.failed("directory", f"{path} is a directory (a diffusers folder?), "
                                                    "not a single LDM checkpoint file")
    if not ctx.fact("environment", probe_environment).torch.installed:
        return CheckpointShapes.failed("torch-missing", "torch is needed to read a pickled checkpoint's layout")
    result = ctx.runner([ctx.python, "-m", CHILD_MODULE, "layout", os.path.abspath(path)],
                        float(ctx.options.timeout), child_env(ctx))
    events, _ = parse_child_output(result.stdout or "")
    layout = next((e for e in events if e.get("event") == "layout"), None)
    if layout is None:
        why = "timed out" if result.timed_out else (result.error or (result.stderr or "").strip()[-300:] or "no output")
        return CheckpointShapes.failed("probe-failed", why, source="torch.load (child)")
    if not layout.get("ok"):
        return CheckpointShapes(ok=False, source="torch.load (child)", error=layout.get("error"))
    tensors = layout.get("tensors") or {}
    return CheckpointShapes(ok=True, source="torch.load(weights_only=True, map_location='meta')",
                            format=layout.get("format"), shapes={k: v[0] for k, v in tensors.items()},
                            dtypes={k: v[1] for k, v in tensors.items()}, extras=layout.get("extras"))


def probe_checkpoint_shapes(ctx) -> CheckpointShapes:
    path = ctx.options.checkpoint
    if not path:
        return NO_CHECKPOINT
    return shapes_from_facts(ctx.fact("checkpoint", probe_checkpoint)) or read_checkpoint_shapes(ctx, path)


def checkpoint_shapes(ctx) -> CheckpointShapes:
    """Key -> shape for --checkpoint, memoised as the `checkpoint_layout` fact (whose JSON is a summary)."""
    return ctx.fact("checkpoint_layout", probe_checkpoint_shapes)


# ---------------------------------------------------------------------------------------------
# CLIP text encoder files (FrozenCLIPEmbedder's `version:`)

TOKENIZER_FILES = ("vocab.json", "merges.txt")
TOKENIZER_OPTIONAL = ("tokenizer_config.json", "special_tokens_map.json", "tokenizer.json")
MODEL_CONFIG = "config.json"
MODEL_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
TRUTHY = ("1", "on", "yes", "true")


def _present(folder: Path) -> List[str]:
    try:
        return sorted(p.name for p in folder.iterdir() if p.is_file())  # is_file follows symlinks: broken = absent
    except OSError:
        return []


def text_encoder_files(version: str, environ: Mapping[str, str], cwd: Optional[str] = None) -> Dict[str, Any]:
    """Which files CLIPTokenizer/CLIPTextModel.from_pretrained(version) would find on this machine."""
    cwd = cwd or os.getcwd()
    offline = {var: environ.get(var) for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") if environ.get(var)}
    facts: Dict[str, Any] = {"version": version, "offline": any(v.lower() in TRUTHY for v in offline.values()),
                             "offline_vars": offline, "endpoint": environ.get("HF_ENDPOINT")}
    local = Path(version) if os.path.isabs(version) else Path(cwd) / version
    if local.is_dir():
        present = _present(local)
        facts.update(kind="local-dir", path=str(local), present=present)
        # a directory named like the hub id shadows the hub (knowledge base K01 c)
        facts["shadows_hub_id"] = not os.path.isabs(version) and version.count("/") == 1
    else:
        cache = hub_cache_dir(environ)
        repo = Path(cache) / ("models--" + version.replace("/", "--"))
        snapshots = repo / "snapshots"
        present_set = set()
        revisions = []
        if snapshots.is_dir():
            for snap in sorted(snapshots.iterdir()):
                revisions.append(snap.name)
                present_set.update(_present(snap))
        facts.update(kind="hub-id", cache_dir=cache, repo_dir=str(repo), repo_cached=repo.is_dir(),
                     revisions=revisions, present=sorted(present_set))
    present = set(facts["present"])
    missing = [f for f in TOKENIZER_FILES + (MODEL_CONFIG,) if f not in present]
    if not any(w in present for w in MODEL_WEIGHTS):
        missing.append(" or ".join(MODEL_WEIGHTS))
    facts["missing"] = missing
    return facts


def probe_text_encoder_files(ctx) -> Dict[str, Any]:
    """`text_encoder_files` for the `version:` of the config's text encoder (FrozenCLIPEmbedder's
    default when the config sets none), memoised as the `text_encoder_files` fact."""
    config = ctx.fact("ldm_config", probe_ldm_config)
    cond = ((config.get("summary") or {}).get("cond_stage_config") or {})
    version = str((cond.get("params") or {}).get("version") or DEFAULT_CLIP_ID)
    return text_encoder_files(version, ctx.environ, str(ctx.cwd))
