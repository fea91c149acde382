"""Known version incompatibilities of the LDM stack, decided from installed versions alone.

Each rule takes the package-version dict (label → version or None) and whatever else it needs as
plain data, so both sides of every version boundary are tested with hand-made facts. Boundaries
are those verified in wheels (knowledge base K03, K05, K06, K10, K16, K17, K19, K23).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

from ..findings import Finding, Status, verdict
from ..registry import Check, Precondition
from ..util import parse_version, version_at_least

Versions = Mapping[str, Optional[str]]


def rule_pl_rank_zero_only(versions: Versions, ldm: Dict[str, Any]) -> Finding:
    lightning = versions["pytorch_lightning"]
    parsed = parse_version(lightning)
    broken = parsed is not None and (parsed.release[:3] == (1, 8, 0) or parsed.release >= (2,))
    imports = ldm.get("rank_zero_only_import") or []
    evidence = {"pytorch_lightning": lightning, "ldm_path": ldm.get("path"), "imports": imports}
    if not broken:
        return verdict(Status.OK, f"pytorch_lightning {lightning} still provides pytorch_lightning.utilities.distributed.rank_zero_only.",
                       evidence=evidence)
    cause = (f"pytorch_lightning {lightning} no longer has `rank_zero_only` in `pytorch_lightning.utilities.distributed` "
             "(dropped in 1.8.0, shimmed in 1.8.1-1.9.x, removed in 2.0.0); the CompVis/Stability "
             "`ldm/models/diffusion/ddpm.py` imports it from there.")
    fix = ("Pin Lightning to a version that has it: `pip install 'pytorch-lightning<2,!=1.8.0'` "
           "(the original environment uses 1.4.2), or change the import in ldm/models/diffusion/ddpm.py to "
           "`from pytorch_lightning.utilities import rank_zero_only`.")
    docs = ["https://github.com/Lightning-AI/pytorch-lightning/issues/15509"]
    if imports:
        where = f"{imports[0]['file']}:{imports[0]['line']}"
        return verdict(Status.FAIL, f"`import ldm.models.diffusion.ddpm` will raise ImportError: {where} imports rank_zero_only "
                       f"from pytorch_lightning.utilities.distributed, which {lightning} lacks.",
                       evidence=evidence, cause=cause, fix=fix, docs=docs)
    if ldm.get("found"):
        return verdict(Status.OK, f"pytorch_lightning {lightning} lacks utilities.distributed.rank_zero_only, but the ldm code at "
                       f"{ldm['path']} does not import it from there.", evidence=evidence)
    return verdict(Status.WARN, f"pytorch_lightning {lightning} lacks utilities.distributed.rank_zero_only, which CompVis/Stability "
                   "ldm imports; ldm was not found to confirm (pass --code-root).",
                   evidence=evidence, cause=cause, fix=fix, docs=docs)


def rule_transformers_position_ids(versions: Versions) -> Finding:
    transformers = versions["transformers"]
    if not version_at_least(transformers, "4.31"):
        return verdict(Status.OK, f"transformers {transformers} keeps `embeddings.position_ids` in the CLIP state dict, as SD 1.x "
                       "checkpoints expect.", evidence={"transformers": transformers})
    return verdict(Status.INFO, f"transformers {transformers} (>= 4.31) no longer has `text_model.embeddings.position_ids` in CLIPTextModel's "
        "state dict; SD 1.x checkpoints carry it, so strict loads fail with an unexpected key.",
        evidence={"transformers": transformers, "boundary": "4.31.0"},
        cause="transformers 4.31.0 registered CLIPTextEmbeddings.position_ids with persistent=False.",
        fix="ldm's own loader uses strict=False, where this is one harmless 'unexpected key'. For strict loads "
            "drop `cond_stage_model.transformer.text_model.embeddings.position_ids` from the state dict first, "
            "or pin `transformers<=4.30.2`.",
        docs=["https://github.com/kohya-ss/sd-scripts/pull/687"],
    )


def rule_torch_weights_only_default(versions: Versions, environ: Mapping[str, str]) -> Finding:
    torch = versions["torch"]
    if not version_at_least(torch, "2.6"):
        return verdict(Status.OK, f"torch {torch} still defaults to weights_only=False in torch.load.",
                       evidence={"torch": torch})
    forced = environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "").lower() in ("1", "true", "yes", "on")
    evidence = {"torch": torch, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "set" if forced else "unset"}
    if forced:
        return verdict(Status.INFO, f"torch {torch} defaults to weights_only=True, but TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set, "
                       "so calls without weights_only= unpickle arbitrary code.", evidence=evidence,
                       fix="Only load checkpoints you trust, or convert them to safetensors.")
    return verdict(Status.WARN, f"torch {torch} (>= 2.6) defaults to torch.load(weights_only=True), which refuses original SD .ckpt files "
        "that pickle pytorch_lightning's ModelCheckpoint.",
        evidence=evidence,
        cause="torch 2.6 flipped the default; ldm calls `torch.load(ckpt, map_location='cpu')` without weights_only.",
        fix="Convert the checkpoint to safetensors or a plain state dict; or, for a file you trust, "
            "`torch.serialization.add_safe_globals([...])` / `torch.load(..., weights_only=False)`. "
            "The checkpoint check says whether your file is affected.",
        docs=["https://pytorch.org/docs/stable/notes/serialization.html#weights-only"],
    )


def rule_numpy2_abi(versions: Versions) -> Finding:
    numpy, torch = versions["numpy"], versions["torch"]
    evidence = {"numpy": numpy, "torch": torch}
    if version_at_least(numpy, "2") and version_at_least(torch, "2.3") is False:
        return verdict(Status.FAIL, f"numpy {numpy} with torch {torch}: torch releases before 2.3 were built against NumPy 1 and fail with "
            "'A module that was compiled using NumPy 1.x cannot be run in NumPy 2'.",
            evidence=evidence,
            cause="NumPy 2 changed the C ABI; torch < 2.3 (and extensions of that era) cannot use it.",
            fix="`pip install 'numpy<2'`",
            docs=["https://github.com/pytorch/pytorch/issues/107302"],
        )
    return verdict(Status.OK, f"numpy {numpy} works with torch {torch}.", evidence=evidence)


# diffusers releases that still import huggingface_hub.cached_download (verified 0.14.0-0.28.2).
_DIFFUSERS_CACHED_DOWNLOAD_LAST = "0.28.2"


def rule_hub_cached_download(versions: Versions, hub_requirements: List[Dict[str, str]]) -> Finding:
    """`hub_requirements`: installed dists whose declared huggingface-hub range excludes the installed one."""
    hub = versions["huggingface_hub"]
    problems = []
    diffusers = versions.get("diffusers")
    if diffusers and version_at_least(hub, "0.26") and not version_at_least(diffusers, "0.28.3"):
        problems.append(f"diffusers {diffusers} imports `cached_download`, removed in huggingface_hub 0.26.0")
    transformers = versions.get("transformers")
    if transformers and version_at_least(hub, "1.0") and not version_at_least(transformers, "4.22"):
        problems.append(f"transformers {transformers} imports `HfFolder`/`Repository`, which huggingface_hub {hub} lacks")
    declared = [f"{r['dist']} {r['version']} requires huggingface-hub{r['spec']}" for r in hub_requirements]
    evidence = {"huggingface_hub": hub, "diffusers": diffusers, "transformers": transformers, "declared_conflicts": hub_requirements}
    fix = ("Reinstall within the declared bounds, e.g. `pip install 'huggingface_hub<0.26'`, or upgrade the "
           "packages that use it (diffusers >= 0.29, transformers >= 4.22).")
    cause = ("huggingface_hub was upgraded past what older diffusers/transformers were written for "
             "(often by `pip install -U` or an install with --no-deps).")
    docs = ["https://github.com/huggingface/huggingface_hub/releases/tag/v0.26.0"]
    if problems:
        return verdict(Status.FAIL, "; ".join(problems + declared) + ": importing them raises ImportError.",
                       evidence=evidence, cause=cause, fix=fix, docs=docs)
    if declared:
        return verdict(Status.WARN, "; ".join(declared) + f", but {hub} is installed: those packages may fail at import or run time.",
                       evidence=evidence, cause=cause, fix=fix, docs=docs)
    return verdict(Status.OK, f"huggingface_hub {hub} satisfies the installed packages that use it.",
                   evidence=evidence)


def rule_tokenizer_silent_empty(versions: Versions) -> Finding:
    transformers = versions["transformers"]
    if not version_at_least(transformers, "5"):
        return verdict(Status.OK, f"transformers {transformers} raises OSError when tokenizer files are missing.", evidence={"transformers": transformers})
    return verdict(Status.INFO, f"transformers {transformers}: when tokenizer files are missing, CLIPTokenizer.from_pretrained returns a 2-token "
        "tokenizer instead of raising; prompts then encode to [0, 2, 2, ...] and images ignore the prompt.",
        evidence={"transformers": transformers},
        cause="transformers 5 builds an empty tokenizer when no vocabulary file resolves.",
        fix="Rely on the tokenizer.functional check (vocabulary 49408, 'a photo of a dog' -> 7 ids), "
            "not on the absence of an exception.",
    )


def rule_xformers_missing(versions: Versions) -> Finding:
    xformers = versions.get("xformers")
    if xformers:
        return verdict(Status.OK, f"xformers {xformers} is installed.", evidence={"xformers": xformers})
    return verdict(Status.INFO, "xformers is not installed: ldm prints \"No module 'xformers'. Proceeding without it.\" and uses "
        "plain attention (more GPU memory, slower); harmless on CPU.",
        evidence={"xformers": None},
        fix="Optional: install the xformers wheel built for your torch and CUDA version.",
    )


# open_clip releases measured in their wheels: the ViT-H-14 config SD 2.x builds first ships in 1.1.1
# (1.0.1 lacks model_configs/ViT-H-14.json); the text transformer defaults to batch_first=True from
# 2.26.1 (2.24.0 has no batch_first; 2.25 was never released; open_clip PR #906).
OPEN_CLIP_FIRST_WITH_VIT_H = "1.1"
OPEN_CLIP_FIRST_BATCH_FIRST = "2.26"
OPEN_CLIP_EMBEDDER = "FrozenOpenCLIPEmbedder"


def _cond_stage_target(ldm_config: Mapping[str, Any]) -> Optional[str]:
    summary = ldm_config.get("summary") or {}
    return (summary.get("cond_stage_config") or {}).get("target")


def rule_open_clip_version(versions: Versions, ldm_config: Mapping[str, Any]) -> Finding:
    open_clip = versions.get("open_clip_torch")
    target = _cond_stage_target(ldm_config) if ldm_config.get("loaded") else None
    uses_open_clip = bool(target) and target.rsplit(".", 1)[-1] == OPEN_CLIP_EMBEDDER
    evidence = {"open_clip_torch": open_clip, "cond_stage_target": target,
                "boundaries": {"vit_h_14_config_from": "1.1.1", "batch_first_transformer_from": "2.26.1"}}
    if ldm_config.get("loaded") and not uses_open_clip:
        return verdict(Status.OK, f"The config's text encoder ({target or 'none'}) does not use open_clip.",
                       evidence=evidence)
    pin = ("Pin open_clip to a release Stability's code runs with: `pip install open-clip-torch==2.7.0` (the "
           "version in Stability-AI/stablediffusion's requirements.txt; any release from 1.1.1 to 2.24.0 works).")
    if not open_clip:
        if uses_open_clip:
            return verdict(Status.FAIL, f"The config's text encoder is {target}, but open_clip is not installed: "
                           "building the model raises ModuleNotFoundError: No module named 'open_clip'.",
                           evidence=evidence, cause="SD 2.x encodes prompts with OpenCLIP ViT-H-14 from open_clip.",
                           fix=pin)
        return verdict(Status.SKIP, "open_clip is not installed; only SD 2.x's FrozenOpenCLIPEmbedder uses it.",
                       evidence=evidence)
    too_old = not version_at_least(open_clip, OPEN_CLIP_FIRST_WITH_VIT_H)
    too_new = bool(version_at_least(open_clip, OPEN_CLIP_FIRST_BATCH_FIRST))
    if not (too_old or too_new):
        return verdict(Status.OK, f"open_clip {open_clip} has the ViT-H-14 config and runs its text transformer "
                       "sequence-first, as FrozenOpenCLIPEmbedder expects.", evidence=evidence)
    if too_new:
        effect = (f"open_clip {open_clip} runs its text transformer batch-first, while FrozenOpenCLIPEmbedder permutes "
                  "the tokens to sequence-first before calling it: encoding a prompt raises 'RuntimeError: The shape "
                  "of the 2D attn_mask is torch.Size([77, 77]), but should be (N, N)'.")
        cause = ("open_clip 2.26 made its transformer batch-first (open_clip PR #906); Stability's "
                 "FrozenOpenCLIPEmbedder.text_transformer_forward still does `x.permute(1, 0, 2)` around the "
                 "resblocks.")
        fix = pin + " With a newer open_clip, set `model.transformer.batch_first = False` after creating it."
    else:
        effect = (f"open_clip {open_clip} has no ViT-H-14 model config: building the model raises "
                  "'RuntimeError: Model config for ViT-H-14 not found'.")
        cause = "FrozenOpenCLIPEmbedder builds ViT-H-14, whose config open_clip ships from 1.1.1."
        fix = pin
    if uses_open_clip:
        return verdict(Status.FAIL, f"The config's text encoder is {OPEN_CLIP_EMBEDDER}: " + effect,
                       evidence=evidence, cause=cause, fix=fix,
                       docs=["https://github.com/mlfoundations/open_clip/issues/910"])
    return verdict(Status.WARN, effect + " This matters for SD 2.x configs (no --config given to tell).",
                   evidence=evidence, cause=cause, fix=fix,
                   docs=["https://github.com/mlfoundations/open_clip/issues/910"])


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


def hub_requirement_conflicts_of(ctx) -> List[Dict[str, str]]:
    """The `hub_requirements` fact (it reads this interpreter's metadata, not the context)."""
    return hub_requirement_conflicts()


def installed(*labels: str, reason: str = "") -> Precondition:
    """The packages a rule is about are installed (labels of `probes.environment.LDM_STACK`)."""
    text = reason or f"{' or '.join(labels)} is not installed."
    return Precondition(f"{' and '.join(labels)} installed", ("versions",),
                        lambda versions: None if all(versions.get(label) for label in labels) else text)


CHECKS: List[Check] = [
    Check("compat.pl-rank-zero-only", "pytorch_lightning vs ldm's rank_zero_only import", rule_pl_rank_zero_only,
          reads=("versions", "ldm"),
          requires=(installed("pytorch_lightning",
                              reason="pytorch_lightning is not installed; the model import check reports what that breaks."),)),
    Check("compat.transformers-position-ids", "transformers vs checkpoint position_ids", rule_transformers_position_ids,
          reads=("versions",), requires=(installed("transformers"),)),
    Check("compat.torch-weights-only-default", "torch.load weights_only default", rule_torch_weights_only_default,
          reads=("versions", "environ"), requires=(installed("torch"),)),
    Check("compat.numpy2-abi", "numpy vs torch ABI", rule_numpy2_abi, reads=("versions",),
          requires=(installed("numpy", "torch"),)),
    Check("compat.hub-cached-download", "huggingface_hub vs its users", rule_hub_cached_download,
          reads=("versions", "hub_requirements"), requires=(installed("huggingface_hub"),)),
    Check("compat.tokenizer-silent-empty", "transformers 5 tokenizer fallback", rule_tokenizer_silent_empty,
          reads=("versions",), requires=(installed("transformers"),)),
    Check("compat.open-clip-version", "open_clip vs SD 2.x's FrozenOpenCLIPEmbedder", rule_open_clip_version,
          reads=("versions", "ldm_config")),
    Check("compat.xformers-missing", "xformers", rule_xformers_missing, reads=("versions",)),
]
