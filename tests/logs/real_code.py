"""Produce failure logs by running the real code paths, so their wording is the installed
libraries' own (torch, safetensors, transformers, huggingface_hub, ldm, the interpreter).

    python tests/logs/real_code.py [--normalise] OUTDIR [GROUP ...]     (default: every group)

`--normalise` rewrites this machine's paths (site-packages, the interpreter prefix, this
repository) to neutral ones, as for the copies kept in tests/logs/real/. Each scenario writes
OUTDIR/<scenario>.log with what the process printed (stdout and stderr, in
order), or OUTDIR/<scenario>.skip with the reason it cannot run on this machine. The groups run
in child interpreters because they need different environments (torch and hf share one: hf goes
first, as it sets the Hub variables before either library is imported):

- torch: state-dict mismatches through `nn.Module.load_state_dict`, `torch.load` of truncated,
  git-lfs-pointer and HTML files and of a Lightning-style checkpoint, safetensors header errors,
  a CPU/driverless `.cuda()`, huggingface_hub import errors.
- hf: transformers + huggingface_hub against a stand-in Hub on 127.0.0.1 (gated repo, invalid
  token), an offline load with an empty cache, and the retry log against a closed port (the
  backoff sleeps are skipped; the log lines are the library's own).
- ldm: `import ldm.models.diffusion.ddpm` with whatever pytorch_lightning is installed.
- nolightning: `torch.load(..., weights_only=False)` of the Lightning-style checkpoint in an
  interpreter that cannot import pytorch_lightning (site-packages minus Lightning).
- stray: `import ldm.util` from a directory holding a stray `ldm.py`.

The Lightning-style checkpoint pickles a class registered under the module name
`pytorch_lightning.callbacks.model_checkpoint` (the way the research notes' Ex-4 did), so no
Lightning install is needed to make it. Nothing here needs a network, a GPU or a model download.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import traceback
import types
from http.server import BaseHTTPRequestHandler, HTTPServer

GROUPS = ("torch", "hf", "ldm", "nolightning", "stray")
IN_ONE_PROCESS = ("hf", "torch")  # in this order: hf sets HF_ENDPOINT and HF_HOME before the imports

# scenario -> (group, signature it must be recognised as, what it runs)
SCENARIOS = {
    "k02_offline_clip_text_model": ("hf", "K02", "CLIPTextModel.from_pretrained(local_files_only=True), empty cache"),
    "k26_invalid_token": ("hf", "K26", "hf_hub_download with an invalid token (stand-in Hub answers 401)"),
    "k27_gated_tokenizer": ("hf", "K27", "CLIPTokenizer.from_pretrained on a gated repo (stand-in Hub)"),
    "k29_k02_hub_retries": ("hf", "K29", "hf_hub_download against a closed port, with the retry log"),
    "k03_k10_ldm_import": ("ldm", "K10", "import ldm.models.diffusion.ddpm (xformers line; Lightning import)"),
    "k05_position_ids": ("torch", "K05", "strict load of a state dict with text_model.embeddings.position_ids"),
    "k06_weights_only": ("torch", "K06", "torch.load (default weights_only) of a Lightning-style checkpoint"),
    "k07_in_channels": ("torch", "K07", "9-channel UNet input conv into a 4-channel model"),
    "k08_context_dim": ("torch", "K08", "SD 2 cross-attention and proj_in shapes into an SD 1 model"),
    "k09_ema_missing": ("torch", "K09", "strict load of a pruned state dict into a model with ldm's LitEma"),
    "k13_cuda_unavailable": ("torch", "K13", "torch.zeros(1).cuda() where CUDA is not usable"),
    "k16_cached_download": ("torch", "K16", "from huggingface_hub import cached_download"),
    "k17_hffolder": ("torch", "K17", "from huggingface_hub import HfFolder"),
    "k20_html_as_safetensors": ("torch", "K20", "safetensors load of an HTML page"),
    "k20_truncated_safetensors": ("torch", "K20", "safetensors load of a file missing its last 8 bytes"),
    "k20_tiny_safetensors": ("torch", "K20", "safetensors load of a 2-byte file"),
    "k21_truncated_zip": ("torch", "K21", "torch.load of a half-truncated small zip checkpoint"),
    "k21_truncated_zip_reader": ("torch", "K21", "torch.load of a half-truncated larger zip checkpoint"),
    "k22_lfs_pointer_default": ("torch", "K22", "torch.load (default weights_only) of a git-lfs pointer"),
    "k22_lfs_pointer_unsafe": ("torch", "K22", "torch.load(weights_only=False) of a git-lfs pointer"),
    "k22_html_unsafe": ("torch", "K22", "torch.load(weights_only=False) of an HTML page"),
    "k33_openclip_keys": ("torch", "K33", "strict load of OpenCLIP text-encoder keys into an SD 1 model"),
    "k32_no_lightning": ("nolightning", "K32", "torch.load(weights_only=False) of the Lightning checkpoint, no Lightning"),
    "k18_stray_ldm": ("stray", "K18", "import ldm.util next to a stray ldm.py"),
    "k41_transformers5_clip_layout": ("torch", "K41", "SD 1 text-encoder keys (text_model.*) into transformers 5's "
                                      "CLIPTextModel: ldm's strict=False prints, then a strict load"),
    "k42_module_prefix": ("torch", "K42", "strict load of a state dict saved from DataParallel (module.*)"),
}


class Skip(Exception):
    """The scenario cannot run here (missing package, a GPU present, ...)."""


def _write(out: str, name: str, text: str, skipped: bool = False) -> None:
    with open(os.path.join(out, name + (".skip" if skipped else ".log")), "w", encoding="utf-8") as fh:
        fh.write(text)


def _capture(out: str, name: str, fn) -> None:
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            try:
                fn()
            except Skip:
                raise
            except BaseException:  # what an uncaught exception would print
                traceback.print_exc()
    except Skip as exc:
        _write(out, name, str(exc), skipped=True)
        return
    _write(out, name, buf.getvalue())


# --- torch group ------------------------------------------------------------------------------------


def group_torch(out: str) -> None:
    import torch
    from torch import nn

    work = tempfile.mkdtemp(prefix="ldm-diag-real-")

    def nest(name: str, **children) -> nn.Module:
        cls = type(name, (nn.Module,), {})
        module = cls()
        for key, child in children.items():
            module.add_module(key, child)
        return module

    def k05():
        try:
            from transformers import CLIPTextConfig, CLIPTextModel
        except ImportError as exc:
            raise Skip(f"transformers not importable: {exc}")
        cfg = CLIPTextConfig(vocab_size=64, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                             num_attention_heads=2, max_position_embeddings=77)
        embedder = nest("FrozenCLIPEmbedder", transformer=CLIPTextModel(cfg))
        model = nest("LatentDiffusion", cond_stage_model=embedder)
        sd = dict(model.state_dict())
        key = "cond_stage_model.transformer.text_model.embeddings.position_ids"
        if key in sd:
            raise Skip("this transformers still keeps position_ids in the state dict (< 4.31)")
        sd[key] = torch.arange(77).expand((1, -1))
        model.load_state_dict(sd, strict=True)

    def lightning_checkpoint() -> str:
        names = ["pytorch_lightning", "pytorch_lightning.callbacks", "pytorch_lightning.callbacks.model_checkpoint"]
        saved = {n: sys.modules.get(n) for n in names}
        for n in names:
            sys.modules[n] = types.ModuleType(n)
        cls = type("ModelCheckpoint", (), {"__module__": names[-1]})
        sys.modules[names[-1]].ModelCheckpoint = cls
        path = os.path.join(out, "lightning.ckpt")
        try:
            torch.save({"state_dict": {"model.diffusion_model.out.2.bias": torch.zeros(4)}, "global_step": 470000,
                        "callbacks": {cls: {"best_model_score": None}}}, path)
        finally:
            for n, mod in saved.items():
                if mod is None:
                    sys.modules.pop(n, None)
                else:
                    sys.modules[n] = mod
        return path

    ckpt = lightning_checkpoint()

    def k06():
        torch.load(ckpt, map_location="cpu")

    def unet(conv_in: nn.Module, block1: nn.Module = None) -> nn.Module:
        blocks = nn.ModuleList([nn.ModuleList([conv_in])])
        if block1 is not None:
            blocks.append(block1)
        diffusion_model = nest("UNetModel", input_blocks=blocks)
        return nest("LatentDiffusion", model=nest("DiffusionWrapper", diffusion_model=diffusion_model))

    def k07():
        model = unet(nn.Conv2d(4, 320, 3, padding=1))
        sd = dict(model.state_dict())
        sd["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(320, 9, 3, 3)
        model.load_state_dict(sd, strict=False)  # ldm loads with strict=False; shapes still raise

    def k08():
        attn2 = nest("CrossAttention", to_k=nn.Linear(768, 320, bias=False), to_v=nn.Linear(768, 320, bias=False))
        block = nest("BasicTransformerBlock", attn2=attn2)
        st = nest("SpatialTransformer", proj_in=nn.Conv2d(320, 320, 1), transformer_blocks=nn.ModuleList([block]))
        model = unet(nn.Conv2d(4, 320, 3, padding=1), nn.ModuleList([nn.Identity(), st]))
        sd = dict(model.state_dict())
        prefix = "model.diffusion_model.input_blocks.1.1."
        sd[prefix + "transformer_blocks.0.attn2.to_k.weight"] = torch.zeros(320, 1024)
        sd[prefix + "transformer_blocks.0.attn2.to_v.weight"] = torch.zeros(320, 1024)
        sd[prefix + "proj_in.weight"] = torch.zeros(320, 320)
        model.load_state_dict(sd, strict=False)

    def k09():
        try:
            from ldm.modules.ema import LitEma
        except Exception as exc:
            raise Skip(f"ldm.modules.ema not importable: {exc}")
        inner = unet(nn.Conv2d(4, 8, 3, padding=1)).model
        model = nest("LatentDiffusion", model=inner)
        pruned = {k: v.clone() for k, v in model.state_dict().items()}  # an EMA-less checkpoint
        model.add_module("model_ema", LitEma(model.model))  # config use_ema: True
        model.load_state_dict(pruned, strict=True)

    def k13():
        if torch.cuda.is_available():
            raise Skip("CUDA is usable on this machine")
        torch.zeros(1).cuda()

    def k16():
        import huggingface_hub

        if hasattr(huggingface_hub, "cached_download"):
            raise Skip(f"huggingface_hub {huggingface_hub.__version__} still has cached_download")
        from huggingface_hub import cached_download  # noqa: F401

    def k17():
        import huggingface_hub

        if hasattr(huggingface_hub, "HfFolder"):
            raise Skip(f"huggingface_hub {huggingface_hub.__version__} still has HfFolder")
        from huggingface_hub import HfFolder  # noqa: F401

    def safetensors_load(path: str):
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise Skip(f"safetensors not importable: {exc}")
        load_file(path)

    def k20_html():
        path = os.path.join(work, "v1-5-pruned-emaonly.safetensors")
        with open(path, "w") as fh:
            fh.write("<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>Log in to continue</body></html>\n")
        safetensors_load(path)

    def k20_truncated():
        from safetensors.torch import save_file

        path = os.path.join(work, "model.safetensors")
        save_file({"model.diffusion_model.out.2.bias": torch.zeros(64)}, path)
        data = open(path, "rb").read()
        open(path, "wb").write(data[:-8])
        safetensors_load(path)

    def k20_tiny():
        path = os.path.join(work, "tiny.safetensors")
        open(path, "wb").write(b"\x00\x01")
        safetensors_load(path)

    def truncated_zip(floats: int):
        # Cut in half. Depending on where the cut falls, torch reports a missing zip directory or
        # (torch 2.14, larger files) an OSError from its zip reader: both are real wordings.
        path = os.path.join(work, f"sd-v1-5-inpainting-{floats}.ckpt")
        torch.save({"state_dict": {"model.diffusion_model.out.2.bias": torch.zeros(floats)}}, path)
        data = open(path, "rb").read()
        open(path, "wb").write(data[: len(data) // 2])
        torch.load(path, map_location="cpu")

    lfs = os.path.join(work, "512-inpainting-ema.ckpt")
    with open(lfs, "w") as fh:
        fh.write("version https://git-lfs.github.com/spec/v1\n"
                 "oid sha256:b29e2ed9c5e4ec8bb2ba2d3b1e2cd20b7bd20e8a3f2a9e9e1c1e0e1a9d2f9a11\nsize 5214865159\n")
    html = os.path.join(work, "sd-v1-4.ckpt")
    with open(html, "w") as fh:
        fh.write("<!DOCTYPE html><html><body><h1>403 Forbidden</h1></body></html>\n")

    def k22_lfs_default():
        torch.load(lfs, map_location="cpu")

    def k22_lfs_unsafe():
        torch.load(lfs, map_location="cpu", weights_only=False)

    def k22_html():
        torch.load(html, map_location="cpu", weights_only=False)

    def k21_small():
        truncated_zip(1000)

    def k21_larger():
        truncated_zip(4096)

    def k33():
        te = nest("FrozenCLIPEmbedder", transformer=nest(
            "CLIPTextModel", text_model=nest("CLIPTextTransformer", embeddings=nest(
                "CLIPTextEmbeddings", token_embedding=nn.Embedding(16, 8)))))
        model = nest("LatentDiffusion", cond_stage_model=te)
        sd = {"cond_stage_model.model.token_embedding.weight": torch.zeros(16, 8),
              "cond_stage_model.model.positional_embedding": torch.zeros(77, 8)}
        model.load_state_dict(sd, strict=True)

    def k41():
        try:
            import transformers
            from transformers import CLIPTextConfig, CLIPTextModel
        except ImportError as exc:
            raise Skip(f"transformers not importable: {exc}")
        cfg = CLIPTextConfig(vocab_size=64, hidden_size=8, intermediate_size=16, num_hidden_layers=12,
                             num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                             pad_token_id=1)
        model = nest("LatentDiffusion", cond_stage_model=nest("FrozenCLIPEmbedder", transformer=CLIPTextModel(cfg)))
        sd = dict(model.state_dict())
        if any(".text_model." in key for key in sd):
            raise Skip(f"transformers {transformers.__version__} still names the weights text_model.* (< 5)")
        # An SD 1.x checkpoint, written by transformers 4: every text-encoder key under text_model.
        old = {key.replace("cond_stage_model.transformer.", "cond_stage_model.transformer.text_model."): value
               for key, value in sd.items()}
        missing, unexpected = model.load_state_dict(old, strict=False)  # what ldm's init_from_ckpt does
        print(f"Restored from models/ldm/stable-diffusion-v1/model.ckpt with {len(missing)} missing and "
              f"{len(unexpected)} unexpected keys")
        print(f"Missing Keys:\n {missing}")
        print(f"Unexpected Keys:\n {unexpected}")
        model.load_state_dict(old, strict=True)

    def k42():
        model = nest("LatentDiffusion", model=nest("DiffusionWrapper", diffusion_model=nest(
            "UNetModel", out=nn.Conv2d(4, 4, 3), input_blocks=nn.Conv2d(4, 4, 3))))
        saved = {"module." + key: value for key, value in model.state_dict().items()}  # saved from DataParallel
        model.load_state_dict(saved, strict=True)

    scenarios = {
        "k41_transformers5_clip_layout": k41, "k42_module_prefix": k42,
        "k05_position_ids": k05, "k06_weights_only": k06, "k07_in_channels": k07, "k08_context_dim": k08,
        "k09_ema_missing": k09, "k13_cuda_unavailable": k13, "k16_cached_download": k16, "k17_hffolder": k17,
        "k20_html_as_safetensors": k20_html, "k20_truncated_safetensors": k20_truncated,
        "k20_tiny_safetensors": k20_tiny, "k21_truncated_zip": k21_small,
        "k21_truncated_zip_reader": k21_larger, "k22_lfs_pointer_default": k22_lfs_default,
        "k22_lfs_pointer_unsafe": k22_lfs_unsafe, "k22_html_unsafe": k22_html,
        "k33_openclip_keys": k33,
    }
    for name, fn in scenarios.items():
        _capture(out, name, fn)


# --- hf group ---------------------------------------------------------------------------------------

GATED = "openai/clip-vit-large-patch14"


class _StandInHub(BaseHTTPRequestHandler):
    """Answers like the Hub for the two refusals the scenarios need; everything else is 404."""

    def _answer(self) -> None:
        if self.path.startswith(f"/{GATED}/"):
            self.send_response(401)
            self.send_header("X-Error-Code", "GatedRepo")
            self.send_header("X-Error-Message", f"Access to model {GATED} is restricted. You must have access to it "
                                                "and be authenticated to access it. Please log in.")
        elif self.headers.get("Authorization"):
            self.send_response(401)
            self.send_header("X-Error-Message", "Invalid credentials in Authorization header")
        else:
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = _answer
    do_GET = _answer

    def log_message(self, *args) -> None:  # keep the scenario logs clean
        pass


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def group_hf(out: str) -> None:
    server = HTTPServer(("127.0.0.1", 0), _StandInHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # Before the imports: both libraries read these once.
    os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{server.server_port}"
    os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="ldm-diag-hf-")
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        os.environ.pop(var, None)
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    try:
        import huggingface_hub
        from huggingface_hub import hf_hub_download
    except ImportError as exc:
        for name, (group, _, _) in SCENARIOS.items():
            if group == "hf":
                _write(out, name, f"huggingface_hub not importable: {exc}", skipped=True)
        return
    try:
        import huggingface_hub.utils._http as hub_http

        hub_http.time.sleep = lambda seconds: None  # keep the retry log, skip the waiting
    except Exception:
        pass

    def transformers_or_skip():
        try:
            import transformers
        except ImportError as exc:
            raise Skip(f"transformers not importable: {exc}")
        return transformers

    def k02():
        transformers_or_skip().CLIPTextModel.from_pretrained(GATED, local_files_only=True)

    def k26():
        hf_hub_download("CompVis/stable-diffusion-v1-4", "model_index.json", token="hf_" + "Q" * 34)

    def k27():
        tok = transformers_or_skip().CLIPTokenizer.from_pretrained(GATED)
        print(f"tokenizer loaded with vocabulary {len(tok)}")

    def k29():
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
        try:
            hf_hub_download(GATED, "config.json", endpoint=f"http://127.0.0.1:{_closed_port()}")
        finally:
            logging.getLogger().removeHandler(handler)

    for name, fn in (("k02_offline_clip_text_model", k02), ("k26_invalid_token", k26),
                     ("k27_gated_tokenizer", k27), ("k29_k02_hub_retries", k29)):
        _capture(out, name, fn)
    server.shutdown()
    print(json.dumps({"huggingface_hub": huggingface_hub.__version__}))


# --- groups that need their own interpreter -------------------------------------------------------


def _run(argv, cwd=None, env=None) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, text=True)
    return proc.stdout


def group_ldm(out: str) -> None:
    try:
        import importlib.util

        if importlib.util.find_spec("ldm") is None:
            raise ImportError("ldm is not installed")
    except ImportError as exc:
        _write(out, "k03_k10_ldm_import", str(exc), skipped=True)
        return
    _write(out, "k03_k10_ldm_import", _run([sys.executable, "-c", "import ldm.models.diffusion.ddpm"]))


def _site_packages() -> str:
    """The site-packages torch is installed in (found, not imported: importing torch takes seconds)."""
    import importlib.util

    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.origin:
        raise ImportError("No module named 'torch'")
    return os.path.dirname(os.path.dirname(spec.origin))


def group_nolightning(out: str) -> None:
    ckpt = os.path.join(out, "lightning.ckpt")
    if not os.path.exists(ckpt):
        _write(out, "k32_no_lightning", "the torch group did not write lightning.ckpt", skipped=True)
        return
    site = _site_packages()
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    link = os.path.join(tempfile.mkdtemp(prefix="ldm-diag-"), "slim-env", "lib", version, "site-packages")
    os.makedirs(link)
    for name in os.listdir(site):  # the same packages, minus Lightning
        if not name.lower().startswith(("pytorch_lightning", "lightning")):
            os.symlink(os.path.join(site, name), os.path.join(link, name))
    code = (f"import sys; sys.path.insert(0, {link!r}); import torch; "
            f"torch.load({ckpt!r}, map_location='cpu', weights_only=False)")
    _write(out, "k32_no_lightning", _run([sys.executable, "-S", "-c", code]))


def group_stray(out: str) -> None:
    work = tempfile.mkdtemp(prefix="ldm-diag-stray-")
    with open(os.path.join(work, "ldm.py"), "w") as fh:
        fh.write("# an unrelated module that happens to be called ldm\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    _write(out, "k18_stray_ldm", _run([sys.executable, "-c", "import ldm.util"], cwd=work, env=env))


def normalise(out: str) -> None:
    """Replace this machine's paths in OUTDIR/*.log with neutral ones."""
    import sysconfig

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    swaps = [(sysconfig.get_paths()["purelib"], f"/opt/venv/lib/{version}/site-packages"),
             (sys.prefix, "/opt/venv"), (repo, "/srv/ldm-diagnostics")]
    for name in os.listdir(out):
        if not name.endswith(".log"):
            continue
        path = os.path.join(out, name)
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        for old, new in swaps:
            text = text.replace(old, new)
        text = re.sub(r"/[\w/.-]*?/ldm-diag-\w+/slim-env", "/opt/slim-env", text)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)


