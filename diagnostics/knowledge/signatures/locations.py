"""Where ldm's well-known frames live, for naming the class of a method (see `qualnames.py`)."""

from __future__ import annotations

from typing import Dict, List

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
