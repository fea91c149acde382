"""Child process that really builds and loads the user's LDM model: `python -m diagnostics.probes._model_child`.

Building the model runs the user's own `ldm` code, which can crash the interpreter, hang on the
network (CLIP downloads) or run out of memory, so `probes/model.py` runs this package in a child
interpreter with a timeout and reads what it reports. It does what `ldm.util.instantiate_from_config`
and the CompVis/Stability `load_model_from_config` do, one stage at a time:

  import       import `model.target` (with --code-root first on sys.path) and every other target
  instantiate  `cls(**config.model.params)`, with parameters on the meta device where torch allows
               (no weights are allocated; third-party `from_pretrained` loaders still run for real)
  load         the checkpoint's state dict, read with `weights_only=True` or safetensors (never an
               unsafe unpickling), compared key by key and loaded with `strict=False`
  device       move to the CPU or GPU (optionally fp16), with time and memory
  smoke        text encoder on a prompt, one UNet step, one VAE decode; outputs must be finite

Each stage prints a line `@@ldm-diagnostics@@ {json}` on stdout when it begins and ends, so the
parent knows how far a child got even when it is killed. Everything else on stdout and stderr is
the user's code talking ("No module 'xformers'...", "DiffusionWrapper has 859.54 M params.").

`python -m diagnostics.probes._model_child layout CKPT` prints the checkpoint's tensor names,
shapes and dtypes, read with `torch.load(weights_only=True, mmap=True, map_location="meta")`.

One job per module: `protocol` (the event lines, error objects), `meta_device` (building without
allocating), `state_dict` (reading the checkpoint safely), `stages` (import, instantiate, load,
device), `smoke` (the smoke forward) and `runner` (the order, the skips, `main`).

This package runs in the user's interpreter: it must stay Python 3.8-compatible, import torch,
omegaconf and the user's code only inside functions, and import nothing of ours beyond the standard
library users `probes/ldm_config.py` and `probes/checkpoint/` (no jinja2, requests or packaging).
"""

from __future__ import annotations

from .meta_device import materialise, meta_supported, parameters_on_meta
from .protocol import MARK, StageError, emit, error_info, parse_event_line
from .runner import STAGES, main, model_main
from .state_dict import checkpoint_format, layout_main, read_state_dict

__all__ = ["MARK", "STAGES", "StageError", "checkpoint_format", "emit", "error_info", "layout_main", "main",
           "materialise", "meta_supported", "model_main", "parameters_on_meta", "parse_event_line",
           "read_state_dict"]
