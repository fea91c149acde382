"""A Hugging Face Hub stand-in on 127.0.0.1: real HTTP, the Hub's headers, switchable faults.

It serves repositories the way huggingface.co does for `hf_hub_download` (huggingface_hub 2.4) and
transformers 5.24:

- `HEAD|GET /{repo}/resolve/{revision}/{file}`: small files answer 200 with `X-Repo-Commit`, a
  quoted git-blob `ETag` and `Content-Length`; large (LFS) files answer 302 with `X-Linked-Etag`
  (the sha256), `X-Linked-Size` and a `Location` on another origin (the "CDN", a second server on
  another port), where the bytes are served; `Range: bytes=N-` is honoured.
- unknown file: 404 `X-Error-Code: EntryNotFound`; unknown repo: 401 `RepoNotFound` without a
  token and 404 with one (what the Hub does so as not to leak private names).
- `GET /api/models/{repo}[/revision/{rev}]` and `/api/models/{repo}/tree/{rev}[/{path}]`: JSON.

Faults (`hub.mode`): "ok", "gated" (401 GatedRepo), "401" (= gated), "bad-token" (401 "Invalid
credentials in Authorization header"), "404" (RepoNotFound for every repo), "500", "403-html",
"not-hub" (200 without X-Repo-Commit), "hang" (accepts, reads the request, never answers). TLS
with a self-signed certificate: pass `tls=(certfile, keyfile)`, see `self_signed_cert`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import socket
import ssl
import struct
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Optional, Tuple
from urllib.parse import unquote, urlsplit

from diagnostics.clip_files import tokenizer_files

COMMIT = "32bd64288804d66eefd0ccbe215aa642df71cc41"
LFS_SUFFIXES = (".bin", ".safetensors", ".msgpack", ".h5", ".pt", ".ckpt")
CLIP_ID = "openai/clip-vit-large-patch14"


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def tiny_safetensors() -> bytes:
    """A valid safetensors file holding one 2x2 float32 tensor (no numpy or torch needed)."""
    header = json.dumps({"text_model.embeddings.position_ids": {"dtype": "F32", "shape": [2, 2],
                                                                "data_offsets": [0, 16]}}).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + b"\0" * 16


def clip_config() -> bytes:
    config = {
        "architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": 16,
        "text_config": {"model_type": "clip_text_model", "hidden_size": 32, "intermediate_size": 64,
                        "num_attention_heads": 2, "num_hidden_layers": 2, "vocab_size": 49408,
                        "max_position_embeddings": 77},
        "vision_config": {"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64,
                          "num_attention_heads": 2, "num_hidden_layers": 2, "image_size": 32, "patch_size": 16},
    }
    return (json.dumps(config, indent=2) + "\n").encode()


@functools.lru_cache(maxsize=None)
def _tokenizer_files() -> Tuple[Tuple[str, bytes], ...]:
    return tuple(tokenizer_files().items())  # built from the 48,894 merges: worth doing once


def clip_repo(with_weights: bool = True) -> Dict[str, bytes]:
    """The files of openai/clip-vit-large-patch14 that FrozenCLIPEmbedder reads: the real tokenizer
    files (built from the CLIP merges), a small config and small weights. A new dict each call."""
    files = dict(_tokenizer_files())
    files["config.json"] = clip_config()
    if with_weights:
        files["model.safetensors"] = tiny_safetensors()
    return files


def self_signed_cert(directory: Path) -> Tuple[str, str]:
    """A certificate for 127.0.0.1 signed by nobody (openssl CLI). Skips the test without openssl."""
    import pytest

    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = directory / "hub-cert.pem", directory / "hub-key.pem"
    proc = subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        capture_output=True, text=True, timeout=60,
    )
    if proc.returncode != 0:
        pytest.skip(f"openssl could not make a certificate: {proc.stderr[-300:]}")
    return str(cert), str(key)


def closed_port() -> int:
    """A local port with nothing listening (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, hub: "FakeHub", role: str, tls: Optional[ssl.SSLContext] = None):
        self.hub = hub
        self.role = role
        self.tls = tls
        super().__init__(("127.0.0.1", 0), _Handler)

    def finish_request(self, request, client_address) -> None:
        # The TLS handshake runs in the connection's own thread, so a client that fails it (or never
        # starts it) does not block the accept loop.
        if self.tls is not None:
            try:
                request.settimeout(10)
                request = self.tls.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError):
                return
        super().finish_request(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeHub/1.0"

    def log_message(self, *args) -> None:  # quiet
        pass

    # -- plumbing -----------------------------------------------------------------------------
    def _send(self, status: int, headers: Dict[str, str], body: bytes = b"", head: bool = False) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _error(self, status: int, code: Optional[str], message: str, head: bool) -> None:
        headers = {"Content-Type": "application/json", "X-Request-Id": "fake"}
        if code:
            headers["X-Error-Code"] = code
        headers["X-Error-Message"] = message
        self._send(status, headers, json.dumps({"error": message}).encode(), head)

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    # -- routing ------------------------------------------------------------------------------
    def _dispatch(self, head: bool) -> None:
        hub: FakeHub = self.server.hub
        path = unquote(urlsplit(self.path).path)
        hub._record(self.command, path, self.headers, self.server.role)
        if self.server.role == "cdn":
            return self._cdn(path, head)
        mode = hub.mode
        if mode == "hang":
            hub._stop.wait()
            self.close_connection = True
            return
        if mode == "500":
            return self._error(500, None, "Internal Error - We're working hard to fix this as soon as possible!", head)
        if mode == "403-html":
            return self._send(403, {"Content-Type": "text/html"}, b"<html><body>Access denied by proxy</body></html>",
                              head)
        if mode == "not-hub":
            return self._send(200, {"Content-Type": "text/html"}, b"<html><body>Welcome to the portal</body></html>",
                              head)
        if path.startswith("/api/models/"):
            return self._api(path[len("/api/models/"):], head)
        if "/resolve/" in path:
            repo, _, rest = path.lstrip("/").partition("/resolve/")
            revision, _, filename = rest.partition("/")
            return self._resolve(repo, revision, filename, head)
        self._error(404, None, "Not Found", head)

    def _auth_fault(self, repo: str, head: bool) -> bool:
        hub: FakeHub = self.server.hub
        has_token = bool(self.headers.get("Authorization"))
        if hub.mode in ("gated", "401"):
            self._error(401 if not has_token else 403, "GatedRepo",
                        f"Access to model {repo} is restricted. You must have access to it and be authenticated "
                        "to access it. Please log in.", head)
            return True
        if hub.mode == "bad-token":
            self._error(401, None, "Invalid credentials in Authorization header", head)
            return True
        if hub.mode == "404" or repo not in hub.repos:
            self._error(404 if has_token else 401, "RepoNotFound", "Repository not found", head)
            return True
        return False

    def _resolve(self, repo: str, revision: str, filename: str, head: bool) -> None:
        hub: FakeHub = self.server.hub
        if self._auth_fault(repo, head):
            return
        if revision not in ("main", COMMIT):
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head)
        files = hub.repos[repo]
        if filename not in files:
            self._send(404, {"Content-Type": "application/json", "X-Error-Code": "EntryNotFound",
                             "X-Error-Message": "Entry not found", "X-Repo-Commit": COMMIT},
                       json.dumps({"error": "Entry not found"}).encode(), head)
            return
        data = files[filename]
        common = {"X-Repo-Commit": COMMIT, "Accept-Ranges": "bytes", "Access-Control-Expose-Headers":
                  "X-Repo-Commit,X-Linked-Etag,X-Linked-Size,ETag,Location"}
        if filename.endswith(LFS_SUFFIXES):
            sha = hashlib.sha256(data).hexdigest()
            location = f"{hub.cdn_url}/cdn/{sha}?filename={filename}"
            body = f"Found. Redirecting to {location}".encode()
            headers = dict(common, **{"Location": location, "X-Linked-Etag": f'"{sha}"',
                                      "X-Linked-Size": str(len(data)), "ETag": f'"{git_blob_sha1(data)}"',
                                      "Content-Type": "text/plain; charset=utf-8"})
            return self._send(302, headers, body, head)
        headers = dict(common, **{"ETag": f'"{git_blob_sha1(data)}"', "Content-Type": "application/octet-stream"})
        self._body(data, headers, head)

    def _body(self, data: bytes, headers: Dict[str, str], head: bool) -> None:
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and not head:
            start_text, _, end_text = rng[6:].partition("-")
            start = int(start_text or 0)
            end = int(end_text) if end_text else len(data) - 1
            part = data[start:end + 1]
            headers = dict(headers, **{"Content-Range": f"bytes {start}-{end}/{len(data)}"})
            return self._send(206, headers, part, head)
        self._send(200, headers, data, head)

    def _cdn(self, path: str, head: bool) -> None:
        hub: FakeHub = self.server.hub
        if hub.cdn_mode == "down":
            return self._error(403, None, "Forbidden", head)
        sha = path.rsplit("/", 1)[-1]
        for files in hub.repos.values():
            for data in files.values():
                if hashlib.sha256(data).hexdigest() == sha:
                    return self._body(data, {"ETag": f'"{sha}"', "Content-Type": "application/octet-stream"}, head)
        self._error(404, None, "Not Found", head)

    def _api(self, rest: str, head: bool) -> None:
        hub: FakeHub = self.server.hub
        parts = rest.split("/")
        repo = "/".join(parts[:2])
        if self._auth_fault(repo, head):
            return
        files = hub.repos[repo]
        tail = parts[2:]
        if not tail or tail[0] == "revision":
            body = {"id": repo, "modelId": repo, "sha": COMMIT, "private": False, "gated": False,
                    "siblings": [{"rfilename": n} for n in sorted(files)]}
            return self._send(200, {"Content-Type": "application/json"}, json.dumps(body).encode(), head)
        if tail[0] == "tree":
            sub = "/".join(tail[2:])
            if sub and not any(n.startswith(sub + "/") for n in files):
                self._send(404, {"Content-Type": "application/json", "X-Error-Code": "EntryNotFound",
                                 "X-Error-Message": f"{sub} does not exist on \"main\""},
                           json.dumps({"error": "Entry not found"}).encode(), head)
                return
            entries = []
            for name in sorted(files):
                if sub and not name.startswith(sub + "/"):
                    continue
                data = files[name]
                entry = {"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": name}
                if name.endswith(LFS_SUFFIXES):
                    entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
                entries.append(entry)
            return self._send(200, {"Content-Type": "application/json"}, json.dumps(entries).encode(), head)
        self._error(404, None, "Not Found", head)


