"""Which Hugging Face models the deployment will load, and which files each loader reads.

Read from the LDM yaml config when one is given (`cond_stage_config` of FrozenCLIPEmbedder,
FrozenOpenCLIPEmbedder, the T5/BERT embedders, and any other `version` /
`pretrained_model_name_or_path` value that names a model), plus every `--model-id`. Without a
config the default of ldm's FrozenCLIPEmbedder (`openai/clip-vit-large-patch14`) is assumed, and the
facts say so. The config is read as data (PyYAML when installed, else a small reader for the subset
LDM configs use); nothing of the user's code is imported.

A model is described by file *groups*: a group is satisfied when any one of its names is present
(e.g. the text-encoder weights are `model.safetensors` or `pytorch_model.bin`). Required groups
decide whether loading works; optional groups are fetched when they exist (tokenizer.json).

The fact is typed: `NeededModels` holds a tuple of `NeededModel` records, and `to_dict()` gives the
JSON the report has always written. A `NeededModel` also reads as that JSON mapping
(`model["ref"]`), the form the cache resolver and the `provision-clip` remedy share with it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ..context import DEFAULT_CLIP_ID
from ..util import version_at_least
from .fact_record import UNSET, FactRecord, jsonable

FROZEN_CLIP = "FrozenCLIPEmbedder"
FROZEN_OPENCLIP = "FrozenOpenCLIPEmbedder"
DEFAULT_OPENCLIP_ARCH = "ViT-H-14"
DEFAULT_OPENCLIP_TAG = "laion2b_s32b_b79k"

# open_clip (arch, pretrained tag) -> Hub repo its `pretrained=` download comes from. The weights
# are fetched with huggingface_hub into the hub cache (open_clip >= 2.0).
OPENCLIP_HUB_REPOS: Dict[Tuple[str, str], str] = {
    ("ViT-H-14", "laion2b_s32b_b79k"): "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
    ("ViT-L-14", "laion2b_s32b_b82k"): "laion/CLIP-ViT-L-14-laion2B-s32B-b82K",
    ("ViT-bigG-14", "laion2b_s39b_b160k"): "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k",
    ("ViT-g-14", "laion2b_s12b_b42k"): "laion/CLIP-ViT-g-14-laion2B-s12B-b42K",
}

# Approximate sizes (bytes) of the files of well-known repos, for the disk-space estimate when the
# Hub cannot be asked (the Hub's X-Linked-Size / Content-Length win when it answers).
KNOWN_SIZES: Dict[str, Dict[str, int]] = {
    DEFAULT_CLIP_ID: {
        "config.json": 4519,
        "vocab.json": 961143,
        "merges.txt": 524619,
        "tokenizer.json": 2224003,
        "tokenizer_config.json": 905,
        "special_tokens_map.json": 389,
        "pytorch_model.bin": 1710671599,
        "model.safetensors": 1710540580,
    },
    "laion/CLIP-ViT-H-14-laion2B-s32B-b79K": {
        "open_clip_pytorch_model.bin": 3944692325,
        "open_clip_model.safetensors": 3944517836,
    },
}

# Keys whose string values name a model in LDM-style configs.
MODEL_KEYS = ("version", "pretrained_model_name_or_path", "clip_version", "t5_version")

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


def _group(purpose: str, names: List[str], required: bool = True) -> Dict[str, Any]:
    return {"purpose": purpose, "names": list(names), "required": required}


def transformers_weight_names(versions: Mapping[str, Optional[str]]) -> List[str]:
    """Weight files `from_pretrained` accepts, preferred first, for the installed transformers."""
    tv = versions.get("transformers")
    if tv and version_at_least(tv, "4.22") is False:
        return ["pytorch_model.bin"]  # transformers 4.19-4.21 (the SD environment) read only .bin
    if versions.get("safetensors"):
        return ["model.safetensors", "pytorch_model.bin"]
    return ["pytorch_model.bin", "model.safetensors"]


def clip_text_groups(versions: Mapping[str, Optional[str]]) -> List[Dict[str, Any]]:
    """What CLIPTokenizer + CLIPTextModel.from_pretrained(<id>) read."""
    return [
        _group("tokenizer vocabulary", ["vocab.json"]),
        _group("tokenizer merges", ["merges.txt"]),
        _group("tokenizer settings", ["tokenizer_config.json"], required=False),
        _group("tokenizer special tokens", ["special_tokens_map.json"], required=False),
        _group("fast tokenizer", ["tokenizer.json"], required=False),
        _group("text encoder config", ["config.json"]),
        _group("text encoder weights", transformers_weight_names(versions)),
    ]


def openclip_groups() -> List[Dict[str, Any]]:
    return [_group("open_clip weights", ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"])]


def bert_tokenizer_groups() -> List[Dict[str, Any]]:
    """CompVis LDM's BERTTokenizer: BertTokenizerFast.from_pretrained("bert-base-uncased")."""
    return [
        _group("tokenizer vocabulary", ["vocab.txt"]),
        _group("fast tokenizer", ["tokenizer.json"], required=False),
        _group("tokenizer settings", ["tokenizer_config.json"], required=False),
        _group("model config", ["config.json"], required=False),
    ]