def main(argv) -> int:
    argv = list(argv)
    norm = "--normalise" in argv
    if norm:
        argv.remove("--normalise")
    if len(argv) < 2:
        print(__doc__)
        return 2
    out = os.path.abspath(argv[1])
    os.makedirs(out, exist_ok=True)
    groups = argv[2:] or list(GROUPS)
    if set(groups) <= set(IN_ONE_PROCESS):
        for current in [g for g in IN_ONE_PROCESS if g in groups]:
            try:
                {"torch": group_torch, "hf": group_hf}[current](out)
            except ImportError as exc:
                for name, (group, _, _) in SCENARIOS.items():
                    if group == current and not os.path.exists(os.path.join(out, name + ".log")):
                        _write(out, name, f"{current} group cannot run: {exc}", skipped=True)
        if norm:
            normalise(out)
        return 0
    # The torch and hf groups run in one child, side by side with ldm and stray; nolightning needs the
    # torch group's checkpoint.
    shared = [g for g in IN_ONE_PROCESS if g in groups]
    child = subprocess.Popen([sys.executable, os.path.abspath(__file__), out, *shared], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True) if shared else None
    for group in groups:
        if group in ("ldm", "stray"):
            {"ldm": group_ldm, "stray": group_stray}[group](out)
    if child is not None:
        _write(out, "_group_" + "_".join(shared), child.communicate()[0])
    if "nolightning" in groups:
        group_nolightning(out)
    if norm:
        normalise(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