class FakeHub:
    """`with FakeHub() as hub: env["HF_ENDPOINT"] = hub.endpoint`."""

    def __init__(self, repos: Optional[Dict[str, Dict[str, bytes]]] = None, mode: str = "ok",
                 tls: Optional[Tuple[str, str]] = None):
        self.repos = repos if repos is not None else {CLIP_ID: clip_repo()}
        self.mode = mode
        self.cdn_mode = "ok"
        self.tls = tls
        self.requests: List[Dict[str, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._servers: List[_Server] = []
        self._threads: List[threading.Thread] = []

    def _record(self, method: str, path: str, headers, role: str) -> None:
        with self._lock:
            self.requests.append({"method": method, "path": path, "role": role,
                                  "authorization": "present" if headers.get("Authorization") else "absent"})

    def start(self) -> "FakeHub":
        for role in ("hub", "cdn"):
            ctx = None
            if role == "hub" and self.tls:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(*self.tls)
            server = _Server(self, role, ctx)
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                      name=f"fakehub-{role}", daemon=True)
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        # shutdown() waits for serve_forever's next poll: ask both servers at once, not one after the other.
        stoppers = [threading.Thread(target=server.shutdown) for server in self._servers]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()
        for server in self._servers:
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> "FakeHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._servers[0].server_address[1]

    @property
    def endpoint(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def cdn_url(self) -> str:
        return f"http://127.0.0.1:{self._servers[1].server_address[1]}"

    def paths(self, role: str = "hub") -> List[str]:
        with self._lock:
            return [r["path"] for r in self.requests if r["role"] == role]


# -- building worlds for the cache and hub tests ----------------------------------------------------------

def hermetic_env(tmp_path: Path, **extra: str) -> Dict[str, str]:
    """A minimal environment: temporary HOME and HF_HOME, short network timeouts, no proxies."""
    import os

    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path / "home"),
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "LDM_DIAG_NET_TIMEOUT": "1",
    }
    # PYTHONPATH too: the checks' child interpreters must import the same transformers and
    # huggingface_hub as this process, whose versions the rules are given.
    for key in ("LANG", "LC_ALL", "SYSTEMROOT", "PYTHONPATH"):
        if key in os.environ:
            env[key] = os.environ[key]
    env.update(extra)
    return env


