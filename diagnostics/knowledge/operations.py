"""Which operation failed, read from a traceback's frames and their code lines.

The wording of an error changes with every library release; the place it is raised in does not.
`infer_operation` walks the frames from the innermost outwards and names the first operation one
of them belongs to:
- `text-encoder-load`: building the tokenizer or text encoder (`FrozenCLIPEmbedder`,
  `FrozenOpenCLIPEmbedder`, `CLIPTokenizer` / `CLIPTextModel.from_pretrained`, open_clip);
- `checkpoint-read`: reading a checkpoint (`torch.load`, safetensors `load_file` / `safe_open`,
  pickle, the web UIs' readers);
- `weights-load`: loading weights into a model (`load_state_dict`);
- `cuda`: CUDA initialisation, allocation and kernels;
- `model-import`: importing the model code (`ldm`, `taming`, `pytorch_lightning`, ...).

A signature may name an operation and an exception class instead of a message
(`Pattern(operation=..., exception=...)`), so an unfamiliar message in a familiar place still
lands on the checks that decide it. Standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Tuple

from .records import Frame, Traceback

_MODEL_PACKAGES = r"(?:ldm|sgm|taming|pytorch_lightning|lightning|torchmetrics|open_clip|clip|k_diffusion|xformers|kornia)"


@dataclass(frozen=True)
class Operation:
    name: str
    title: str
    code: str = ""  # regex on the frame's source line
    place: str = ""  # regex on "path function" of the frame

    def matches(self, frame: Frame) -> bool:
        where = f"{frame.file.replace(chr(92), '/')} {frame.qualname or frame.function}"
        return bool((self.code and re.search(self.code, frame.code or ""))
                    or (self.place and re.search(self.place, where)))


OPERATIONS: Tuple[Operation, ...] = (
    Operation("text-encoder-load", "building the tokenizer or text encoder",
              code=r"(?:CLIPTokenizer|CLIPTextModel|AutoTokenizer|CLIPTokenizerFast|T5Tokenizer|"
                   r"CLIPVisionModel\w*|AutoFeatureExtractor|CLIPImageProcessor)\.from_pretrained|"
                   r"open_clip\.create_model|create_model_and_transforms|FrozenCLIPEmbedder\(|FrozenOpenCLIPEmbedder\(",
              place=r"/transformers/(?:tokenization_utils\w*|models/clip/\w+|modeling_utils|configuration_utils|"
                    r"utils/hub|tokenization_\w+)\.py |/open_clip/(?:factory|pretrained)\.py |"
                    r"FrozenCLIPEmbedder\.__init__|FrozenOpenCLIPEmbedder\.__init__"),
    Operation("checkpoint-read", "reading a checkpoint",
              code=r"torch\.load\(|load_file\(|safe_open\(|safetensors\.torch\.load|pickle\.load|read_state_dict\(|"
                   r"load_torch_file\(|load_checkpoint\(|unpickler\.load\(",
              place=r"/torch/serialization\.py |/safetensors/\w+\.py |/pickle\.py |safe_unpickle|check_pt|"
                    r"/modules/safe\.py |load_torch_file"),
    Operation("weights-load", "loading weights into the model",
              code=r"\.load_state_dict\(", place=r"/torch/nn/modules/module\.py load_state_dict"),
    Operation("cuda", "CUDA (initialisation, allocation, kernels)",
              code=r"\.cuda\(|\.to\(\s*['\"]?cuda|torch\.cuda\.",
              place=r"/torch/cuda/\w+\.py |_lazy_init|/xformers/ops/"),
    Operation("model-import", "importing the model code",
              code=rf"^(?:from|import)\s+{_MODEL_PACKAGES}\b|^(?:from|import)\s+(?:transformers|huggingface_hub|"
                   rf"diffusers|numpy|torchvision)\b|importlib\.import_module|get_obj_from_str",
              place=rf"/{_MODEL_PACKAGES}/.*\.py <module>"),
)
BY_NAME = {op.name: op for op in OPERATIONS}


def infer_operation(traceback: Optional[Traceback]) -> Optional[Operation]:
    """The operation the failure happened in, or None when no frame tells."""
    if traceback is None:
        return None
    links = [traceback.final] + [link for link in reversed(traceback.links) if link is not traceback.final]
    for link in links:
        for frame in reversed(link.frames):
            for operation in OPERATIONS:
                if operation.matches(frame):
                    return operation
    return None
