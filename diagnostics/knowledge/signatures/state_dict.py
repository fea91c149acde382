"""Loading weights into the model: key sets and shapes (analysed by `state_dict.py`)."""

from __future__ import annotations

from typing import List

from .base import CLIP, Cause, Need, PROBLEM_OR_NOTE, Pattern, Signature, _LOAD_KEYS

SIGNATURES: List[Signature] = [
    Signature(
        "K05", "clip-position-ids", "Checkpoint has CLIP position_ids that transformers >= 4.31 does not expect",
        patterns=(
            Pattern(analysis="position-ids", label="key sets: only position_ids is unexpected"),
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
        "K07", "unet-in-channels", "Inpainting checkpoint and txt2img config disagree on UNet input channels",
        patterns=(
            Pattern(analysis="unet-in-channels", label="shapes: UNet input channels differ"),
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
            Pattern(analysis="context-dim", label="shapes: cross-attention context differs"),
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
            Pattern(analysis="ema-shape", label="shapes: the EMA copy differs from the model"),
            Pattern(analysis="ema-missing", label="key sets: EMA weights missing"),
            Pattern(analysis="ema-unexpected", label="key sets: EMA weights unused"),
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
        "K33", "ckpt-family-keys", "The checkpoint's keys belong to another model family",
        patterns=(
            Pattern(analysis="family", label="key sets: text-encoder keys of another family"),
            Pattern(analysis="clip-flat-keys", label="key sets: CLIP keys without text_model. for a transformers < 5"),
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
    Signature(
        "K41", "transformers5-clip-layout", "transformers 5 names the CLIP text encoder's weights without text_model.",
        patterns=(
            Pattern(analysis="transformers5-clip-layout",
                    label="key sets: every text-encoder key renamed by the dropped text_model. level"),
        ),
        cause="transformers 5 removed the `text_model.` level from CLIPTextModel's state dict, so an SD 1.x "
              "checkpoint's `cond_stage_model.transformer.text_model.*` keys no longer match the model's "
              "`cond_stage_model.transformer.*`. ldm loads with strict=False: it prints 196 missing and 196 "
              "unexpected keys and silently keeps the text encoder that from_pretrained(version) loaded instead of "
              "the checkpoint's (a fine-tuned text encoder is lost; a strict load fails).",
        fix="Rename the keys before `load_state_dict`: `cond_stage_model.transformer.text_model.X` -> "
            "`cond_stage_model.transformer.X` (or pin transformers < 5 for this checkpoint).",
        causes=(
            Cause("K41.a", "transformers >= 5 with a checkpoint in the transformers 4 layout",
                  (Need("the installed transformers and the checkpoint's text-encoder layout disagree",
                        ("compat.transformers5-clip-layout",), versions=({"transformers": ">=5"},)),),
                  "Rename the keys before `load_state_dict`: `cond_stage_model.transformer.text_model.X` -> "
                  "`cond_stage_model.transformer.X`, or pin `transformers<5` for this checkpoint."),
        ),
        reproduce=(_LOAD_KEYS,),
    ),
    Signature(
        "K42", "state-dict-prefix", "The checkpoint's keys carry an extra or missing prefix level",
        patterns=(Pattern(analysis="prefix-rename", label="key sets: one level added or dropped"),),
        cause="The state dict was saved from a wrapped model (DataParallel/DDP `module.`, torch.compile "
              "`_orig_mod.`, a trainer's `model.` or `state_dict.`), so every key differs from the model's by one "
              "level; strict=False drops them all.",
        fix="Strip (or add) that level in the keys before load_state_dict, e.g. "
            "`{k.removeprefix('module.'): v for k, v in sd.items()}`.",
        causes=(
            Cause("K42.a", "Loading reports the renamed keys here", (_LOAD_KEYS,),
                  "Rename the keys before loading."),
        ),
        reproduce=(_LOAD_KEYS,),
    ),
]