def pythonpath(*first) -> str:
    """`first`, then this process's PYTHONPATH: a child interpreter that must find the project also
    keeps the packages this process was started with (e.g. another transformers put in front)."""
    import os

    parts = [str(p) for p in first]
    parts += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in parts]
    return os.pathsep.join(parts)


def hub_version() -> str:
    """The installed huggingface_hub's version (from its metadata, as the environment probe reads it)."""
    from diagnostics.probes.environment import package_versions

    return package_versions()["huggingface_hub"]


def download_cli() -> str:
    """The download command the fixes name for the installed huggingface_hub: `hf download` from 0.34
    (where the `hf` CLI appeared), `huggingface-cli download` before; without huggingface_hub, the
    fix installs a current one in a throw-away venv and runs its `hf download`."""
    from packaging.version import Version

    version = hub_version()
    if version is None:
        return "hf download"
    return "hf download" if Version(version) >= Version("0.34") else "huggingface-cli download"


def download_cli_code() -> str:
    """Python code that runs the installed huggingface_hub's download CLI on sys.argv[1:]."""
    if download_cli() == "hf download":
        return ("import sys; from huggingface_hub.cli.hf import main; "
                "sys.argv = ['hf', 'download'] + sys.argv[1:]; main()")
    return ("import sys; from huggingface_hub.commands.huggingface_cli import main; "
            "sys.argv = ['huggingface-cli', 'download'] + sys.argv[1:]; main()")


