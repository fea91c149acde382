"""The commands that fix the cache.* findings, and the network verdicts they depend on.

Shared by the cache rules, the hub rules and `provision-clip`: the `hf download` line with only the
files the text encoder needs (for the installed huggingface_hub's CLI, or a throw-away venv when it
has none), the offline variable this transformers honours, and the yaml change to a local
`version:` directory.
"""

from __future__ import annotations

import os
import shlex
from typing import Any, Dict, List, Mapping, Optional

from ...context import DEFAULT_CLIP_ID
from ...probes.hub.facts import FileAnswer, HubFacts
from ...probes.needed_models import KNOWN_SIZES
from ...util import version_at_least

Versions = Mapping[str, Optional[str]]


def shell_quote(text: str) -> str:
    return shlex.quote(str(text))


def offline_var(versions: Versions) -> str:
    """The variable that puts the installed transformers in offline mode."""
    transformers_version = versions.get("transformers")
    if transformers_version and version_at_least(transformers_version, "4.22") is False:
        return "TRANSFORMERS_OFFLINE=1"
    return "HF_HUB_OFFLINE=1"


def download_cli(versions: Versions) -> Optional[str]:
    hub = versions.get("huggingface_hub")
    if hub and version_at_least(hub, "0.34"):
        return "hf download"
    if hub and version_at_least(hub, "0.17"):
        return "huggingface-cli download"
    return None


def files_to_fetch(model: Dict[str, Any], hub_files: List[FileAnswer], resolution: Optional[Dict[str, Any]] = None,
                   only_missing: bool = False) -> List[str]:
    """The exact files to download: the preferred name of every group (one weights format only),
    minus files the Hub says do not exist, minus what is cached when `only_missing`."""
    absent = {answer["file"] for answer in hub_files
              if answer.get("model") == model["ref"] and answer.get("outcome") == "file-not-found"}
    satisfied = set()
    if only_missing and resolution:
        satisfied = {group["purpose"] for group in resolution["groups"] if group["satisfied"]}
    names = []
    for group in model["groups"]:
        if group["purpose"] in satisfied:
            continue
        candidates = [name for name in group["names"] if name not in absent]
        if candidates:
            names.append(candidates[0])
    return names


def local_dir_for(model: Dict[str, Any], cwd: str, code_root: Optional[str]) -> str:
    base = code_root or cwd
    name = (model.get("repo_id") or model["ref"]).replace("/", "--")
    return os.path.join(base, "models", name)


def download_command(repo_id: str, files: List[str], versions: Versions, cache_dir: Optional[str] = None,
                     local_dir: Optional[str] = None, force: bool = False, online: bool = False) -> str:
    """One shell command that downloads `files` of `repo_id`. With a huggingface_hub too old for a
    download CLI (the original SD environment has 0.10), a throw-away venv does it: upgrading
    huggingface_hub in place would break transformers 4.19."""
    cli = download_cli(versions)
    args = [repo_id] + files
    if local_dir:
        args += ["--local-dir", local_dir]
    elif cache_dir:
        args += ["--cache-dir", cache_dir]
    if force:
        args.append("--force-download")
    tail = " ".join(shell_quote(arg) for arg in args)
    # `hf download` honours HF_HUB_OFFLINE too: lift it for this one command.
    prefix = "HF_HUB_OFFLINE=0 " if online else ""
    if cli:
        return f"{prefix}{cli} {tail}"
    return (f"python3 -m venv /tmp/hf-download && /tmp/hf-download/bin/pip install -q huggingface_hub "
            f"&& {prefix}/tmp/hf-download/bin/hf download {tail}")


def _yaml_key(model: Dict[str, Any]) -> str:
    return model.get("config_key") or "model.params.cond_stage_config.params.version"


def _yaml_where(config: Optional[str]) -> str:
    return config or "your inference yaml (e.g. configs/stable-diffusion/v1-inference.yaml)"


def yaml_lines(model: Dict[str, Any], local_dir: str) -> str:
    """The nested YAML that sets the model's config key to `local_dir`."""
    parts = _yaml_key(model).split(".")
    lines = []
    for depth, part in enumerate(parts[:-1]):
        lines.append("  " * depth + part + ":")
    lines.append("  " * (len(parts) - 1) + f"{parts[-1]}: {local_dir}")
    return "\n".join(lines)


