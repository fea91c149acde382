"""The CLIP ViT-L/14 text tower: its architecture numbers, parameter shapes and `config.json`.

`config.json` describes the *text* tower (`CLIPTextModel`) only, with keys that transformers 4.19 to
5.x all understand, and `torch_dtype: float32` as the Hub's config has (transformers 5 would otherwise
build the model in the weights' dtype).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

from ...context import DEFAULT_CLIP_ID
from ...probes.checkpoint.records import numel_of
from ...util import version_at_least

REPO_ID = DEFAULT_CLIP_ID
POSITION_IDS = "text_model.embeddings.position_ids"


@dataclass(frozen=True)
class TextTower:
    """The architecture numbers of a CLIP text tower (`CLIPTextConfig`)."""

    name: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    max_position_embeddings: int
    projection_dim: int
    hidden_act: str = "quick_gelu"

    def expected_shapes(self) -> Dict[str, Tuple[int, ...]]:
        """The Hub's `text_model.*` parameter names and shapes (without the `position_ids` buffer)."""
        hidden, inner = self.hidden_size, self.intermediate_size
        shapes: Dict[str, Tuple[int, ...]] = {
            "text_model.embeddings.token_embedding.weight": (self.vocab_size, hidden),
            "text_model.embeddings.position_embedding.weight": (self.max_position_embeddings, hidden),
        }
        for index in range(self.num_hidden_layers):
            layer = f"text_model.encoder.layers.{index}."
            for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
                shapes[f"{layer}self_attn.{proj}.weight"] = (hidden, hidden)
                shapes[f"{layer}self_attn.{proj}.bias"] = (hidden,)
            for norm in ("layer_norm1", "layer_norm2"):
                shapes[f"{layer}{norm}.weight"] = (hidden,)
                shapes[f"{layer}{norm}.bias"] = (hidden,)
            shapes[f"{layer}mlp.fc1.weight"] = (inner, hidden)
            shapes[f"{layer}mlp.fc1.bias"] = (inner,)
            shapes[f"{layer}mlp.fc2.weight"] = (hidden, inner)
            shapes[f"{layer}mlp.fc2.bias"] = (hidden,)
        shapes["text_model.final_layer_norm.weight"] = (hidden,)
        shapes["text_model.final_layer_norm.bias"] = (hidden,)
        return shapes

    def parameters(self) -> int:
        return sum(numel_of(shape) for shape in self.expected_shapes().values())


# openai/clip-vit-large-patch14's text_config, as its config.json on the Hub gives it.
VIT_L14 = TextTower("CLIP ViT-L/14 text tower", vocab_size=49408, hidden_size=768, intermediate_size=3072,
                    num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77, projection_dim=768)


def text_config(tower: TextTower = VIT_L14) -> Dict[str, Any]:
    """config.json for `CLIPTextModel.from_pretrained`, in keys transformers 4.19 to 5.x all read.

    `model_type: clip_text_model` (not the Hub's full `clip`): only the text tower is provisioned, so
    nothing can mistake it for a CLIPModel with a vision tower. Token ids are the Hub's (bos 0, eos 2,
    pad 1): transformers >= 4.30 keeps CLIP's original pooling when `eos_token_id` is 2.
    """
    return {
        "architectures": ["CLIPTextModel"],
        "model_type": "clip_text_model",
        "vocab_size": tower.vocab_size,
        "hidden_size": tower.hidden_size,
        "intermediate_size": tower.intermediate_size,
        "projection_dim": tower.projection_dim,
        "num_hidden_layers": tower.num_hidden_layers,
        "num_attention_heads": tower.num_attention_heads,
        "max_position_embeddings": tower.max_position_embeddings,
        "hidden_act": tower.hidden_act,
        "layer_norm_eps": 1e-05,
        "attention_dropout": 0.0,
        "dropout": 0.0,
        "initializer_range": 0.02,
        "initializer_factor": 1.0,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "pad_token_id": 1,
        # The Hub's value. transformers 5 defaults to dtype="auto": without it an fp16 file would give
        # an fp16 model, unlike the Hub's and unlike ldm's after loading the checkpoint.
        "torch_dtype": "float32",
    }


def config_bytes(tower: TextTower = VIT_L14) -> bytes:
    return (json.dumps(text_config(tower), indent=2) + "\n").encode("utf-8")


def position_ids_wanted(transformers_version: Optional[str]) -> bool:
    """transformers < 4.31 keeps `position_ids` as a persistent buffer (the Hub's .bin carries it)."""
    newer = version_at_least(transformers_version, "4.31") if transformers_version else None
    return newer is False


def weights_name(versions: Mapping[str, Optional[str]]) -> str:
    """The weights file the installed transformers reads first (model.safetensors when unknown)."""
    from ...probes.needed_models import transformers_weight_names

    if not versions.get("transformers"):
        return "model.safetensors"  # no transformers here: the format every transformers >= 4.22 reads
    return transformers_weight_names(versions)[0]
