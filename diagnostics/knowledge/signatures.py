"""The failure-signature knowledge base, as data.

One `Signature` per known failure of CompVis/Stability `ldm` deployments (K01-K33 of the
research notes). Each holds:
- `patterns`: regular expressions searched in the log, each with where it is searched (`scope`),
  the versions whose wording it is (`versions`), and a label for that variant;
- `causes`: what can make it happen, each with the checks (`Need`) that decide on this machine
  whether that cause is true, and the fix for that cause;
- `reproduce`: checks that say whether the failure itself still happens here (e.g. the CLIP
  tokenizer check for K01), independent of the cause;
- the finding codes it points to (every code named in a `Need`), a summary cause, fix and links.

Matching, confirmation and ranking live in `explain.py`; nothing here runs. Patterns are matched
against text with whitespace collapsed to single spaces, so they are written for one line.

Versions: a `versions` value is a tuple of alternatives; each alternative maps a package label (as
in `probes.environment.LDM_STACK`, plus "python") to a PEP 440 specifier, or to "absent" /
"present". The local part of a version (`+cu121`) is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

Versions = Tuple[Dict[str, str], ...]

# How a check's finding status reads for one question; see `Need`.
PROBLEM = ("fail", "warn")  # the check found the problem
PROBLEM_OR_NOTE = ("fail", "warn", "info")  # info counts: e.g. "xformers is not installed" is info


@dataclass(frozen=True)
class Need:
    """One question a cause depends on, answered by a check's finding or by installed versions.

    `codes`: finding codes, any of which can answer (e.g. `hub.dns` or `hub.connect`). A finding
    whose status is in `confirms` says yes, in `refutes` says no; other statuses (skip, error)
    leave it open; a need with neither only records what the check says. When the status alone
    cannot tell (ckpt.clip-position-ids is `ok` both when the key is absent and when it is sane),
    `evidence_key` names a field of the finding's evidence whose value decides first
    (`evidence_confirms` / `evidence_refutes`). `versions`: installed versions that make the answer
    yes (no when they are known and outside), used when no check answers. `required=False` needs
    only add evidence."""

    says: str
    codes: Tuple[str, ...] = ()
    confirms: Tuple[str, ...] = PROBLEM
    refutes: Tuple[str, ...] = ("ok",)
    versions: Versions = ()
    required: bool = True
    evidence_key: str = ""
    evidence_confirms: Tuple[Any, ...] = ()
    evidence_refutes: Tuple[Any, ...] = ()


@dataclass(frozen=True)
class Cause:
    id: str  # e.g. "K01.b"
    title: str
    needs: Tuple[Need, ...]
    fix: str


@dataclass(frozen=True)
class Pattern:
    regex: str
    scope: str = "exception"  # exception (Type: message) | line (any log line or warning) | any
    label: str = ""  # which wording this is, e.g. "transformers 4.19-4.4x"
    versions: Versions = ()  # versions that print this wording (informational)
    frames: str = ""  # regex that must match a frame (file, function or code) of the same traceback
    blocking: bool = True  # False for wordings that only warn (deprecations, fallbacks)
    # A catch-all wording raised on top of the real error (`raise ... from e`, or while handling it):
    # when the same traceback also shows a known error further up its chain, that one explains the
    # failure. E.g. huggingface_hub < 1.0 turns a 401 into LocalEntryNotFoundError ("check your
    # connection"), and transformers 4.x turns a GatedRepoError into "is not a valid model identifier".
    wrapper: bool = False


@dataclass(frozen=True)
class Signature:
    id: str  # K01..
    slug: str
    title: str
    patterns: Tuple[Pattern, ...]
    cause: str
    fix: str
    causes: Tuple[Cause, ...] = ()
    reproduce: Tuple[Need, ...] = ()
    context: Tuple[str, ...] = ()  # codes shown as background (never decide)
    links: Tuple[str, ...] = ()
    blocking: bool = True

    @property
    def codes(self) -> List[str]:
        """Every finding code this signature points to, in the order they are asked."""
        seen: List[str] = []
        for need in list(self.reproduce) + [n for c in self.causes for n in c.needs]:
            for code in need.codes:
                if code not in seen:
                    seen.append(code)
        for code in self.context:
            if code not in seen:
                seen.append(code)
        return seen


CLIP = "openai/clip-vit-large-patch14"
# The statuses below follow the checks' own conventions (rules/hub.py, rules/cache.py): a hub
# problem is `info` when every needed file is cached anyway; cache.offline-flag fails only when
# offline mode is on *and* a needed file is missing; cache.model-missing warns when a missing file
# can still be downloaded.
_NET = Need("the Hugging Face Hub cannot be reached from here", ("hub.dns", "hub.connect"), confirms=PROBLEM_OR_NOTE)
_EMPTY = Need("the model files are missing from the cache and cannot be fetched", ("cache.model-missing",),
              confirms=("fail",))
_OFFLINE = Need("offline mode (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE) is on while files are missing",
                ("cache.offline-flag",), confirms=("fail",), refutes=("ok", "info", "warn"))
_TLS = Need("TLS to the Hub fails (certificate not trusted)", ("hub.tls",), confirms=PROBLEM_OR_NOTE)
_PROXY = Need("the proxy in HTTPS_PROXY/HTTP_PROXY fails", ("hub.proxy",), refutes=("ok", "info"))
_HTTP = Need("the Hub answers the file request with an error status", ("hub.http-status",), confirms=PROBLEM_OR_NOTE)
# model.load-keys loads with strict=False: a harmless unexpected key is `info` there.
_LOAD_KEYS = Need("loading the checkpoint into the model reports key mismatches here", ("model.load-keys",),
                  confirms=PROBLEM_OR_NOTE)
_READONLY = Need("the cache directory is not writable", ("cache.not-writable",), refutes=("ok", "info"))
_PREFETCH = (f"On a machine with network, fill the cache this transformers reads: `huggingface-cli download {CLIP}` "
             "(or `python -m diagnostics provision-clip`), copy it to the server, then set HF_HUB_OFFLINE=1 "
             "(and TRANSFORMERS_OFFLINE=1 for transformers < 4.22). Or point `cond_stage_config.params.version` "
             "in the YAML at a local folder holding vocab.json, merges.txt, tokenizer_config.json, "
             "special_tokens_map.json, config.json and the weights.")

SIGNATURES: List[Signature] = [
    Signature(
        "K01", "clip-tokenizer-load", "CLIP tokenizer cannot be loaded",
        patterns=(
            Pattern(r"Can't load tokenizer for '(?P<repo>[^']+)'\. If you were trying to load it from "
                    r"'https://huggingface\.co/models', make sure you don't have a local directory with the same name",
                    label="transformers < 5 catch-all (every tokenizer file resolved to nothing)",
                    versions=({"transformers": "<5"},), wrapper=True),
            Pattern(r"(?P<repo>\S+) is not a local folder and is not a valid model identifier listed on "
                    r"'https://huggingface\.co/models'",
                    label="repo not found, or gated/unauthorised on transformers 4.22-4.x",
                    versions=({"transformers": ">=4.22,<5"},), wrapper=True),
            Pattern(r"OSError: \[Errno 30\] Read-only file system: '[^']*\.lock'",
                    label="read-only cache and the file is not cached (transformers 4.19.2)"),
            Pattern(r"`vocab` and `merges` must be both be from memory or both filenames",
                    label="cached tokenizer file missing or broken (transformers 5.x)",
                    versions=({"transformers": ">=5"},)),
            Pattern(r"JSONDecodeError", frames=r"tokenization_clip|CLIPTokenizer|tokenization_utils",
                    label="a cached tokenizer file is truncated or not JSON"),
        ),
        cause="transformers could not find the CLIP tokenizer files locally and could not download them. The "
              "message is a catch-all: no network, an offline switch with an empty cache, a same-named local "
              "folder, a cache in another place than this transformers reads, a gated/blocked download, a "
              "read-only or corrupted cache, or TLS/proxy trouble all print it.",
        fix=_PREFETCH,
        reproduce=(Need("the CLIP tokenizer loads and works here", ("tokenizer.functional",)),),
        causes=(
            Cause("K01.b", "Offline switch on, files not in the cache", (_OFFLINE, _EMPTY),
                  "Either allow downloads (unset HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE) where the Hub is "
                  "reachable, or keep offline mode and provision the cache first. " + _PREFETCH),
            Cause("K01.a", "No network to the Hub, files not in the cache", (_NET, _EMPTY),
                  _PREFETCH + " If a mirror is reachable, set HF_ENDPOINT to it (only if it has the repo)."),
            Cause("K01.c", f"A local folder named like the repo ({CLIP}) shadows it",
                  (Need("a folder named like the repo id exists in the working directory", ("cache.shadowing-dir",),
                        refutes=("ok", "info")),),
                  f"Rename or remove the folder `{CLIP}` under the directory the model is started from, or make it "
                  "complete (vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json, config.json)."),
            Cause("K01.g", "Files are cached, but where this transformers version does not look",
                  (Need("the cache location differs from where the files are", ("cache.location",)),
                   Need("HF_ENDPOINT differs from the one the cache was filled through", ("hub.endpoint",),
                        required=False)),
                  "Set the cache variable this transformers version reads (4.19: TRANSFORMERS_CACHE or "
                  "$HF_HOME/transformers; 4.22-4.4x: TRANSFORMERS_CACHE/HF_HOME, not HF_HUB_CACHE; 5.x: "
                  "HF_HUB_CACHE/HF_HOME), or move the files there."),
            Cause("K01.e", "The Hub refused the download (gated repo, 401/403, proxy HTML page, 5xx)",
                  (_HTTP,),
                  "Accept the model's terms and use a token with read access, or fix the proxy that answers "
                  "with an HTML page; then download again."),
            Cause("K01.i", "The cache is read-only and the files are not in it",
                  (_READONLY, _EMPTY),
                  "Fill the cache once with write access, or point HF_HOME at a writable directory."),
            Cause("K01.j", "A cached file is incomplete or corrupted",
                  (Need("the cache holds incomplete or broken files", ("cache.incomplete",)),),
                  f"Delete the repo from the cache (`hf cache rm {CLIP}` or remove "
                  "models--openai--clip-vit-large-patch14) and download it again."),
            Cause("K01.k", "TLS interception (certificate not trusted)", (_TLS,),
                  "Point REQUESTS_CA_BUNDLE / SSL_CERT_FILE at the corporate CA bundle."),
            Cause("K01.l", "A broken or unreachable proxy", (_PROXY,),
                  "Fix or unset HTTPS_PROXY / HTTP_PROXY, or add the Hub to NO_PROXY."),
        ),
        context=("compat.tokenizer-silent-empty",),
        links=("https://github.com/CompVis/stable-diffusion/issues/90",
               "https://github.com/invoke-ai/InvokeAI/issues/34",
               "https://github.com/huggingface/transformers/issues/17611",
               "https://huggingface.co/docs/transformers/installation#offline-mode"),
    ),
    Signature(
        "K02", "hub-offline-cached-files", "Model files neither downloadable nor in the cache",
        patterns=(
            Pattern(r"We couldn't connect to '(?P<endpoint>[^']+)' to load (?:this file|the files|this model), (?:and )?"
                    r"couldn't find (?:it|them) in the cached files",
                    label="transformers >= 4.22 (cached_file)", versions=({"transformers": ">=4.22"},),
                    wrapper=True),
            Pattern(r"Cannot find the requested files in the disk cache and outgoing traffic has been disabled",
                    label="huggingface_hub, offline mode"),
            Pattern(r"An error happened while trying to locate the file on the Hub and we cannot find the "
                    r"requested files in the local cache", label="huggingface_hub, Hub unreachable",
                    wrapper=True),
            Pattern(r"Connection error, and we cannot find the requested files in the cached path",
                    label="transformers < 4.22", versions=({"transformers": "<4.22"},), wrapper=True),
        ),
        cause="A model file (e.g. CLIPTextModel's config.json) is not in the local cache and the Hub cannot be "
              "asked: the offline switch is on, or the network is down. With transformers 5.x this is the "
              "first visible error, because the tokenizer no longer raises.",
        fix=_PREFETCH,
        reproduce=(Need("the model files are missing from the cache here", ("cache.model-missing",),
                        confirms=("fail",)),),
        causes=(
            Cause("K02.b", "Offline switch on, files not in the cache", (_OFFLINE, _EMPTY), _PREFETCH),
            Cause("K02.a", "No network to the Hub, files not in the cache", (_NET, _EMPTY), _PREFETCH),
            Cause("K02.g", "Files are cached where this version does not look",
                  (Need("the cache location differs from where the files are", ("cache.location",)),),
                  "Set HF_HOME / HF_HUB_CACHE (or TRANSFORMERS_CACHE for transformers < 5) to the cache that "
                  "holds the files."),
        ),
        context=("compat.tokenizer-silent-empty",),
        links=("https://huggingface.co/docs/transformers/installation#offline-mode",),
    ),
    Signature(
        "K03", "pl-rank-zero-only", "pytorch_lightning no longer has utilities.distributed.rank_zero_only",
        patterns=(
            Pattern(r"cannot import name 'rank_zero_only' from 'pytorch_lightning\.utilities\.distributed'",
                    label="pytorch_lightning 1.8.0", versions=({"pytorch_lightning": "==1.8.0"},)),
            Pattern(r"No module named 'pytorch_lightning\.utilities\.distributed'",
                    label="pytorch_lightning >= 2.0", versions=({"pytorch_lightning": ">=2"},)),
            Pattern(r"`pytorch_lightning\.utilities\.distributed\.rank_zero_only` has been deprecated in v1\.8\.1",
                    scope="line", blocking=False,
                    label="pytorch_lightning 1.8.1-1.9.x deprecation warning (breaks with 2.0)",
                    versions=({"pytorch_lightning": ">=1.8.1,<2"},)),
        ),
        cause="ldm/models/diffusion/ddpm.py (CompVis and Stability) imports rank_zero_only from "
              "pytorch_lightning.utilities.distributed; Lightning 1.8.0 dropped it there, 1.8.1-1.9.x keep a "
              "deprecated shim, 2.0 removed it.",
        fix="`pip install 'pytorch-lightning<2,!=1.8.0'` (the original environment uses 1.4.2), or change the "
            "import to `from pytorch_lightning.utilities import rank_zero_only` (present in 1.4.2 and 2.x).",
        causes=(
            Cause("K03.a", "Installed pytorch_lightning lacks utilities.distributed.rank_zero_only",
                  (Need("the installed pytorch_lightning breaks ldm's import", ("compat.pl-rank-zero-only",),
                        versions=({"pytorch_lightning": "==1.8.0"}, {"pytorch_lightning": ">=2"})),),
                  "`pip install 'pytorch-lightning<2,!=1.8.0'`, or patch ldm/models/diffusion/ddpm.py to "
                  "`from pytorch_lightning.utilities import rank_zero_only`."),
        ),
        reproduce=(Need("`import ldm.models.diffusion.ddpm` fails here", ("model.import",)),),
        links=("https://github.com/Lightning-AI/pytorch-lightning/issues/15509",
               "https://github.com/CompVis/stable-diffusion/pull/451"),
    ),
    Signature(
        "K04", "torchmetrics-skew", "torchmetrics too new for the installed pytorch_lightning",
        patterns=(
            Pattern(r"cannot import name 'get_num_classes' from 'torchmetrics\.utilities\.data'",
                    label="pytorch_lightning 1.4.x with torchmetrics >= 0.8",
                    versions=({"pytorch_lightning": "<1.5", "torchmetrics": ">=0.8"},)),
            Pattern(r"cannot import name '_compare_version' from 'torchmetrics\.utilities\.imports'",
                    label="pytorch_lightning 1.7.x with torchmetrics >= 1.0",
                    versions=({"pytorch_lightning": ">=1.7,<1.8", "torchmetrics": ">=1.0"},)),
        ),
        cause="pytorch_lightning 1.4.2 imports torchmetrics' get_num_classes (removed in 0.8.0); 1.7.x imports "
              "_compare_version (removed in 1.0.0). Lightning only requires torchmetrics>=0.4, so an unpinned "
              "install pulls a breaking release.",
        fix="`pip install torchmetrics==0.6.0` for pytorch_lightning 1.4.2 (the original environment), "
            "`'torchmetrics<1.0'` for 1.7.x, or upgrade pytorch_lightning.",
        causes=(
            Cause("K04.a", "pytorch_lightning and torchmetrics versions that do not fit",
                  (Need("the installed pair is one that breaks",
                        versions=({"pytorch_lightning": "<1.5", "torchmetrics": ">=0.8"},
                                  {"pytorch_lightning": ">=1.7,<1.8", "torchmetrics": ">=1.0"})),),
                  "`pip install torchmetrics==0.6.0` (pytorch_lightning 1.4.x) or `'torchmetrics<1.0'` (1.7.x)."),
        ),
        reproduce=(Need("`import ldm.models.diffusion.ddpm` fails here", ("model.import",)),),
        links=("https://github.com/CompVis/latent-diffusion/issues/72",
               "https://github.com/Lightning-AI/torchmetrics/issues/1923"),
    ),
    Signature(
        "K05", "clip-position-ids", "Checkpoint has CLIP position_ids that transformers >= 4.31 does not expect",
        patterns=(
            Pattern(r'Unexpected key\(s\) in state_dict: (?:"[^"]*", )*"(?:[\w.]*\.)?text_model\.embeddings\.position_ids"',
                    label="strict load with transformers >= 4.31", versions=({"transformers": ">=4.31"},)),
        ),
        cause="transformers 4.31 made CLIPTextEmbeddings.position_ids a non-persistent buffer; SD 1.x checkpoints "
              "saved with older transformers still carry it, so a strict load_state_dict rejects the key.",
        fix="Drop `cond_stage_model.transformer.text_model.embeddings.position_ids` from the state dict before a "
            "strict load, load with strict=False and check that only this key is unexpected, or pin "
            "`transformers<=4.30.2`.",
        causes=(
            Cause("K05.a", "transformers >= 4.31 and a checkpoint that carries position_ids",
                  (Need("the installed transformers has non-persistent position_ids",
                        ("compat.transformers-position-ids",), confirms=PROBLEM_OR_NOTE,
                        versions=({"transformers": ">=4.31"},)),
                   Need("the checkpoint carries text_model.embeddings.position_ids", ("ckpt.clip-position-ids",),
                        confirms=PROBLEM_OR_NOTE, evidence_key="position_ids",
                        evidence_confirms=("ok", "broken", "unreadable"), evidence_refutes=("absent",))),
                  "Remove the key before loading, or load with strict=False."),
        ),
        reproduce=(_LOAD_KEYS,),
        links=("https://github.com/kohya-ss/sd-scripts/pull/687", "https://github.com/gligen/GLIGEN/issues/67"),
    ),
    Signature(
        "K06", "torch-weights-only", "torch >= 2.6 refuses to unpickle a Lightning checkpoint (weights_only)",
        patterns=(
            Pattern(r"Weights only load failed.*(?:Unsupported global: GLOBAL|WeightsUnpickler error: Unsupported "
                    r"class) (?P<global>(?:pytorch_lightning|lightning|omegaconf|numpy|argparse|collections)[\w.]*)",
                    label="torch >= 2.6 default weights_only=True", versions=({"torch": ">=2.6"},)),
            Pattern(r"WeightsUnpickler error: Unsupported (?:global: GLOBAL|class) (?P<global>[\w.]+)",
                    label="weights_only=True (explicit or default)"),
        ),
        cause="torch 2.6 changed torch.load's default to weights_only=True. Original SD .ckpt files are Lightning "
              "training checkpoints that pickle pytorch_lightning's ModelCheckpoint callback (and sometimes numpy "
              "or omegaconf objects), which the safe unpickler refuses; ldm calls torch.load without weights_only.",
        fix="For a file you trust: `torch.load(path, map_location='cpu', weights_only=False)` at the call site, or "
            "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 where the call site passes no weights_only; or allow the globals "
            "with `torch.serialization.add_safe_globals([...])`. Best: convert once to safetensors or a plain "
            "state_dict file.",
        causes=(
            Cause("K06.a", "torch >= 2.6 with a checkpoint that pickles non-tensor objects",
                  (Need("the installed torch defaults to weights_only=True", ("compat.torch-weights-only-default",),
                        refutes=("ok", "info"), versions=({"torch": ">=2.6"},)),
                   Need("the checkpoint holds globals the safe unpickler refuses", ("ckpt.weights-only-refused",),
                        confirms=PROBLEM_OR_NOTE)),
                  "Convert the checkpoint to safetensors, or load it with weights_only=False if you trust it."),
        ),
        links=("https://pytorch.org/docs/stable/notes/serialization.html#weights-only",
               "https://github.com/Lightning-AI/pytorch-lightning/issues/20450"),
    ),
    Signature(
        "K07", "unet-in-channels", "Inpainting checkpoint and txt2img config disagree on UNet input channels",
        patterns=(
            Pattern(r"size mismatch for (?:model\.diffusion_model\.)?input_blocks\.0\.0\.weight: copying a param "
                    r"with shape torch\.Size\(\[(?P<out>\d+), (?P<ckpt_in>\d+), 3, 3\]\) from checkpoint, the shape "
                    r"in current model is torch\.Size\(\[\d+, (?P<model_in>\d+), 3, 3\]\)"),
        ),
        cause="An inpainting UNet has 9 input channels (4 latent + 4 masked-image latent + 1 mask), a txt2img "
              "UNet 4 (depth models 5). The config's unet_config.params.in_channels does not match the checkpoint.",
        fix="Use the config that matches the checkpoint: v1-inpainting-inference.yaml / v2-inpainting-inference.yaml "
            "(LatentInpaintDiffusion, in_channels: 9) for inpainting checkpoints, v1-inference.yaml / "
            "v2-inference.yaml (in_channels: 4) otherwise.",
        causes=(
            Cause("K07.a", "Config in_channels differs from the checkpoint's UNet",
                  (Need("the config's in_channels differs from the checkpoint's", ("config.in-channels",)),
                   Need("which model variant the checkpoint is", ("ckpt.family",), confirms=(), refutes=(),
                        required=False)),
                  "Pass the matching config (--config) and set unet_config.params.in_channels accordingly."),
        ),
        reproduce=(_LOAD_KEYS,),
        links=("https://github.com/TheLastBen/fast-stable-diffusion/issues/1499",),
    ),
    Signature(
        "K08", "context-dim", "SD 2.x checkpoint with an SD 1.x config (or the reverse)",
        patterns=(
            Pattern(r"copying a param with shape torch\.Size\(\[(?P<n>\d+), (?P<ckpt_ctx>1024|768)\]\) from checkpoint, "
                    r"the shape in current model is torch\.Size\(\[(?P=n), (?P<model_ctx>768|1024)\]\)",
                    label="cross-attention context_dim (OpenCLIP 1024 vs CLIP 768)"),
            Pattern(r"proj_in\.weight: copying a param with shape torch\.Size\(\[(?P<n>\d+), (?P=n)(?:, 1, 1)?\]\) "
                    r"from checkpoint, the shape in current model is torch\.Size\(\[(?P=n), (?P=n)(?:, 1, 1)?\]\)",
                    label="use_linear_in_transformer differs (SD 2.x linear proj_in)"),
        ),
        cause="SD 2.x uses OpenCLIP-H (context_dim 1024) and linear proj_in; SD 1.x uses CLIP-L (768) and conv "
              "proj_in. The YAML builds one family, the checkpoint is the other. (768-v SD 2 models also need "
              "parameterization: \"v\"; with the eps config they load but give noise.)",
        fix="Use v2-inference.yaml / v2-inference-v.yaml for SD 2.x checkpoints and v1-inference.yaml for SD 1.x.",
        causes=(
            Cause("K08.a", "Config context_dim / text encoder differs from the checkpoint's family",
                  (Need("the config's context_dim differs from the checkpoint's", ("config.context-dim",)),
                   Need("the config's text encoder differs from the checkpoint's", ("config.cond-stage",),
                        required=False),
                   Need("which family the checkpoint is", ("ckpt.family",), confirms=(), refutes=(),
                        required=False)),
                  "Pass the config of the checkpoint's family (--config)."),
        ),
        reproduce=(_LOAD_KEYS,),
        links=("https://github.com/TheLastBen/fast-stable-diffusion/issues/607",),
    ),
    Signature(
        "K09", "ema-keys", "EMA weights in the checkpoint do not match use_ema in the config",
        patterns=(
            Pattern(r'Unexpected key\(s\) in state_dict: (?:"[^"]*", )*"model_ema\.(?:decay|num_updates)"',
                    label="strict load, use_ema: False and a checkpoint with EMA"),
            Pattern(r'Missing key\(s\) in state_dict: (?:"[^"]*", )*"model_ema\.[^"]*"',
                    label="strict load, use_ema: True and a pruned checkpoint"),
            Pattern(r"Restored from .+ with \d+ missing and \d+ unexpected keys", scope="line", blocking=False,
                    label="ldm non-strict load summary"),
            Pattern(r"(?:Missing|Unexpected) Keys:? \[[^\]]*'model_ema\.", scope="line", blocking=False,
                    label="ldm non-strict load key list"),
        ),
        cause="LitEma keeps `model_ema.decay`, `model_ema.num_updates` and one shadow buffer per parameter. Full "
              "checkpoints carry them, pruned EMA-only ones keep EMA values in `model.*`. With use_ema: True and "
              "no shadows a strict load fails (non-strict: the EMA starts from random values); with use_ema: "
              "False and a full checkpoint you run the non-EMA weights.",
        fix="Align `model.params.use_ema` with the checkpoint (False for pruned/EMA-only files), drop the two "
            "scalar keys when loading a standalone VAE, or set reset_ema: True when training from an EMA-only file.",
        causes=(
            Cause("K09.a", "use_ema in the config does not match the EMA weights in the checkpoint",
                  (Need("config use_ema disagrees with the checkpoint", ("config.use-ema",)),),
                  "Set model.params.use_ema to match the checkpoint."),
            Cause("K09.b", "The checkpoint is pruned (no EMA weights)",
                  (Need("the checkpoint has no model_ema.* weights", ("ckpt.ema-absent",), confirms=("info",)),),
                  "Set model.params.use_ema: False for this checkpoint."),
            Cause("K09.c", "The checkpoint's EMA is incomplete or of other shapes",
                  (Need("the checkpoint's EMA weights are incomplete or mismatched",
                        ("ckpt.ema-incomplete", "ckpt.ema-shape-mismatch")),),
                  "Use use_ema: False with this checkpoint, or a checkpoint with a complete EMA."),
        ),
        reproduce=(_LOAD_KEYS,),
        links=("https://github.com/CompVis/stable-diffusion/issues/271",),
    ),
    Signature(
        "K10", "xformers-missing", "xformers missing or not importable (ldm falls back to plain attention)",
        patterns=(
            Pattern(r"No module 'xformers'\. Proceeding without it\.", scope="line", blocking=False,
                    label="Stability ldm (bare except around import xformers.ops)"),
            Pattern(r"no module 'xformers'\. Processing without", scope="line", blocking=False,
                    label="AUTOMATIC1111 webui"),
        ),
        cause="ldm wraps `import xformers; import xformers.ops` in a bare except, so this line means xformers is "
              "absent *or* installed but broken (built for another torch/CUDA). Attention then uses the plain "
              "implementation: more GPU memory, slower. Harmless on CPU.",
        fix="Optional on CPU. On GPU install the xformers wheel built for the installed torch and CUDA, and check "
            "it with `python -m xformers.info`.",
        blocking=False,
        causes=(
            Cause("K10.a", "xformers is not installed",
                  (Need("xformers is not installed", ("compat.xformers-missing",), confirms=PROBLEM_OR_NOTE),),
                  "Optional: `pip install xformers` matching your torch build."),
            Cause("K10.b", "xformers is installed but fails to import",
                  (Need("xformers is installed", versions=({"xformers": "present"},)),),
                  "Run `python -c 'import xformers.ops'` to see the error; reinstall xformers for this torch."),
        ),
        links=("https://github.com/Stability-AI/stablediffusion/blob/main/ldm/modules/diffusionmodules/model.py",),
    ),
    Signature(
        "K11", "xformers-abi", "xformers was built for another torch / CUDA",
        patterns=(
            Pattern(r"xFormers can't load C\+\+/CUDA extensions\. xFormers was built for:", scope="any",
                    blocking=False, label="xformers load warning"),
            Pattern(r"PyTorch (?P<built>\S+) with CUDA (?P<cu>\d+) \(you have (?P<have>\S+)\)", scope="line",
                    blocking=False, label="xformers build details"),
        ),
        cause="The xformers wheel's C++/CUDA extensions were compiled against another torch (or a CUDA torch while "
              "a CPU torch is installed); xformers then falls back or its ops fail.",
        fix="Reinstall the xformers release built for the installed torch (see the xformers release notes), or "
            "uninstall xformers.",
        blocking=False,
        causes=(
            Cause("K11.a", "xformers and torch versions do not belong together",
                  (Need("xformers is installed", versions=({"xformers": "present"},)),
                   Need("xformers is installed (compat check)", ("compat.xformers-missing",), confirms=(),
                        refutes=("info",), required=False)),
                  "`pip install --force-reinstall xformers==<the release built for your torch>`."),
        ),
        links=("https://github.com/facebookresearch/xformers/issues/982",),
    ),
    Signature(
        "K12", "cuda-no-kernel", "torch has no kernels for this GPU architecture",
        patterns=(
            Pattern(r"no kernel image is available for execution on the device", scope="any"),
            Pattern(r"with CUDA capability sm_(?P<sm>\d+) is not compatible with the current PyTorch installation",
                    scope="any", label="torch warning at CUDA init"),
        ),
        cause="The installed torch (or a CUDA extension) was compiled without code for this GPU's compute "
              "capability, e.g. an old cu10x build on an sm_86 card, or a pre-12.8 build on Blackwell (sm_120).",
        fix="Install a torch build whose arch list covers the GPU (`torch.cuda.get_arch_list()`), e.g. a newer "
            "CUDA wheel from https://download.pytorch.org/whl/.",
        causes=(
            Cause("K12.a", "torch's arch list lacks this GPU",
                  (Need("torch has no kernels for a visible GPU", ("cuda.arch",)),),
                  "Install a torch build for this GPU's compute capability."),
        ),
        links=("https://github.com/pytorch/pytorch/issues/31285",),
    ),
    Signature(
        "K13", "cuda-unavailable", "torch cannot use CUDA",
        patterns=(
            Pattern(r"Torch not compiled with CUDA enabled", label="CPU-only torch build"),
            Pattern(r"The NVIDIA driver on your system is too old \(found version (?P<found>\d+)\)", scope="any",
                    label="driver older than torch's CUDA runtime"),
            Pattern(r"Found no NVIDIA driver on your system", label="CUDA torch, no driver visible"),
            Pattern(r"Torch is not able to use GPU", scope="any", label="AUTOMATIC1111 launch check"),
            Pattern(r"CUDA driver initialization failed|no CUDA-capable device is detected", scope="any"),
        ),
        cause="torch.cuda.is_available() is False: a CPU-only torch build, a driver older than torch's CUDA "
              "runtime needs, CUDA_VISIBLE_DEVICES hiding the GPUs, or a container started without GPU access.",
        fix="Install the torch build matching the driver (e.g. `pip install torch --index-url "
            "https://download.pytorch.org/whl/cu121`), upgrade the driver, or run the container with --gpus all.",
        causes=(
            Cause("K13.a", "torch build, driver or device visibility prevents CUDA",
                  (Need("CUDA is not usable by this torch", ("cuda.available",)),),
                  "See the cuda.available finding's fix."),
            Cause("K13.b", "The NVIDIA driver is too old for torch's CUDA runtime",
                  (Need("the driver is older than the CUDA runtime needs", ("cuda.driver",)),),
                  "Upgrade the driver or install a torch build for an older CUDA."),
        ),
        links=("https://github.com/pytorch/pytorch/issues/30664",
               "https://docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html"),
    ),
    Signature(
        "K14", "cuda-oom", "CUDA out of memory",
        patterns=(
            Pattern(r"CUDA out of memory\. Tried to allocate (?P<size>[\d.]+ [GMK]iB)", scope="any"),
            Pattern(r"torch\.(?:cuda\.)?OutOfMemoryError"),
        ),
        cause="The model (about 4 GB of fp32 weights for SD 1.x, plus activations) does not fit in the free GPU "
              "memory; ldm's load_model_from_config moves the fp32 model with model.cuda(), and other processes "
              "may hold memory.",
        fix="Load in half precision (`model.half()`, --precision autocast), lower batch size/resolution, free the "
            "GPU from other processes, or set PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True.",
        causes=(
            Cause("K14.a", "Not enough free GPU memory for the model",
                  (Need("free GPU memory is below what the model needs", ("cuda.memory",)),),
                  "Use fp16 weights or a GPU with more free memory."),
        ),
        links=("https://github.com/CompVis/stable-diffusion/issues/760",),
    ),
    Signature(
        "K15", "taming-vq2", "taming-transformers from PyPI lacks VectorQuantizer2",
        patterns=(
            Pattern(r"cannot import name 'VectorQuantizer2' from 'taming\.modules\.vqvae\.quantize'"),
        ),
        cause="ldm/models/autoencoder.py imports VectorQuantizer2; the PyPI release taming-transformers 0.0.1 only "
              "defines VectorQuantizer (the CompVis environment installs it from git).",
        fix="`pip uninstall taming-transformers && pip install "
            "git+https://github.com/CompVis/taming-transformers.git@master#egg=taming-transformers` "
            "(or `pip install taming-transformers-rom1504`).",
        causes=(
            Cause("K15.a", "The PyPI taming-transformers 0.0.1 is installed",
                  (Need("taming-transformers 0.0.1 is installed", versions=({"taming-transformers": "==0.0.1"},)),),
                  "Install taming-transformers from the CompVis git repository."),
        ),
        reproduce=(Need("`import ldm.models.autoencoder` fails here", ("model.import",)),),
        links=("https://github.com/CompVis/stable-diffusion/issues/72",),
    ),
    Signature(
        "K16", "hub-cached-download", "huggingface_hub >= 0.26 removed cached_download",
        patterns=(Pattern(r"cannot import name 'cached_download' from 'huggingface_hub'"),),
        cause="cached_download was removed in huggingface_hub 0.26.0; diffusers up to 0.28.2 (and other older "
              "code) still import it.",
        fix="`pip install 'huggingface_hub<0.26'`, or upgrade diffusers to >= 0.29.",
        causes=(
            Cause("K16.a", "huggingface_hub is newer than its users allow",
                  (Need("installed huggingface_hub and diffusers conflict", ("compat.hub-cached-download",),
                        versions=({"huggingface_hub": ">=0.26", "diffusers": "<=0.28.2"},)),),
                  "`pip install 'huggingface_hub<0.26'` or `pip install -U 'diffusers>=0.29'`."),
        ),
        links=("https://github.com/huggingface/huggingface_hub/releases/tag/v0.26.0",),
    ),
    Signature(
        "K17", "hub-too-new", "transformers too old for the installed huggingface_hub",
        patterns=(Pattern(r"cannot import name '(?P<name>HfFolder|Repository)' from 'huggingface_hub'"),),
        cause="Old transformers (e.g. 4.19.2) import HfFolder/Repository from huggingface_hub; hub 1.x removed "
              "them. transformers declares huggingface-hub<1.0, but `pip install -U` or --no-deps installs can "
              "exceed it.",
        fix="Reinstall within the declared bounds: `pip install 'huggingface_hub<1.0'` (for transformers 4.19.2 "
            "e.g. 0.10.1), or upgrade transformers.",
        causes=(
            Cause("K17.a", "huggingface_hub outside transformers' declared range",
                  (Need("installed packages declare a huggingface_hub range that excludes it",
                        ("compat.hub-cached-download",),
                        versions=({"huggingface_hub": ">=1.0", "transformers": "<4.22"},)),),
                  "`pip install 'huggingface_hub<1.0'`."),
        ),
    ),
    Signature(
        "K18", "ldm-not-importable", "The ldm package cannot be imported",
        patterns=(
            Pattern(r"No module named 'ldm'(?![.\w])", label="ldm not installed / repo root not on sys.path"),
            Pattern(r"No module named 'ldm\.[\w.]+'; 'ldm' is not a package", label="a stray ldm.py shadows it"),
        ),
        cause="The latent-diffusion repository is not installed (`pip install -e .`) and the script runs from "
              "scripts/ so the repo root is not on sys.path; or an unrelated `ldm` module (PyPI package or stray "
              "ldm.py) shadows it.",
        fix="From the repository root run `pip install -e .`, or start scripts from the root, or set "
            "PYTHONPATH=<repo root>; remove stray ldm.py files.",
        causes=(
            Cause("K18.a", "ldm is not importable in this environment",
                  (Need("`import ldm` fails here", ("model.import",)),),
                  "`pip install -e .` in the repository root, or pass --code-root."),
        ),
        links=("https://github.com/CompVis/stable-diffusion/issues/160",),
    ),
    Signature(
        "K19", "open-clip-version", "open_clip version does not fit SD 2.x's FrozenOpenCLIPEmbedder",
        patterns=(
            Pattern(r"Model config for (?P<arch>ViT-[\w-]+) not found", label="open_clip too old"),
            Pattern(r"The shape of the 2D attn_mask is torch\.Size\(\[77, 77\]\), but should be \((?P<n>\d+), (?P=n)\)",
                    label="open_clip too new (batch-first transformer)"),
        ),
        cause="Stability's FrozenOpenCLIPEmbedder runs open_clip's transformer sequence-first; open_clip >= 2.2x "
              "made it batch-first, so the attention mask no longer fits. Old open_clip lacks the ViT-H-14 config.",
        fix="Pin open-clip-torch to the repository's version (2.0.2 in environment.yaml, 2.7.0 in requirements.txt).",
        causes=(
            Cause("K19.a", "open_clip version outside what ldm was written for",
                  (Need("open_clip version does not fit", ("compat.open-clip-version",),
                        versions=({"open_clip_torch": ">=2.20"}, {"open_clip_torch": "<2.0"})),),
                  "`pip install open-clip-torch==2.7.0`."),
        ),
        links=("https://github.com/mlfoundations/open_clip/issues/910",
               "https://github.com/Stability-AI/stablediffusion/issues/3"),
    ),
    Signature(
        "K20", "safetensors-header", "The .safetensors file is not a valid safetensors file",
        patterns=(
            Pattern(r"Error while deserializing header: (?P<kind>HeaderTooLarge|HeaderTooSmall|MetadataIncompleteBuffer|"
                    r"header too large|header too small|incomplete metadata, file not fully covered)"),
        ),
        cause="The file is not safetensors (an HTML error page or git-lfs pointer: the first 8 bytes read as a huge "
              "header length → header too large), or the download was cut (incomplete metadata), or it is "
              "almost empty (header too small).",
        fix="Download the file again and compare its size and sha256 with the source (the Hub shows both); with "
            "git, run `git lfs pull`.",
        causes=(
            Cause("K20.a", "The checkpoint file is truncated or not a checkpoint",
                  (Need("the checkpoint file is corrupt or of another format", ("ckpt.corrupt", "ckpt.format"),
                        confirms=("fail",), refutes=("ok", "info")),),
                  "Re-download the checkpoint."),
        ),
    ),
    Signature(
        "K21", "ckpt-truncated-zip", "Truncated torch zip checkpoint",
        patterns=(
            Pattern(r"PytorchStreamReader failed reading zip archive: failed finding central directory"),
            Pattern(r"PytorchStreamReader failed reading (?:zip archive|file [\w/.]+): (?:invalid header or archive "
                    r"is corrupted|file read failed)", label="partially readable archive"),
            Pattern(r"OSError: \[Errno 22\] Invalid argument", frames=r"_open_zipfile_reader|PyTorchFileReader",
                    label="torch 2.14 zip reader on a cut file", versions=({"torch": ">=2.14"},)),
        ),
        cause="A zip-format .ckpt/.pt whose end is missing: an interrupted download or copy (the zip directory "
              "lives at the end of the file).",
        fix="Download the checkpoint again and compare size and sha256 with the published values.",
        causes=(
            Cause("K21.a", "The checkpoint file is truncated",
                  (Need("the checkpoint file is corrupt", ("ckpt.corrupt",), confirms=("fail",)),),
                  "Re-download the checkpoint."),
        ),
    ),
    Signature(
        "K22", "ckpt-not-a-checkpoint", "The checkpoint is a git-lfs pointer or an HTML page",
        patterns=(
            Pattern(r"invalid load key, '(?P<key>v|<)'", label="weights_only=False"),
            Pattern(r"Weights only load failed.*WeightsUnpickler error: Unsupported operand (?P<op>118|60)\b",
                    label="torch >= 2.6 default weights_only=True", versions=({"torch": ">=2.6"},)),
            Pattern(r"Error verifying pickled file from .*The file is most likely corrupted", scope="any",
                    label="AUTOMATIC1111 safe unpickler"),
        ),
        cause="The file is text: a git-lfs pointer (`version https://git-lfs.github.com/spec/v1`, from a git clone "
              "without git-lfs) or an HTML page (a login or error page saved instead of the file).",
        fix="`git lfs install && git lfs pull` in the clone, or download the file directly (the Hub's "
            "resolve/main URL, with a token for gated repos).",
        causes=(
            Cause("K22.a", "The checkpoint file is a pointer or web page",
                  (Need("the checkpoint file is not a checkpoint", ("ckpt.format", "ckpt.corrupt"),
                        confirms=("fail",), refutes=("ok", "info")),),
                  "Fetch the real file (git lfs pull / direct download)."),
        ),
    ),
    Signature(
        "K23", "numpy2-abi", "NumPy 2 with extensions built for NumPy 1",
        patterns=(
            Pattern(r"A module that was compiled using NumPy 1\.x cannot be run in NumPy 2\.\d+\.\d+", scope="any"),
            Pattern(r"Failed to initialize NumPy: _ARRAY_API not found", scope="any"),
            Pattern(r"RuntimeError: Numpy is not available"),
        ),
        cause="torch < 2.3 (and old torchvision, opencv, ...) were built against the NumPy 1 ABI; a later pip "
              "install pulled NumPy 2.",
        fix="`pip install 'numpy<2'`, or upgrade torch to >= 2.3 and the other compiled packages.",
        causes=(
            Cause("K23.a", "NumPy 2 with torch < 2.3",
                  (Need("numpy >= 2 with torch < 2.3", ("compat.numpy2-abi",),
                        versions=({"numpy": ">=2", "torch": "<2.3"},)),),
                  "`pip install 'numpy<2'`."),
        ),
        links=("https://github.com/pytorch/pytorch/issues/107302",),
    ),
    Signature(
        "K24", "protobuf4", "protobuf >= 4.21 with old generated _pb2 modules (tensorboard via Lightning)",
        patterns=(Pattern(r"Descriptors cannot (?:not )?be created directly", scope="any"),),
        cause="protobuf 4.21 refuses _pb2 modules generated by old protoc, such as those of the tensorboard "
              "release pulled in by pytorch_lightning 1.4.2.",
        fix="`pip install 'protobuf<=3.20.3'`, or set PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python (slow).",
        causes=(
            Cause("K24.a", "protobuf >= 4.21 is installed",
                  (Need("protobuf >= 4.21 is installed", versions=({"protobuf": ">=4.21"},)),),
                  "`pip install 'protobuf<=3.20.3'`."),
        ),
        links=("https://github.com/deepspeedai/DeepSpeed/pull/1988",),
    ),
    Signature(
        "K25", "fp16-nans", "NaNs in half precision (black images)",
        patterns=(
            Pattern(r"NansException: A tensor with all NaNs was produced in (?P<where>Unet|VAE)", scope="any"),
        ),
        cause="fp16 overflow, typically in the VAE, or on GPUs without proper fp16 (GTX 16xx); bare ldm shows no "
              "error, only black images.",
        fix="Run the VAE in fp32 (--no-half-vae), or everything (--no-half); use an fp16-fixed VAE; upcast "
            "attention.",
        causes=(
            Cause("K25.a", "The checkpoint itself holds non-finite or half-precision weights",
                  (Need("the checkpoint has NaN/Inf tensors", ("ckpt.nonfinite",)),
                   Need("the checkpoint's dtype", ("ckpt.dtype",), confirms=(), refutes=(), required=False)),
                  "Use another copy of the checkpoint; load it in fp32."),
        ),
        links=("https://github.com/carson-katri/dream-textures/issues/691",),
    ),
    Signature(
        "K26", "hub-invalid-token", "An invalid Hugging Face token is sent",
        patterns=(
            Pattern(r"Invalid credentials in Authorization header", scope="any"),
            Pattern(r"401 Client Error: Unauthorized for url: \S*huggingface\.co", scope="any",
                    label="requests-era huggingface_hub"),
        ),
        cause="HF_TOKEN, HUGGING_FACE_HUB_TOKEN or the saved token file holds a revoked or mistyped token; the Hub "
              "rejects every request that carries it, even for public repos.",
        fix="`hf auth logout` (or unset HF_TOKEN / HUGGING_FACE_HUB_TOKEN), log in with a valid token, or set "
            "HF_HUB_DISABLE_IMPLICIT_TOKEN=1 for public repos.",
        causes=(
            Cause("K26.a", "The Hub rejects the configured token",
                  (Need("the Hub answers 401 to this machine's requests", ("hub.http-status",),
                        confirms=PROBLEM_OR_NOTE),),
                  "Replace or remove the token."),
        ),
        links=("https://github.com/huggingface/sentence-transformers/issues/3436",),
    ),
    Signature(
        "K27", "hub-gated-repo", "Gated repository: access not granted",
        patterns=(
            Pattern(r"GatedRepoError"),
            Pattern(r"You are trying to access a gated repo", label="transformers >= 4.3x"),
            Pattern(r"Cannot access gated repo for url", scope="any"),
            Pattern(r"Access to model \S+ is restricted", scope="any"),
        ),
        cause="The repository requires accepting its terms and an authenticated request; this request had no "
              "token, or a token of an account without access.",
        fix="Accept the terms on the model page with your account, create a token with read access, and provide "
            "it (`hf auth login` or HF_TOKEN) on the server; or provision the files offline.",
        causes=(
            Cause("K27.a", "The Hub answers 401/403 with X-Error-Code GatedRepo",
                  (Need("the Hub refuses the file request", ("hub.http-status",), confirms=PROBLEM_OR_NOTE),),
                  "Accept the terms and use a token with access."),
        ),
        links=("https://huggingface.co/docs/hub/models-gated",),
    ),
    Signature(
        "K28", "hub-tls-proxy", "TLS interception or a broken proxy",
        patterns=(
            Pattern(r"CERTIFICATE_VERIFY_FAILED", scope="any", label="certificate verification failed"),
            Pattern(r"SSLCertVerificationError", scope="any"),
            Pattern(r"ProxyError|Unable to connect to proxy", scope="any", label="proxy unreachable"),
            Pattern(r"Can't connect to HTTPS URL because the SSL module is not available", scope="any",
                    label="Windows conda without Library/bin on PATH"),
        ),
        cause="A corporate proxy re-signs TLS with its own CA that Python's bundle does not trust, or the "
              "configured HTTP(S)_PROXY is unreachable, or the ssl module cannot load.",
        fix="Set REQUESTS_CA_BUNDLE and SSL_CERT_FILE to the corporate CA bundle, fix HTTPS_PROXY / NO_PROXY, "
            "or (conda on Windows) put Library/bin on PATH.",
        causes=(
            Cause("K28.a", "TLS to the Hub fails here", (_TLS,),
                  "Point REQUESTS_CA_BUNDLE / SSL_CERT_FILE at the CA that signs the proxy's certificates."),
            Cause("K28.b", "The configured proxy is unreachable", (_PROXY,),
                  "Fix or unset HTTPS_PROXY / HTTP_PROXY; add the Hub to NO_PROXY if it is reachable directly."),
        ),
        links=("https://github.com/huggingface/transformers/issues/17611",
               "https://github.com/basujindal/stable-diffusion/issues/12"),
    ),
    Signature(
        "K29", "hub-retries", "Startup waits on Hub retries (looks like a hang)",
        patterns=(
            Pattern(r"'[^']*' thrown while requesting (?:HEAD|GET) \S+", scope="line", blocking=False,
                    label="huggingface_hub >= 1.0 retry log"),
            Pattern(r"Retrying in \d+(?:\.\d+)?s \[Retry \d+/\d+\]", scope="line", blocking=False,
                    label="huggingface_hub backoff"),
        ),
        cause="huggingface_hub retries each file request 5 times with backoff (1, 2, 4, 8, 8 s) when the Hub is "
              "unreachable; one model load can wait minutes before failing or (transformers 5) silently "
              "degrading.",
        fix="With a complete cache set HF_HUB_OFFLINE=1 so nothing is requested; lower HF_HUB_ETAG_TIMEOUT; or "
            "make the Hub reachable.",
        blocking=False,
        causes=(
            Cause("K29.a", "The Hub is unreachable and the offline switch is off",
                  (_NET, Need("offline mode is off although everything is cached", ("cache.offline-flag",),
                              confirms=("warn",), refutes=("fail",), required=False)),
                  "Provision the cache and set HF_HUB_OFFLINE=1."),
        ),
    ),
    Signature(
        "K30", "legacy-env-python", "The legacy environment cannot be built on this Python",
        patterns=(
            Pattern(r"Could not find a version that satisfies the requirement tokenizers(?:==0\.1[0-2][\w.]*|<0\.13)?",
                    scope="line", label="pip resolver"),
            Pattern(r"Failed building wheel for tokenizers|can't find Rust compiler", scope="line",
                    label="tokenizers source build"),
        ),
        cause="transformers 4.19.2 needs tokenizers<0.13, which has no wheels for Python >= 3.11; pip then tries "
              "to compile it with Rust, or finds nothing. The original SD environment uses Python 3.8.",
        fix="Create the environment with Python 3.8-3.10 (`conda create -n ldm python=3.10`), or upgrade "
            "transformers (then see K05).",
        causes=(
            Cause("K30.a", "Python is too new for the pinned tokenizers",
                  (Need("this Python is 3.11 or newer", versions=({"python": ">=3.11"},)),
                   Need("the Python version", ("env.python",), confirms=(), refutes=(), required=False)),
                  "Use Python 3.8-3.10 for the legacy pins."),
        ),
    ),
    Signature(
        "K31", "transformers-cache-migration", "transformers cache migration failed (4.19 → 4.22+ layout)",
        patterns=(
            Pattern(r"There was a problem when trying to (?:write in your cache folder|move your cache)",
                    scope="any", blocking=False, label="migration warning"),
            Pattern(r"The cache for model files in Transformers v4\.22\.0 has been updated", scope="any",
                    blocking=False, label="migration notice"),
            Pattern(r"You are offline and the cache for model files in Transformers v4\.22\.0 has been updated",
                    scope="any", label="offline with an old-layout cache"),
            Pattern(r"(?:PermissionError|OSError): \[Errno (?:13|30)\]", frames=r"move_cache|move_to_new_cache",
                    blocking=False, label="the migration's own error"),
        ),
        cause="transformers >= 4.22 moves the old flat cache to the hub layout once (keyed on version.txt); on a "
              "read-only or shared cache it fails, and offline it cannot migrate at all, so every from_pretrained "
              "misses.",
        fix="Run `python -c 'from transformers.utils import move_cache; move_cache()'` once with write access, or "
            "point HF_HOME at a cache already in the hub layout.",
        causes=(
            Cause("K31.a", "The cache is not writable",
                  (_READONLY,),
                  "Migrate once with write access."),
            Cause("K31.b", "The cache is in the old layout or elsewhere",
                  (Need("the cache location or layout does not fit this transformers", ("cache.location",)),),
                  "Point HF_HOME at a hub-layout cache."),
        ),
        blocking=False,
    ),
    Signature(
        "K32", "lightning-missing", "pytorch_lightning is needed but not installed",
        patterns=(
            Pattern(r"No module named '(?P<module>pytorch_lightning|lightning)'(?![.\w])", frames=r"torch[/\\]serialization\.py|torch\.load",
                    label="unpickling a Lightning checkpoint without Lightning"),
            Pattern(r"No module named '(?P<module>pytorch_lightning|lightning)'(?![.\w])",
                    label="Lightning not installed"),
        ),
        cause="Original SD checkpoints are Lightning training checkpoints that pickle the ModelCheckpoint callback, "
              "so torch.load(weights_only=False) imports pytorch_lightning; ldm's ddpm.py imports it too. Slim "
              "deployment environments often lack it.",
        fix="`pip install 'pytorch-lightning<2'` (the original environment uses 1.4.2), or convert the checkpoint "
            "once to safetensors / a plain state_dict so serving needs no Lightning.",
        causes=(
            Cause("K32.a", "pytorch_lightning is not installed here",
                  (Need("pytorch_lightning is not installed", versions=({"pytorch_lightning": "absent"},)),
                   Need("the checkpoint pickles objects (Lightning's callback) that need their package",
                        ("ckpt.weights-only-refused",), confirms=PROBLEM_OR_NOTE, required=False)),
                  "`pip install 'pytorch-lightning<2'`, or convert the checkpoint."),
        ),
        links=("https://github.com/Lightning-AI/pytorch-lightning/issues/20643",),
    ),
    Signature(
        "K33", "ckpt-family-keys", "The checkpoint's keys belong to another model family",
        patterns=(
            Pattern(r'(?:Missing|Unexpected) key\(s\) in state_dict: (?:"[^"]*", )*"cond_stage_model\.'
                    r'(?:model\.|transformer\.(?!text_model\.embeddings\.position_ids"))[^"]*"',
                    label="text encoder keys of the other family (OpenCLIP vs CLIP)"),
            Pattern(r'(?:Missing|Unexpected) key\(s\) in state_dict: (?:"[^"]*", )*"conditioner\.embedders\.[^"]*"',
                    label="SDXL keys (conditioner.embedders)"),
        ),
        cause="The state dict does not come from the model the config builds: SD1 CLIP keys are "
              "`cond_stage_model.transformer.text_model.*` (context 768), SD2 OpenCLIP keys "
              "`cond_stage_model.model.*` (1024), SDXL `conditioner.embedders.*`.",
        fix="Identify the checkpoint (`python -m diagnostics inspect CKPT`) and use its config; SDXL checkpoints "
            "need the generative-models (sgm) code, not ldm.",
        causes=(
            Cause("K33.a", "Checkpoint family differs from the config",
                  (Need("the config's text encoder differs from the checkpoint's", ("config.cond-stage",)),
                   Need("which family and components the checkpoint has", ("ckpt.family", "ckpt.components"),
                        confirms=(), refutes=(), required=False)),
                  "Pass the config of the checkpoint's family."),
        ),
        reproduce=(_LOAD_KEYS,),
    ),
]

# Where ldm's well-known frames live, for naming the class of a method when the source file is not
# readable here (Python prints only `in __init__`). Suffix of the path, function, regex on the code.
KNOWN_LOCATIONS: List[Dict[str, str]] = [
    {"path": "ldm/modules/encoders/modules.py", "function": "__init__",
     "code": r"CLIPTokenizer\.from_pretrained|CLIPTextModel\.from_pretrained", "qualname": "FrozenCLIPEmbedder.__init__"},
    {"path": "ldm/modules/encoders/modules.py", "function": "__init__",
     "code": r"open_clip\.create_model_and_transforms", "qualname": "FrozenOpenCLIPEmbedder.__init__"},
    {"path": "ldm/modules/encoders/modules.py", "function": "text_transformer_forward", "code": "",
     "qualname": "FrozenOpenCLIPEmbedder.text_transformer_forward"},
    {"path": "ldm/modules/encoders/modules.py", "function": "encode_with_transformer", "code": "",
     "qualname": "FrozenOpenCLIPEmbedder.encode_with_transformer"},
    {"path": "ldm/models/diffusion/ddpm.py", "function": "init_from_ckpt", "code": "",
     "qualname": "DDPM.init_from_ckpt"},
    {"path": "ldm/models/diffusion/ddpm.py", "function": "instantiate_cond_stage", "code": "",
     "qualname": "LatentDiffusion.instantiate_cond_stage"},
    {"path": "ldm/models/diffusion/ddpm.py", "function": "instantiate_first_stage", "code": "",
     "qualname": "LatentDiffusion.instantiate_first_stage"},
    {"path": "ldm/models/diffusion/ddpm.py", "function": "__init__", "code": r"instantiate_(?:cond|first)_stage",
     "qualname": "LatentDiffusion.__init__"},
    {"path": "ldm/models/diffusion/ddpm.py", "function": "__init__", "code": r"DiffusionWrapper\(",
     "qualname": "DDPM.__init__"},
    {"path": "ldm/modules/ema.py", "function": "forward", "code": "", "qualname": "LitEma.forward"},
    {"path": "ldm/modules/ema.py", "function": "copy_to", "code": "", "qualname": "LitEma.copy_to"},
]


def get_signature(sig_id: str) -> Signature:
    for sig in SIGNATURES:
        if sig.id == sig_id or sig.slug == sig_id:
            return sig
    raise KeyError(sig_id)
