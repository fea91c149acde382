"""config.load and config.targets: the yaml read the way ldm reads it, and its `target:` classes found."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from ...findings import Finding, Status, verdict
from ...probes.ldm_config import LdmConfigFacts
from .common import unet_params


def rule_config_load(config: LdmConfigFacts) -> Finding:
    err = config.error
    path = config.path
    if err:
        where = f" (line {err['line']}" + (f", column {err['column']}" if err.get("column") else "") + ")" \
            if err.get("line") else ""
        evidence = {k: v for k, v in err.items() if k != "message"}
        evidence.update(path=path, message=err.get("message"))
        kind = err.get("kind")
        if kind == "missing-reader":
            return verdict(Status.FAIL, f"Cannot read {path}: neither omegaconf nor PyYAML is installed.",
                           evidence=evidence, cause="ldm reads its configs with omegaconf.",
                           fix="Install omegaconf: `pip install omegaconf`.")
        if kind == "unreadable":
            return verdict(Status.FAIL, f"Cannot read {path}: {err.get('message')}", evidence=evidence,
                           cause="The file is missing, unreadable or not UTF-8 text.",
                           fix="Pass the path of the model's inference yaml with --config.")
        if kind == "syntax":
            src = err.get("source_line")
            return verdict(Status.FAIL,
                f"{path} is not valid YAML{where}: {err.get('message')}" + (f": `{src.strip()}`" if src else ""),
                evidence=evidence,
                cause="A YAML syntax error: often a tab used for indentation, an unclosed [ or {, or a missing "
                      "space after a colon.",
                fix=f"Edit {path}" + (f" at line {err['line']}" if err.get("line") else "")
                    + "; compare it with the original config shipped with the model "
                      "(e.g. v1-inference.yaml) and indent with spaces only.",
            )
        if kind == "interpolation":
            return verdict(Status.FAIL,
                           f"{path}: an interpolation cannot be resolved{where}: {err.get('message')}",
                           evidence=evidence, cause="A `${...}` reference points at a key that does not exist.",
                           fix="Replace the `${...}` value with a literal, or define the key it refers to.")
        if kind in ("not-a-mapping", "no-model-target"):
            return verdict(Status.FAIL, f"{path} is not an LDM model config: {err.get('message')}{where}.",
                           evidence=evidence,
                           cause="ldm builds the model with instantiate_from_config(config.model), which needs "
                                 "`model.target` and `model.params`.",
                           fix="Pass the model's inference config (v1-inference.yaml, v1-inpainting-inference.yaml, "
                               "v2-inference.yaml, ...), not a training or application config.")
        return verdict(Status.FAIL, f"Cannot read {path}: {err.get('message')}", evidence=evidence,
                       fix="Check the file against the original config shipped with the model.")
    summary = config.summary or {}
    unet = unet_params(summary)
    cond = summary.get("cond_stage_config") or {}
    ema = summary.get("use_ema") or {}
    bits = [f"target {summary.get('target')}"]
    if unet:
        bits.append(f"UNet in_channels {unet.get('in_channels')}, context_dim {unet.get('context_dim')}")
    if cond:
        bits.append(f"text encoder {str(cond.get('target') or cond.get('special')).rsplit('.', 1)[-1]}")
    if ema.get("effective") is not None:
        bits.append(f"use_ema {ema.get('effective')}" + ("" if ema.get("explicit") else " (default)"))
    return verdict(Status.OK, f"Read {path} with {config.reader}: " + "; ".join(bits) + ".",
                   evidence={"path": path, "reader": config.reader, "values": summary})


def rule_config_targets(config: LdmConfigFacts, resolved: Sequence[Mapping[str, Any]],
                        code_root: Optional[str] = None) -> Finding:
    """`resolved`: find_target() results, one per config target (with its config `path`)."""
    code = "config.targets"
    missing = [r for r in resolved if not r.get("found") or r.get("defined") is False]
    built_missing = [r for r in missing if "scheduler_config" not in str(r.get("path"))]
    evidence = {"targets": list(resolved), "code_root": code_root}
    if not missing:
        return verdict(Status.OK, f"All {len(resolved)} targets in the config resolve to source files "
                       "(found without importing them).", evidence=evidence)
    lines = []
    for r in missing:
        if not r.get("found"):
            lines.append(f"{r['target']} ({r.get('path')}): module not found")
        else:
            lines.append(f"{r['target']} ({r.get('path')}): {r['module_file']} defines no "
                         f"`{r['target'].rsplit('.', 1)[-1]}`")
    ldm_target = any(str(r["target"]).startswith("ldm.") for r in missing)
    cause = ("The `ldm` code on the path is not the one this config was written for: e.g. "
             "LatentInpaintDiffusion and FrozenOpenCLIPEmbedder exist in Stability-AI/stablediffusion and the "
             "RunwayML fork, not in the original CompVis repository." if ldm_target else
             "A package the config refers to is not installed, or the name is misspelt.")
    fix = ("Pass --code-root with the repository that matches the config (the directory holding `ldm/`), or use "
           "the config shipped with that code." if ldm_target else
           "Install the package that provides the module, or correct the `target:` line.")
    text = "; ".join(lines[:5]) + (f" (+{len(lines) - 5} more)" if len(lines) > 5 else "")
    if not built_missing:
        names = ", ".join(str(r["target"]) for r in missing)
        one = len(missing) == 1
        return verdict(Status.OK,
                       f"All {len(resolved) - len(missing)} targets built for inference resolve to source files "
                       f"(the training-only {names} {'is' if one else 'are'} not in the code; inference does not "
                       f"build {'it' if one else 'them'}).", evidence=evidence)
    return verdict(Status.FAIL, f"Targets that cannot be imported: {text}.",
                   evidence=evidence, cause=cause, fix=fix)