def generic_groups(versions: Mapping[str, Optional[str]]) -> List[Dict[str, Any]]:
    return [_group("model config", ["config.json"]), _group("model weights", transformers_weight_names(versions))]


def looks_like_path(ref: str) -> bool:
    """A value transformers can only read as a path (never a Hub id)."""
    if ref in (".", "..") or ref.startswith(("/", "./", "../", "~", ".\\", "..\\")) or "\\" in ref:
        return True
    if re.match(r"^[A-Za-z]:[\\/]", ref):  # Windows drive
        return True
    if ref.count("/") > 1:
        return True
    return ref.endswith((".bin", ".pt", ".pth", ".safetensors", ".ckpt"))


def is_repo_id(ref: str) -> bool:
    return bool(_REPO_ID.match(ref)) and not looks_like_path(ref)


@dataclass(frozen=True, eq=False)
class NeededModel(FactRecord):
    """One model the deployment loads, and the files its loader reads.

    `kind` is what the loader will do with `ref`:
    - "local": a path, or an id that names an existing directory relative to the working directory
      (transformers then never looks at the cache or the Hub: the seed's shadowing trap);
    - "hub": a repo id resolved through the cache / the Hub;
    - "unknown": an open_clip model whose Hub repo is not known (`note` says so).
    """

    ref: str  # the value the loader gets (a repo id or a path)
    loader: str  # FrozenCLIPEmbedder, FrozenOpenCLIPEmbedder, from_pretrained, --model-id, ...
    via: str  # where the value comes from (the config key, a default, an option)
    groups: List[Dict[str, Any]]  # {"purpose", "names", "required"}: the files, any name of a group will do
    cache_user: str = "transformers"  # the library whose cache the files are read from
    tokenizer_check: Optional[str] = None  # "clip": the CLIP tokenizer check loads it
    config_key: Optional[str] = None  # the dotted config key to change in a fix
    repo_id: Optional[str] = None
    path: Optional[str] = None  # the directory, for a local model
    kind: str = "hub"
    shadowed: bool = False  # a repo id that a directory of the working directory turns into a path
    note: Any = UNSET  # kind "unknown": why the files cannot be told
    openclip: Any = UNSET  # open_clip models: {"arch", "pretrained"}


@dataclass(frozen=True)
class NeededModels:
    """The `needed_models` fact: the models of the config (or the assumed default) plus `--model-id`s."""

    config: Optional[str]  # the config path, None without --config
    config_error: Optional[str] = None  # why the config could not be read
    parser: Optional[str] = None  # the yaml reader used: omegaconf, yaml, builtin, none
    assumed_default: bool = False  # FrozenCLIPEmbedder's default was assumed (no config, or unreadable)
    models: Tuple[NeededModel, ...] = ()

    def to_dict(self) -> Dict[str, Any]:
        return {"config": self.config, "config_error": self.config_error, "parser": self.parser,
                "assumed_default": self.assumed_default, "models": [jsonable(model) for model in self.models]}


def model_entry(ref: str, loader: str, via: str, groups: List[Dict[str, Any]], cwd: Path,
                cache_user: str = "transformers", tokenizer_check: Optional[str] = None,
                config_key: Optional[str] = None) -> NeededModel:
    """One needed model, its `kind` decided from `ref` and the working directory (see `NeededModel`)."""
    expanded = os.path.expanduser(ref)
    local = Path(expanded) if os.path.isabs(expanded) else Path(cwd) / expanded
    where: Dict[str, Any] = {"repo_id": ref}
    if looks_like_path(ref):
        where = {"kind": "local", "path": str(local), "repo_id": None}
    elif local.is_dir():
        where = {"kind": "local", "path": str(local), "repo_id": ref, "shadowed": True}
    return NeededModel(ref=ref, loader=loader, via=via, groups=groups, cache_user=cache_user,
                       tokenizer_check=tokenizer_check, config_key=config_key, **where)


