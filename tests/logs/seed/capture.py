"""Capture the seed failure, `FrozenCLIPEmbedder()` with an empty Hugging Face cache and no Hub,
under a given transformers installation.

    python tests/logs/seed/capture.py [--normalise] OUTDIR NAME [SITE_DIR] [--standin] [--python EXE]

NAME names the logs: OUTDIR/seed_<NAME>_offline.log and OUTDIR/seed_<NAME>_no_network.log.
SITE_DIR, when given, is put first on PYTHONPATH of the child interpreter: a folder filled with
`pip install --no-deps --target SITE_DIR transformers==X tokenizers==Y huggingface_hub==Z`, so
that this transformers (and its dist-info, which transformers reads its dependency versions from)
wins over the interpreter's own. `--python EXE` runs another interpreter (default: this one).

Each log is what a script that builds the embedder prints, stdout and stderr in order:

- offline: HF_HUB_OFFLINE=1 and TRANSFORMERS_OFFLINE=1, HF_HOME an empty folder;
- no_network: the offline switches unset, HF_ENDPOINT (read by every transformers from 4.19 on)
  at a closed port on 127.0.0.1, HF_HOME an empty folder.

The script imports the real `ldm` (`from ldm.modules.encoders.modules import FrozenCLIPEmbedder`)
and calls `FrozenCLIPEmbedder()`. With `--standin` (for an interpreter where the real `ldm`
cannot be imported, e.g. without torch) it runs instead a class `FrozenCLIPEmbedder` whose
`__init__` makes the same two calls as ldm's, `CLIPTokenizer.from_pretrained(version)` then
`CLIPTextModel.from_pretrained(version)`, with ldm's default version.

`--normalise` rewrites machine paths as tests/logs/real_code.py does: the site-packages of the
child interpreter and SITE_DIR -> /opt/venv/lib/pythonX.Y/site-packages, the interpreter prefix
-> /opt/venv, the base interpreter's prefix -> /usr/local, the temporary folders -> /srv/seed-run and /srv/hf-home, the closed port -> 9.
Nothing needs a network, a GPU or a model download.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile

REAL_SCRIPT = """\
from ldm.modules.encoders.modules import FrozenCLIPEmbedder

embedder = FrozenCLIPEmbedder()
print("loaded", type(embedder.tokenizer).__name__, type(embedder.transformer).__name__)
"""

STANDIN_SCRIPT = """\
from transformers import CLIPTextModel, CLIPTokenizer


class FrozenCLIPEmbedder:
    \"\"\"The two Hub calls of ldm.modules.encoders.modules.FrozenCLIPEmbedder.__init__.\"\"\"

    def __init__(self, version="openai/clip-vit-large-patch14"):
        self.tokenizer = CLIPTokenizer.from_pretrained(version)
        self.transformer = CLIPTextModel.from_pretrained(version)


embedder = FrozenCLIPEmbedder()
print("loaded", type(embedder.tokenizer).__name__, type(embedder.transformer).__name__)
"""

CHILD_TIMEOUT_S = 300
HUB_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_ENDPOINT",
                 "HUGGINGFACE_CO_RESOLVE_ENDPOINT", "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE",
                 "TRANSFORMERS_CACHE", "PYTORCH_TRANSFORMERS_CACHE", "PYTORCH_PRETRAINED_BERT_CACHE",
                 "XDG_CACHE_HOME", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HTTPS_PROXY", "HTTP_PROXY",
                 "https_proxy", "http_proxy", "ALL_PROXY", "all_proxy", "PYTHONPATH")


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, read, released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_environment(mode: str, hf_home: str, site_dir: str, port: int) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in HUB_VARIABLES}
    env.update({"HF_HOME": hf_home, "XDG_CACHE_HOME": os.path.join(hf_home, "xdg"), "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1", "TOKENIZERS_PARALLELISM": "false"})
    if site_dir:
        env["PYTHONPATH"] = site_dir
    if mode == "offline":
        env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    else:
        endpoint = f"http://127.0.0.1:{port}"
        env.update({"HF_ENDPOINT": endpoint, "HF_HUB_ETAG_TIMEOUT": "3", "HF_HUB_DOWNLOAD_TIMEOUT": "3"})
    return env


def child_paths(python: str) -> tuple:
    """(purelib, prefix, base prefix, X.Y) of the child interpreter."""
    probe = "import sys, sysconfig; print(sysconfig.get_paths()['purelib']); print(sys.prefix); " \
            "print(sys.base_prefix); print('%d.%d' % sys.version_info[:2])"
    out = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=60, check=True).stdout
    purelib, prefix, base_prefix, version = out.split("\n")[:4]
    return purelib, prefix, base_prefix, version


def normalise(text: str, python: str, site_dir: str, run_dir: str, hf_home: str, port: int) -> str:
    purelib, prefix, base_prefix, version = child_paths(python)
    neutral_site = f"/opt/venv/lib/python{version}/site-packages"
    swaps = [(hf_home, "/srv/hf-home"), (run_dir, "/srv/seed-run")]
    if site_dir:
        swaps.append((os.path.abspath(site_dir), neutral_site))
    swaps += [(purelib, neutral_site), (prefix, "/opt/venv"), (base_prefix, "/usr/local")]
    for old, new in swaps:
        text = text.replace(old, new)
    text = re.sub(rf"\b127\.0\.0\.1:{port}\b", "127.0.0.1:9", text)
    text = re.sub(rf"port={port}\b", "port=9", text)
    return re.sub(r"object at 0x[0-9a-f]+", "object at 0x7f0000000000", text)


def capture(out: str, name: str, site_dir: str, python: str, standin: bool, norm: bool) -> list:
    written = []
    for mode in ("offline", "no_network"):
        run_dir = tempfile.mkdtemp(prefix="seed-run-")
        hf_home = os.path.join(run_dir, "hf-home")
        os.makedirs(hf_home)
        script = os.path.join(run_dir, "make_embedder.py")
        with open(script, "w", encoding="utf-8") as handle:
            handle.write(STANDIN_SCRIPT if standin else REAL_SCRIPT)
        port = closed_port()
        env = child_environment(mode, hf_home, site_dir, port)
        try:
            proc = subprocess.run([python, script], cwd=run_dir, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, timeout=CHILD_TIMEOUT_S)
            text = proc.stdout
        except subprocess.TimeoutExpired as exc:
            text = (exc.stdout or b"").decode("utf-8", "replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            text += f"\n[capture: stopped after {CHILD_TIMEOUT_S} s]\n"
        if norm:
            text = normalise(text, python, site_dir, run_dir, hf_home, port)
        path = os.path.join(out, f"seed_{name}_{mode}.log")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        written.append(path)
        shutil.rmtree(run_dir, ignore_errors=True)
    return written


def main(argv) -> int:
    args = list(argv[1:])
    norm = "--normalise" in args
    standin = "--standin" in args
    args = [arg for arg in args if arg not in ("--normalise", "--standin")]
    python = sys.executable
    if "--python" in args:
        index = args.index("--python")
        python = args[index + 1]
        del args[index:index + 2]
    if len(args) not in (2, 3):
        print(__doc__)
        return 2
    out, name = os.path.abspath(args[0]), args[1]
    site_dir = os.path.abspath(args[2]) if len(args) == 3 else ""
    os.makedirs(out, exist_ok=True)
    for path in capture(out, name, site_dir, python, standin, norm):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
