"""The smoke forward: text encoder on a prompt, one UNet step, one VAE decode; outputs must be finite.

Each part is measured on its own (`parts.text`, `parts.unet`, `parts.vae`: shapes, finiteness,
seconds, or `skipped` / `error`), so one broken component does not hide the others: the UNet step
still runs on a random context when the text encoder failed.
"""

from __future__ import annotations

import contextlib
import time

from .protocol import error_info, is_oom, peak_rss
from .stages import PROMPT


def _finite(torch, tensor):
    return bool(torch.isfinite(tensor.float()).all().item())


def _dtype_name(tensor):
    return str(tensor.dtype).replace("torch.", "")


def _context_dim(model):
    for name, module in model.named_modules():
        if name.endswith("attn2.to_k") and hasattr(module, "in_features"):
            return int(module.in_features)
    return None


def latent_size(request, model, device):
    """The latent side the smoke forward uses: the request's, else the smallest that fits the UNet."""
    size = request.get("latent_size")
    if not size:
        # the smallest latent whose deepest UNet level is still 2x2 (1x1 breaks GroupNorm on narrow models):
        # 16 (128 px) for SD's four levels on the CPU; 64 (512 px, the real size) on a GPU
        unet = getattr(getattr(model, "model", None), "diffusion_model", None)
        levels = len(getattr(unet, "channel_mult", None) or (1, 2, 4, 4))
        size = 64 if device == "cuda" else max(8, 2 ** levels)
    return int(size)


class SmokeRun:
    """One smoke forward: the parts it ran, the exceptions they raised, the text context for the UNet and
    the decoded image's side."""

    def __init__(self, torch, model, device, size):
        self.torch, self.model, self.device, self.size = torch, model, device, size
        self.parts = {}
        self.failures = []
        self.context = None
        self.image_size = size * 8  # until the VAE decode says otherwise

    def part(self, name, run, **fields):
        """Run one part (`run(part)` fills it in or says why it skipped), timed, its exception recorded."""
        part = dict(fields)
        started = time.perf_counter()
        try:
            run(part)
        except Exception as exc:
            part["error"] = error_info(exc)
            self.failures.append((name, exc))
        part["seconds"] = time.perf_counter() - started
        self.parts[name] = part

    def text(self, part):
        model = self.model
        if getattr(model, "cond_stage_model", None) is None:
            part["skipped"] = "the model has no text encoder (cond_stage_model is None)"
            return
        context = model.get_learned_conditioning([PROMPT])
        if isinstance(context, (list, tuple)):
            context = context[0]
        self.context = context
        part.update(shape=list(context.shape), dtype=_dtype_name(context), finite=_finite(self.torch, context))

    def unet(self, part):
        torch, model, device, size = self.torch, self.model, self.device, self.size
        wrapper = getattr(model, "model", None)
        unet = getattr(wrapper, "diffusion_model", None)
        if unet is None:
            part["skipped"] = "the model has no model.diffusion_model (UNet)"
            return
        key = getattr(wrapper, "conditioning_key", None)
        latent_channels = int(getattr(model, "channels", 4) or 4)
        in_channels = int(getattr(unet, "in_channels", latent_channels))
        concat_channels = in_channels - latent_channels
        part.update(conditioning_key=key, latent_channels=latent_channels, unet_in_channels=in_channels,
                    concat_channels=concat_channels if key in ("concat", "hybrid") else 0)
        if key not in (None, "crossattn", "concat", "hybrid"):
            part["skipped"] = "conditioning_key %r needs class/adm inputs; not covered by the smoke forward" % key
            return
        latents = torch.randn(1, latent_channels, size, size, device=device)
        cond = {}
        if key in ("crossattn", "hybrid"):
            if self.context is None:
                self.context = torch.randn(1, 77, _context_dim(model) or 768, device=device)
                part["context"] = "random (the text encoder did not run)"
            cond["c_crossattn"] = [self.context]
        if key in ("concat", "hybrid"):
            # inpainting: mask (1 channel) + masked-image latents (4 channels)
            cond["c_concat"] = [torch.randn(1, max(concat_channels, 0), size, size, device=device)]
        timestep = torch.full((1,), 500, device=device, dtype=torch.long)
        out = model.apply_model(latents, timestep, cond)
        part.update(shape=list(out.shape), finite=_finite(torch, out), input_shape=[1, in_channels, size, size])

    def vae(self, part):
        model, size = self.model, self.size
        vae = getattr(model, "first_stage_model", None)
        if vae is None or not hasattr(model, "decode_first_stage"):
            part["skipped"] = "the model has no first_stage_model (VAE)"
            return
        channels = int(getattr(vae, "embed_dim", getattr(model, "channels", 4)))
        latents = self.torch.randn(1, channels, size, size, device=self.device)
        image = model.decode_first_stage(latents)
        part.update(shape=list(image.shape), finite=_finite(self.torch, image),
                    input_shape=[1, channels, size, size])
        self.image_size = int(image.shape[-1])


def stage_smoke(request, state):
    """Text encoder, one UNet step and one VAE decode, under autocast for fp16 on CUDA."""
    torch = state["torch"]
    device = state["device"]
    size = latent_size(request, state["model"], device)
    run = SmokeRun(torch, state["model"], device, size)
    autocast = contextlib.nullcontext()
    if device == "cuda" and state["dtype"] == torch.float16:
        autocast = torch.autocast("cuda", dtype=torch.float16)
    torch.manual_seed(0)
    with torch.no_grad(), autocast:
        run.part("text", run.text, prompt=PROMPT)
        run.part("unet", run.unet)
        run.part("vae", run.vae)
    info = {"latent_size": size, "image_size": run.image_size, "parts": run.parts}
    if device == "cuda":
        torch.cuda.synchronize()
        info["max_memory_allocated"] = int(torch.cuda.max_memory_allocated())
    info["rss_peak_bytes"] = peak_rss()
    info["oom"] = any(is_oom(exc) for _, exc in run.failures)
    return info