# -- reading the config --------------------------------------------------------------------------

def _scalar(text: str) -> Any:
    text = text.strip()
    if not text:
        return None
    if text[0] in "\"'" and text[-1] == text[0] and len(text) >= 2:
        return text[1:-1]
    if text.startswith(("[", "{")):
        return text  # flow collections are not needed for model references
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("null", "~"):
        return None
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def parse_yaml_subset(text: str) -> Dict[str, Any]:
    """Block mappings and scalars, the part of YAML that LDM configs use for their model settings.

    Lists are skipped (their items are not model references in LDM configs). Used only when PyYAML
    is not installed.
    """
    root: Dict[str, Any] = {}
    stack: List[Tuple[int, Dict[str, Any]]] = [(-1, root)]
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip() or line.strip() in ("---", "..."):
            continue
        indent = len(line) - len(line.lstrip(" "))
        body = line.strip()
        if body.startswith("- "):
            continue
        key, sep, rest = body.partition(":")
        if not sep:
            continue
        key = key.strip().strip("\"'")
        while stack and indent <= stack[-1][0]:
            stack.pop()
        parent = stack[-1][1] if stack else root
        if rest.strip() in ("", "|", ">"):
            child: Dict[str, Any] = {}
            parent[key] = child
            stack.append((indent, child))
        else:
            parent[key] = _scalar(rest)
    return root


def load_config(path: str) -> Tuple[Optional[Dict[str, Any]], Optional[str], str]:
    """(data, error, parser). Never raises. The yaml is read as the config check reads it
    (`ldm_config.load_yaml`); only where neither omegaconf nor PyYAML is installed does the
    lenient subset reader above take over."""
    from .ldm_config import load_yaml

    parsed = load_yaml(Path(path))
    error = parsed.get("error")
    if error and error.get("kind") == "missing-reader":
        return parse_yaml_subset(parsed.get("text") or ""), None, "builtin"
    if error:
        where = f" (line {error['line']})" if error.get("line") else ""
        return None, f"{error.get('type')}: {error.get('message')}{where}", parsed.get("reader") or "none"
    if not isinstance(parsed.get("data"), dict):
        return None, "the config is not a mapping", parsed.get("reader") or "none"
    return parsed["data"], None, parsed.get("reader") or "none"