def yaml_change(model: Dict[str, Any], config: Optional[str], local_dir: str) -> str:
    """One line saying which key to set (for places that show one line), then the YAML block."""
    key = _yaml_key(model)
    return f"in {_yaml_where(config)} set `{key}: {local_dir}`:\n" + yaml_lines(model, local_dir)


def fenced(code: str, lang: str = "bash") -> str:
    return f"```{lang}\n{code}\n```"


def model_fix(model: Dict[str, Any], resolution: Dict[str, Any], versions: Versions, hub_files: List[FileAnswer],
              locations: Dict[str, Any], network_ok: bool, config: Optional[str], cwd: str,
              code_root: Optional[str], offline_on: bool = False) -> str:
    """Commands that make `model` load: fetch into the cache the loader reads (when this machine can
    reach the Hub), or fetch into a directory and point the config at it (air-gapped machines)."""
    files = files_to_fetch(model, hub_files)
    if model["kind"] == "local":
        target = model["path"]
        repo = model.get("repo_id") or _default_repo_for(model)
        if repo:
            return f"Fill the directory:\n{fenced(download_command(repo, files, versions, local_dir=target))}"
        return f"Put the missing files into {target}."
    fetch_here = _fetch_into_cache(model, resolution, versions, files, locations, offline_on)
    elsewhere = _fetch_elsewhere(model, versions, files, config, local_dir_for(model, cwd, code_root))
    offline = offline_var(versions)
    here = (f"Download the missing files into the cache the loader reads:\n{fenced(fetch_here)}"
            if fetch_here else "")
    if fetch_here and network_ok:
        first, *rest = elsewhere
        steps = [f"1. {here}", f"2. Start with `{offline}`, so that nothing waits for the Hub again.",
                 f"Air-gapped alternative: {first[0].lower()}{first[1:]}"] + rest
    elif fetch_here:
        steps = _numbered(elsewhere) + [f"{len(elsewhere) + 1}. Start with `{offline}`.",
                                        f"Or, once this machine reaches the Hub: {here[0].lower()}{here[1:]}"]
    else:
        steps = _numbered(elsewhere) + [f"{len(elsewhere) + 1}. Start with `{offline}`."]
    return "\n".join(steps)


def _numbered(steps: List[str]) -> List[str]:
    return [f"{number}. {step}" for number, step in enumerate(steps, 1)]


def _fetch_into_cache(model: Dict[str, Any], resolution: Dict[str, Any], versions: Versions, files: List[str],
                      locations: Dict[str, Any], offline_on: bool) -> Optional[str]:
    """The command that fills the cache the loader reads, or None when only the loader can (legacy
    cache of a model the tokenizer check does not load)."""
    repo = model["repo_id"]
    layout = resolution.get("layout")
    cache_dir = resolution.get("where")
    if layout == "hub":
        default_dir = os.path.normpath(locations["hub"]["path"])
        other_dir = cache_dir if cache_dir and os.path.normpath(cache_dir) != default_dir else None
        return download_command(repo, files, versions, cache_dir=other_dir, online=offline_on)
    if layout == "legacy" and model.get("tokenizer_check"):
        # The flat cache can only be filled by transformers itself (file names hash the URL and ETag).
        return (("TRANSFORMERS_OFFLINE=0 " if offline_on else "") + "python -c " +
                shell_quote("from transformers import CLIPTokenizer, CLIPTextModel; "
                            f"CLIPTokenizer.from_pretrained('{repo}'); CLIPTextModel.from_pretrained('{repo}')"))
    return None


