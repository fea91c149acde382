"""Importing the model code and its dependencies: removed names, missing packages, ABI skews."""

from __future__ import annotations

from typing import Dict, List

from .base import Cause, Need, PROBLEM_OR_NOTE, Pattern, Signature

# Python module -> what to pip install (the PyPI name differs from the import name for several).
PIP_NAMES: Dict[str, str] = {
    "einops": "einops", "open_clip": "open-clip-torch", "pytorch_lightning": "'pytorch-lightning<2'",
    "omegaconf": "omegaconf", "transformers": "transformers", "torchvision": "torchvision", "kornia": "kornia",
    "clip": "git+https://github.com/openai/CLIP.git", "PIL": "Pillow",
    "taming": "git+https://github.com/CompVis/taming-transformers.git", "imwatermark": "invisible-watermark",
    "safetensors": "safetensors", "tqdm": "tqdm", "numpy": "numpy", "scipy": "scipy", "cv2": "opencv-python",
    "k_diffusion": "k-diffusion", "yaml": "pyyaml", "timm": "timm", "xformers": "xformers", "lightning": "lightning",
    "sklearn": "scikit-learn", "skimage": "scikit-image", "google": "protobuf", "diffusers": "diffusers",
}


def pip_name(module: str) -> str:
    top = module.split(".")[0]
    return PIP_NAMES.get(top, top)


def derive_groups(groups: Dict[str, str]) -> Dict[str, str]:
    """Named groups of a hit plus what follows from them (`pip`: what to install for `module`)."""
    if groups.get("module") and "pip" not in groups:
        groups = dict(groups, pip=pip_name(groups["module"]))
    return groups


SIGNATURES: List[Signature] = [
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
                    scope="any", label="open_clip too new (batch-first transformer)"),
        ),
        cause="Stability's FrozenOpenCLIPEmbedder runs open_clip's transformer sequence-first; open_clip 2.26 "
              "made it batch-first, so the attention mask no longer fits. open_clip before 1.1 lacks the ViT-H-14 "
              "config.",
        fix="Pin open-clip-torch to the repository's version (2.0.2 in environment.yaml, 2.7.0 in requirements.txt).",
        causes=(
            Cause("K19.a", "open_clip version outside what ldm was written for",
                  (Need("open_clip version does not fit", ("compat.open-clip-version",),
                        versions=({"open_clip_torch": ">=2.26"}, {"open_clip_torch": "<1.1"})),),
                  "`pip install open-clip-torch==2.7.0`."),
        ),
        links=("https://github.com/mlfoundations/open_clip/issues/910",
               "https://github.com/Stability-AI/stablediffusion/issues/3"),
    ),
    Signature(
        "K23", "numpy2-abi", "NumPy 2 with extensions built for NumPy 1",
        patterns=(
            Pattern(r"A module that was compiled using NumPy 1\.x cannot be run in NumPy 2\.\d+\.\d+", scope="any"),
            Pattern(r"Failed to initialize NumPy: _ARRAY_API not found", scope="any"),
            Pattern(r"`np\.(?:float_|complex_|NaN|Inf|NINF|PINF|unicode_|string_|cast|product|cumproduct|alltrue|"
                    r"sometrue|round_|find_common_type)` was removed in the NumPy 2\.0 release", scope="any",
                    label="NumPy 2 removed an alias"),
            Pattern(r"numpy\.core\.multiarray failed to import|numpy\.dtype size changed, may indicate binary "
                    r"incompatibility|module compiled against (?:ABI|API) version", scope="any",
                    label="extension built against NumPy 1"),
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
                  (Need("protobuf >= 4.21 is installed", versions=({"protobuf": ">=4.21"},)),
                   Need("the installed packages (protobuf among them)", ("env.packages",), confirms=(), refutes=(),
                        required=False)),
                  "`pip install 'protobuf<=3.20.3'`."),
        ),
        links=("https://github.com/deepspeedai/DeepSpeed/pull/1988",),
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
        "K36", "python-module-missing", "A package the model code imports is not installed",
        patterns=(
            Pattern(r"No module named '(?P<module>(?!ldm\b)[\w.]+)'", label="module not installed", fallback=True),
            Pattern(operation="model-import", exception=r"ImportError|ModuleNotFoundError",
                    label="an import of the model code fails"),
        ),
        cause="The environment lacks a package the model code (ldm, its configs' targets or a web UI's modules) "
              "imports, or has a version without that module.",
        fix="pip install {pip}",
        causes=(
            Cause("K36.a", "The import fails in this environment",
                  (Need("the model code does not import here", ("model.import",)),
                   Need("the installed packages", ("env.packages",), confirms=(), refutes=(), required=False)),
                  "pip install {pip}"),
        ),
    ),
    Signature(
        "K37", "config-target-missing", "The config names a class the code does not have",
        patterns=(
            Pattern(r"module '(?P<module>(?:ldm|sgm|cldm)[\w.]*)' has no attribute '(?P<name>\w+)'",
                    label="target class missing in the module"),
        ),
        cause="A `target:` of the YAML names a class that this ldm code base does not define: the config was "
              "written for another repository (CompVis, Stability, a fork) or has a typo.",
        fix="Use the ldm repository the config was written for (--code-root), or correct `target:` in the YAML.",
        causes=(
            Cause("K37.a", "A config target does not exist in the code here",
                  (Need("a config target is missing from the code", ("config.targets",)),),
                  "Correct the target, or use the matching repository."),
        ),
    ),
    Signature(
        "K38", "config-unknown-parameter", "The config passes a parameter the model code does not accept",
        patterns=(
            Pattern(r"__init__\(\) got an unexpected keyword argument '(?P<arg>\w+)'",
                    frames=r"ldm|sgm|instantiate_from_config", label="a params: key the class does not take"),
        ),
        cause="The config belongs to a newer or other ldm code base (e.g. use_linear_in_transformer is SD 2.x "
              "only; CompVis' original repository lacks it).",
        fix="Use the ldm repository that matches the config (--code-root), or the config that matches the code.",
        causes=(
            Cause("K38.a", "The config's targets and parameters do not fit the code here",
                  (Need("a config target or parameter does not fit the code", ("config.targets",)),),
                  "Use the repository the config was written for."),
        ),
    ),
    Signature(
        "K39", "config-finetune-keys", "The config asks to fine-tune from a checkpoint (training only)",
        patterns=(Pattern(r"can only finetune from a given checkpoint", label="ldm finetune_keys"),),
        cause="finetune_keys is set in the config, which requires ckpt_path; it is a training option.",
        fix="Set `finetune_keys: null` under model.params for inference.",
        causes=(
            Cause("K39.a", "The config is a training config",
                  (Need("the config loads", ("config.load",), confirms=(), refutes=(), required=False),),
                  "Use the inference config."),
        ),
    ),
]