def _walk(node: Any, prefix: str = ""):
    """(dotted key, value) for every mapping entry in the tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            dotted = f"{prefix}.{key}" if prefix else str(key)
            yield dotted, value
            yield from _walk(value, dotted)


def _cond_stage(config: Dict[str, Any]) -> Tuple[Optional[str], Optional[Dict[str, Any]]]:
    for key, value in _walk(config):
        if key.split(".")[-1] == "cond_stage_config":
            return key, value if isinstance(value, dict) else {"target": value}
    return None, None


def models_from_config(config: Dict[str, Any], versions: Mapping[str, Optional[str]], cwd: Path) -> List[NeededModel]:
    models: List[NeededModel] = []
    handled_keys = set()
    cs_key, cs = _cond_stage(config)
    if cs is not None:
        target = str(cs.get("target") or "")
        params = cs.get("params") if isinstance(cs.get("params"), dict) else {}
        cls = target.rsplit(".", 1)[-1]
        where = f"{cs_key}.params"
        if cls == FROZEN_CLIP:
            version = params.get("version")
            via = f"{where}.version" if version else f"default of {FROZEN_CLIP} ({cs_key} sets no version)"
            models.append(model_entry(str(version or DEFAULT_CLIP_ID), FROZEN_CLIP, via, clip_text_groups(versions),
                                      cwd, tokenizer_check="clip", config_key=f"{where}.version"))
            handled_keys.add(f"{where}.version")
        elif cls in (FROZEN_OPENCLIP, "FrozenOpenCLIPImageEmbedder"):
            arch = str(params.get("arch") or DEFAULT_OPENCLIP_ARCH)
            tag = str(params.get("version") or DEFAULT_OPENCLIP_TAG)
            handled_keys.update({f"{where}.version", f"{where}.arch"})
            if looks_like_path(tag):
                models.append(model_entry(tag, cls, f"{where}.version (local weights for {arch})", [], cwd,
                                          cache_user="open_clip", config_key=f"{where}.version"))
            else:
                repo = OPENCLIP_HUB_REPOS.get((arch, tag))
                entry = model_entry(repo or f"{arch}/{tag}", cls, f"open_clip pretrained ({arch}, {tag})",
                                    openclip_groups(), cwd, cache_user="huggingface_hub",
                                    config_key=f"{where}.version")
                if repo is None:
                    entry = replace(entry, kind="unknown", repo_id=None,
                                    note=f"ldm-diagnostics does not know which Hub repo open_clip uses for {arch}/{tag}")
                models.append(replace(entry, openclip={"arch": arch, "pretrained": tag}))
        elif cls == "FrozenCLIPT5Encoder":
            clip_v = str(params.get("clip_version") or DEFAULT_CLIP_ID)
            t5_v = str(params.get("t5_version") or "google/t5-v1_1-xl")
            models.append(model_entry(clip_v, cls, f"{where}.clip_version", clip_text_groups(versions), cwd,
                                      tokenizer_check="clip", config_key=f"{where}.clip_version"))
            models.append(model_entry(t5_v, cls, f"{where}.t5_version", generic_groups(versions), cwd,
                                      config_key=f"{where}.t5_version"))
            handled_keys.update({f"{where}.clip_version", f"{where}.t5_version"})
        elif cls == "FrozenT5Embedder":
            t5_v = str(params.get("version") or "google/t5-v1_1-large")
            models.append(model_entry(t5_v, cls, f"{where}.version", generic_groups(versions), cwd,
                                      config_key=f"{where}.version"))
            handled_keys.add(f"{where}.version")
        elif cls == "BERTEmbedder" and params.get("use_tokenizer", True):
            models.append(model_entry("bert-base-uncased", "BERTTokenizer", f"{cs_key} (BERTTokenizer)",
                                      bert_tokenizer_groups(), cwd))
    for key, value in _walk(config):
        leaf = key.split(".")[-1]
        if leaf not in MODEL_KEYS or key in handled_keys or not isinstance(value, str):
            continue
        if not (is_repo_id(value) and "/" in value) and not looks_like_path(value):
            continue  # plain words such as `version: v1` are not model references
        models.append(model_entry(value, "from_pretrained", key, generic_groups(versions), cwd, config_key=key))
    return models


def needed_models(config_path: Optional[str], model_ids: List[str], versions: Mapping[str, Optional[str]],
                  cwd: Path) -> NeededModels:
    config_error: Optional[str] = None
    parser: Optional[str] = None
    models: List[NeededModel] = []
    if config_path:
        data, config_error, parser = load_config(config_path)
        if data is not None:
            models = models_from_config(data, versions, cwd)
    assumed_default = not config_path or bool(config_error)
    if assumed_default:
        why = "no --config given" if not config_path else "the config could not be read"
        models.append(model_entry(DEFAULT_CLIP_ID, FROZEN_CLIP, f"assumed: default of {FROZEN_CLIP} ({why})",
                                  clip_text_groups(versions), cwd, tokenizer_check="clip"))
    for ref in model_ids:
        is_clip = ref.lower().startswith("openai/clip-vit") or "clip-vit" in ref.lower() and looks_like_path(ref)
        groups = clip_text_groups(versions) if is_clip else generic_groups(versions)
        models.append(model_entry(ref, "--model-id", "--model-id", groups, cwd,
                                  tokenizer_check="clip" if is_clip else None))
    seen = set()
    kept: List[NeededModel] = []
    for m in models:
        key = (m.ref, m.loader == FROZEN_OPENCLIP)
        if key not in seen:
            seen.add(key)
            kept.append(m)
    return NeededModels(config=config_path, config_error=config_error, parser=parser,
                        assumed_default=assumed_default, models=tuple(kept))


def probe_needed_models(ctx) -> NeededModels:
    from .environment import probe_environment

    versions = ctx.fact("environment", probe_environment).packages
    return needed_models(ctx.options.config, list(ctx.options.model_ids), versions, ctx.cwd)