def populate_cache(hub_cache: Path, repo_id: str, files: Dict[str, bytes], commit: str = COMMIT) -> Path:
    """Write a hub-layout cache entry as huggingface_hub does: blobs named by etag (git sha1, or sha256
    for LFS files), relative symlinks from snapshots/<commit>/<file>, refs/main holding the commit."""
    import os

    repo = Path(hub_cache) / ("models--" + repo_id.replace("/", "--"))
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    for name, data in files.items():
        etag = hashlib.sha256(data).hexdigest() if name.endswith(LFS_SUFFIXES) else git_blob_sha1(data)
        (repo / "blobs" / etag).write_bytes(data)
        link = snap / name
        if link.exists() or link.is_symlink():
            link.unlink()
        os.symlink(os.path.join("..", "..", "blobs", etag), str(link))
    return repo


def make_context(env: Dict[str, str], cwd: Path, **options):
    from diagnostics.context import Context, Options

    return Context(Options(**options), environ=env, cwd=cwd)


def run_codes(ctx, *check_ids: str):
    """Run the named checks on one context; return {finding code: [findings]} and the seconds taken."""
    import time

    from diagnostics.registry import get_check, run_check

    started = time.perf_counter()
    found: Dict[str, list] = {}
    for check_id in check_ids:
        for finding in run_check(get_check(check_id), ctx).findings:
            found.setdefault(finding.code, []).append(finding)
    return found, time.perf_counter() - started
