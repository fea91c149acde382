"""Offline CLIP remedy: make `openai/clip-vit-large-patch14` loadable from the checkpoint itself (issue 7).

ldm's `FrozenCLIPEmbedder()` calls `CLIPTokenizer.from_pretrained` and `CLIPTextModel.from_pretrained`
with `openai/clip-vit-large-patch14` before the checkpoint is loaded, so a server without the Hub
fails (the seed's OSError; a silent 2-token tokenizer with transformers 5) although every SD 1.x
checkpoint carries the complete text encoder. The seed fixed it by downloading the whole Hub repo
(1.7 GB, vision tower included) and editing ldm's code. This package needs neither:

1. the tokenizer files are generated from OpenAI's BPE merges shipped with this package
   (`clip_files`: vocab.json and merges.txt byte-identical to the Hub's);
2. `tower`: `config.json` describes the ViT-L/14 *text* tower (`CLIPTextModel`), with only keys that
   transformers 4.19 to 5.x understand, and `torch_dtype: float32` as the Hub's config has;
3. `selection`: the weights are the checkpoint's `cond_stage_model.transformer.*` tensors (SD 1.x
   `text_model.*` names, NAI-style flat names, SDXL's `conditioner.embedders.0.transformer.*`, a
   diffusers `text_encoder/`), renamed to the Hub's `text_model.*` names;
4. `writers`: copied byte for byte in their own dtype from the offsets the checkpoint readers record:
   the checkpoint's pickle is never executed, and neither torch nor numpy is needed for
   `model.safetensors` (transformers < 4.22, which reads only `pytorch_model.bin`, needs torch to
   write that file). `position_ids` are never copied (merged checkpoints carry broken ones): a fresh
   `arange(77)` is written for transformers < 4.31, where it is a persistent buffer, and nothing for
   newer versions, where it is not;
5. `placement`: `--hf-cache` writes a Hub-layout entry (blobs named by etag, `snapshots/REV/*` relative
   links, `refs/main` written last so an interrupted run is never visible) into the cache the installed
   transformers reads, or the flat legacy cache of transformers < 4.22 (files named by the sha256 of
   their URL); `--clip-dir DIR` (older name `--out`) writes a plain directory. A complete existing entry is never touched, existing
   files are never overwritten, every file is written to a temporary name and renamed, and the snapshot
   carries a README saying where it came from. Its revision is derived from the content, not a Hub
   commit, so a later online `hf download` supersedes it instead of mistaking it for the real files.

`provisioning.provision()` returns a `ProvisionResult` (plain data, never raises for bad input);
`recheck` re-runs the affected checks offline and loads the result in a fresh process, and the command
in `commands/provision_clip.py` prints and writes the report.
"""

from __future__ import annotations

from .placement import MARKER, MARKER_LINE, clip_model_entry, existing_resolution, is_ours, repo_dir
from .provisioning import SEED_DOWNLOAD_BYTES, ProvisionResult, minimal_download, provision
from .selection import SOURCES, CheckpointRead, Selection, read_checkpoint, select_text_encoder
from .tower import REPO_ID, VIT_L14, TextTower, config_bytes, position_ids_wanted, text_config, weights_name
from .writers import safetensors_header, write_safetensors

__all__ = ["MARKER", "MARKER_LINE", "REPO_ID", "SEED_DOWNLOAD_BYTES", "SOURCES", "VIT_L14", "CheckpointRead",
           "ProvisionResult", "Selection", "TextTower", "clip_model_entry", "config_bytes", "existing_resolution",
           "is_ours", "minimal_download", "position_ids_wanted", "provision", "read_checkpoint", "repo_dir",
           "safetensors_header", "select_text_encoder", "text_config", "weights_name", "write_safetensors"]