def _fetch_elsewhere(model: Dict[str, Any], versions: Versions, files: List[str], config: Optional[str],
                     local_dir: str) -> List[str]:
    """Steps: download into a folder on any machine with network, copy it here, point the loader at it."""
    repo = model["repo_id"]
    if model.get("cache_user") == "huggingface_hub" and model.get("openclip"):
        weights = files[0] if files else "open_clip_pytorch_model.bin"
        return [f"On any machine with network, download the weights into a folder:\n"
                f"{fenced(download_command(repo, [weights], versions, local_dir=local_dir))}",
                f"Copy the folder to {local_dir} on this machine, then set "
                f"`{model.get('config_key')}: {os.path.join(local_dir, weights)}` in "
                f"{config or 'the yaml'} (open_clip accepts a file path as `pretrained`)."]
    fetch = ("On any machine with network, download the files into a folder:\n"
             f"{fenced(download_command(repo, files, versions, local_dir=local_dir))}")
    if model.get("loader") == "--model-id":
        return [fetch, f"Copy the folder to {local_dir} on this machine, then load `{local_dir}` instead of "
                       f"`{repo}` in your code."]
    return [fetch, f"Copy the folder to {local_dir} on this machine, then in {_yaml_where(config)} set "
                   f"`{_yaml_key(model)}`:\n{fenced(yaml_lines(model, local_dir), 'yaml')}"]


# The no-download step for SD 1.x's CLIP ViT-L/14 when the checkpoint holds it: written once, used by
# cache.model-missing's fix and by the report's action list.
PROVISION_TEXT = ("No download needed: the SD 1.x checkpoint holds this text encoder. Put it, with CLIP's tokenizer "
                  "files, where FrozenCLIPEmbedder loads it offline (then start with `HF_HUB_OFFLINE=1`):")
PROVISION_PLACEHOLDER = "MODEL.ckpt"


def provision_command(checkpoint: str) -> str:
    quoted = checkpoint if checkpoint == PROVISION_PLACEHOLDER else shell_quote(checkpoint)
    return f"python -m diagnostics provision-clip --checkpoint {quoted} --hf-cache"


def _default_repo_for(model: Dict[str, Any]) -> Optional[str]:
    return DEFAULT_CLIP_ID if model.get("tokenizer_check") == "clip" else None


def network_ok_for(hub: HubFacts, model: Dict[str, Any], resolution: Dict[str, Any]) -> Optional[bool]:
    """Whether the Hub answers for every missing required file of `model` (None: not probed)."""
    if hub.skipped is not None:
        return None
    outcomes = {answer["file"]: answer.get("outcome") for answer in hub.files_of(model["ref"])}
    if not outcomes:
        return False
    for group in resolution["groups"]:
        if not group["required"] or group["satisfied"]:
            continue
        if not any(outcomes.get(name) in ("ok", "redirect") for name in group["names"]):
            return False
    return True


def why_unreachable(hub: HubFacts) -> str:
    """One phrase naming the failing step of the network probe, with its finding code."""
    if hub.skipped is not None:
        return hub.skipped
    endpoint, proxy = hub.endpoint, hub.proxy
    if not endpoint.valid:
        return f"HF_ENDPOINT is not a usable URL (hub.endpoint: {endpoint.error})"
    failed = hub.failed_step()
    if failed:
        step = hub.step(failed)
        if step.get("target") == "proxy" or failed == "tunnel":
            return f"the proxy {proxy.display} from {proxy.variable} fails (hub.proxy: {step.get('error')})"
        return f"{failed} failed for {endpoint.host} (hub.{failed}: {step.get('error')})"
    bad = [answer for answer in hub.files if answer.get("required") and answer.get("outcome") not in ("ok", "redirect")]
    if bad:
        first = bad[0]
        if first.get("status_code"):
            return (f"the Hub answered HTTP {first['status_code']} for {first['file']} "
                    f"(hub.http-status: {first['outcome']})")
        return (f"no usable answer for {first['file']}: {first.get('error') or first['outcome']} "
                f"(hub.http-status: {first['outcome']})")
    if proxy.variable and not proxy.bypassed_by:
        return f"through the proxy in {proxy.variable}"
    return "the Hub did not answer"


def download_size(model: Dict[str, Any], hub_files: List[FileAnswer], resolution: Dict[str, Any]) -> Optional[int]:
    """Bytes still to download for `model` (None when a size is unknown)."""
    names = files_to_fetch(model, hub_files, resolution, only_missing=True)
    sizes = {answer["file"]: answer.get("size") for answer in hub_files}
    known = KNOWN_SIZES.get(model.get("repo_id") or "", {})
    total = 0
    for name in names:
        size = sizes.get(name) or known.get(name)
        if size is None:
            return None
        total += size
    return total
