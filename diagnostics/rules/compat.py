"""Known version incompatibilities of the LDM stack, decided from installed versions alone.

Each rule takes the package-version dict (label → version or None) and whatever else it needs as
plain data, so both sides of every version boundary are tested with hand-made facts. Boundaries
are those verified in wheels (knowledge base K03, K05, K06, K10, K16, K17, K23).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

from ..findings import Finding, Status, skip
from ..probes.code import probe_ldm
from ..probes.environment import installed_versions
from ..registry import Check
from ..util import parse_version, version_at_least

Versions = Mapping[str, Optional[str]]


def rule_pl_rank_zero_only(versions: Versions, ldm: Dict[str, Any]) -> Finding:
    code, title = "compat.pl-rank-zero-only", "pytorch_lightning vs ldm's rank_zero_only import"
    pl = versions.get("pytorch_lightning")
    if not pl:
        return skip(code, title, "pytorch_lightning is not installed; the model import check reports what that breaks.")
    v = parse_version(pl)
    broken = v is not None and (v.release[:3] == (1, 8, 0) or v.release >= (2,))
    imports = ldm.get("rank_zero_only_import") or []
    evidence = {"pytorch_lightning": pl, "ldm_path": ldm.get("path"), "imports": imports}
    if not broken:
        return Finding(code, Status.OK, title,
                       f"pytorch_lightning {pl} still provides pytorch_lightning.utilities.distributed.rank_zero_only.",
                       evidence=evidence)
    cause = (f"pytorch_lightning {pl} no longer has `rank_zero_only` in `pytorch_lightning.utilities.distributed` "
             "(dropped in 1.8.0, shimmed in 1.8.1-1.9.x, removed in 2.0.0); the CompVis/Stability "
             "`ldm/models/diffusion/ddpm.py` imports it from there.")
    fix = ("Pin Lightning to a version that has it: `pip install 'pytorch-lightning<2,!=1.8.0'` "
           "(the original environment uses 1.4.2), or change the import in ldm/models/diffusion/ddpm.py to "
           "`from pytorch_lightning.utilities import rank_zero_only`.")
    docs = ["https://github.com/Lightning-AI/pytorch-lightning/issues/15509"]
    if imports:
        where = f"{imports[0]['file']}:{imports[0]['line']}"
        return Finding(code, Status.FAIL, title,
                       f"`import ldm.models.diffusion.ddpm` will raise ImportError: {where} imports rank_zero_only "
                       f"from pytorch_lightning.utilities.distributed, which {pl} lacks.",
                       evidence=evidence, cause=cause, fix=fix, docs=docs)
    if ldm.get("found"):
        return Finding(code, Status.OK, title,
                       f"pytorch_lightning {pl} lacks utilities.distributed.rank_zero_only, but the ldm code at "
                       f"{ldm['path']} does not import it from there.", evidence=evidence)
    return Finding(code, Status.WARN, title,
                   f"pytorch_lightning {pl} lacks utilities.distributed.rank_zero_only, which CompVis/Stability "
                   "ldm imports; ldm was not found to confirm (pass --code-root).",
                   evidence=evidence, cause=cause, fix=fix, docs=docs)


def rule_transformers_position_ids(versions: Versions) -> Finding:
    code, title = "compat.transformers-position-ids", "transformers vs checkpoint position_ids"
    tv = versions.get("transformers")
    if not tv:
        return skip(code, title, "transformers is not installed.")
    if not version_at_least(tv, "4.31"):
        return Finding(code, Status.OK, title,
                       f"transformers {tv} keeps `embeddings.position_ids` in the CLIP state dict, as SD 1.x "
                       "checkpoints expect.", evidence={"transformers": tv})
    return Finding(
        code, Status.INFO, title,
        f"transformers {tv} (>= 4.31) no longer has `text_model.embeddings.position_ids` in CLIPTextModel's "
        "state dict; SD 1.x checkpoints carry it, so strict loads fail with an unexpected key.",
        evidence={"transformers": tv, "boundary": "4.31.0"},
        cause="transformers 4.31.0 registered CLIPTextEmbeddings.position_ids with persistent=False.",
        fix="ldm's own loader uses strict=False, where this is one harmless 'unexpected key'. For strict loads "
            "drop `cond_stage_model.transformer.text_model.embeddings.position_ids` from the state dict first, "
            "or pin `transformers<=4.30.2`.",
        docs=["https://github.com/kohya-ss/sd-scripts/pull/687"],
    )


def rule_torch_weights_only_default(versions: Versions, environ: Mapping[str, str]) -> Finding:
    code, title = "compat.torch-weights-only-default", "torch.load weights_only default"
    tv = versions.get("torch")
    if not tv:
        return skip(code, title, "torch is not installed.")
    if not version_at_least(tv, "2.6"):
        return Finding(code, Status.OK, title, f"torch {tv} still defaults to weights_only=False in torch.load.",
                       evidence={"torch": tv})
    forced = environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "").lower() in ("1", "true", "yes", "on")
    evidence = {"torch": tv, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "set" if forced else "unset"}
    if forced:
        return Finding(code, Status.INFO, title,
                       f"torch {tv} defaults to weights_only=True, but TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set, "
                       "so calls without weights_only= unpickle arbitrary code.", evidence=evidence,
                       fix="Only load checkpoints you trust, or convert them to safetensors.")
    return Finding(
        code, Status.WARN, title,
        f"torch {tv} (>= 2.6) defaults to torch.load(weights_only=True), which refuses original SD .ckpt files "
        "that pickle pytorch_lightning's ModelCheckpoint.",
        evidence=evidence,
        cause="torch 2.6 flipped the default; ldm calls `torch.load(ckpt, map_location='cpu')` without weights_only.",
        fix="Convert the checkpoint to safetensors or a plain state dict; or, for a file you trust, "
            "`torch.serialization.add_safe_globals([...])` / `torch.load(..., weights_only=False)`. "
            "The checkpoint check says whether your file is affected.",
        docs=["https://pytorch.org/docs/stable/notes/serialization.html#weights-only"],
    )


def rule_numpy2_abi(versions: Versions) -> Finding:
    code, title = "compat.numpy2-abi", "numpy vs torch ABI"
    nv, tv = versions.get("numpy"), versions.get("torch")
    if not nv or not tv:
        return skip(code, title, "numpy or torch is not installed.")
    evidence = {"numpy": nv, "torch": tv}
    if version_at_least(nv, "2") and version_at_least(tv, "2.3") is False:
        return Finding(
            code, Status.FAIL, title,
            f"numpy {nv} with torch {tv}: torch releases before 2.3 were built against NumPy 1 and fail with "
            "'A module that was compiled using NumPy 1.x cannot be run in NumPy 2'.",
            evidence=evidence,
            cause="NumPy 2 changed the C ABI; torch < 2.3 (and extensions of that era) cannot use it.",
            fix="`pip install 'numpy<2'`",
            docs=["https://github.com/pytorch/pytorch/issues/107302"],
        )
    return Finding(code, Status.OK, title, f"numpy {nv} works with torch {tv}.", evidence=evidence)


# diffusers releases that still import huggingface_hub.cached_download (verified 0.14.0-0.28.2).
_DIFFUSERS_CACHED_DOWNLOAD_LAST = "0.28.2"


def rule_hub_cached_download(versions: Versions, hub_requirements: List[Dict[str, str]]) -> Finding:
    """`hub_requirements`: installed dists whose declared huggingface-hub range excludes the installed one."""
    code, title = "compat.hub-cached-download", "huggingface_hub vs its users"
    hub = versions.get("huggingface_hub")
    if not hub:
        return skip(code, title, "huggingface_hub is not installed.")
    problems = []
    diffusers = versions.get("diffusers")
    if diffusers and version_at_least(hub, "0.26") and not version_at_least(diffusers, "0.28.3"):
        problems.append(f"diffusers {diffusers} imports `cached_download`, removed in huggingface_hub 0.26.0")
    tv = versions.get("transformers")
    if tv and version_at_least(hub, "1.0") and not version_at_least(tv, "4.22"):
        problems.append(f"transformers {tv} imports `HfFolder`/`Repository`, which huggingface_hub {hub} lacks")
    declared = [f"{r['dist']} {r['version']} requires huggingface-hub{r['spec']}" for r in hub_requirements]
    evidence = {"huggingface_hub": hub, "diffusers": diffusers, "transformers": tv, "declared_conflicts": hub_requirements}
    fix = ("Reinstall within the declared bounds, e.g. `pip install 'huggingface_hub<0.26'`, or upgrade the "
           "packages that use it (diffusers >= 0.29, transformers >= 4.22).")
    cause = ("huggingface_hub was upgraded past what older diffusers/transformers were written for "
             "(often by `pip install -U` or an install with --no-deps).")
    docs = ["https://github.com/huggingface/huggingface_hub/releases/tag/v0.26.0"]
    if problems:
        return Finding(code, Status.FAIL, title, "; ".join(problems + declared) + ": importing them raises ImportError.",
                       evidence=evidence, cause=cause, fix=fix, docs=docs)
    if declared:
        return Finding(code, Status.WARN, title,
                       "; ".join(declared) + f", but {hub} is installed: those packages may fail at import or run time.",
                       evidence=evidence, cause=cause, fix=fix, docs=docs)
    return Finding(code, Status.OK, title, f"huggingface_hub {hub} satisfies the installed packages that use it.",
                   evidence=evidence)


def rule_tokenizer_silent_empty(versions: Versions) -> Finding:
    code, title = "compat.tokenizer-silent-empty", "transformers 5 tokenizer fallback"
    tv = versions.get("transformers")
    if not tv:
        return skip(code, title, "transformers is not installed.")
    if not version_at_least(tv, "5"):
        return Finding(code, Status.OK, title,
                       f"transformers {tv} raises OSError when tokenizer files are missing.", evidence={"transformers": tv})
    return Finding(
        code, Status.INFO, title,
        f"transformers {tv}: when tokenizer files are missing, CLIPTokenizer.from_pretrained returns a 2-token "
        "tokenizer instead of raising; prompts then encode to [0, 2, 2, ...] and images ignore the prompt.",
        evidence={"transformers": tv},
        cause="transformers 5 builds an empty tokenizer when no vocabulary file resolves.",
        fix="Rely on the tokenizer.functional check (vocabulary 49408, 'a photo of a dog' -> 7 ids), "
            "not on the absence of an exception.",
    )


def rule_xformers_missing(versions: Versions) -> Finding:
    code, title = "compat.xformers-missing", "xformers"
    xv = versions.get("xformers")
    if xv:
        return Finding(code, Status.OK, title, f"xformers {xv} is installed.", evidence={"xformers": xv})
    return Finding(
        code, Status.INFO, title,
        "xformers is not installed: ldm prints \"No module 'xformers'. Proceeding without it.\" and uses "
        "plain attention (more GPU memory, slower); harmless on CPU.",
        evidence={"xformers": None},
        fix="Optional: install the xformers wheel built for your torch and CUDA version.",
    )


def hub_requirement_conflicts() -> List[Dict[str, str]]:
    """Installed distributions whose declared huggingface-hub requirement excludes the installed version
    (the `pip check` idea, limited to the package this area is about)."""
    from packaging.requirements import InvalidRequirement, Requirement

    from ..probes.environment import _metadata

    md = _metadata()
    try:
        hub = md.version("huggingface_hub")
    except Exception:
        return []
    conflicts = []
    seen = set()
    for dist in md.distributions():
        try:
            name = dist.metadata["Name"]
            reqs = dist.requires or []
        except Exception:
            continue
        if not name or name.lower() in seen:
            continue
        seen.add(name.lower())
        for raw in reqs:
            try:
                req = Requirement(raw)
            except InvalidRequirement:
                continue
            if req.name.lower().replace("_", "-") != "huggingface-hub" or req.marker is not None and "extra" in str(req.marker):
                continue
            if req.specifier and not req.specifier.contains(hub, prereleases=True):
                conflicts.append({"dist": name, "version": dist.version, "spec": str(req.specifier)})
    return conflicts


_versions = installed_versions


CHECKS: List[Check] = [
    Check("compat.pl-rank-zero-only", "pytorch_lightning vs ldm's rank_zero_only import",
          lambda ctx: [rule_pl_rank_zero_only(_versions(ctx), ctx.fact("ldm", probe_ldm))]),
    Check("compat.transformers-position-ids", "transformers vs checkpoint position_ids",
          lambda ctx: [rule_transformers_position_ids(_versions(ctx))]),
    Check("compat.torch-weights-only-default", "torch.load weights_only default",
          lambda ctx: [rule_torch_weights_only_default(_versions(ctx), ctx.environ)]),
    Check("compat.numpy2-abi", "numpy vs torch ABI", lambda ctx: [rule_numpy2_abi(_versions(ctx))]),
    Check("compat.hub-cached-download", "huggingface_hub vs its users",
          lambda ctx: [rule_hub_cached_download(_versions(ctx), ctx.fact("hub_requirements", lambda _: hub_requirement_conflicts()))]),
    Check("compat.tokenizer-silent-empty", "transformers 5 tokenizer fallback",
          lambda ctx: [rule_tokenizer_silent_empty(_versions(ctx))]),
    Check("compat.xformers-missing", "xformers", lambda ctx: [rule_xformers_missing(_versions(ctx))]),
]
