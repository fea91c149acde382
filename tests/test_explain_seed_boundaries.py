"""The seed failure under every transformers boundary (tests/logs/seed/), explained with the checks
on this machine in the world each capture was made in: an empty Hugging Face cache, and either the
offline switches on (`*_offline.log`) or the Hub endpoint at a closed port on 127.0.0.1
(`*_no_network.log`). The CLIP-files cause (K01 for transformers 4.x, whose tokenizer raises;
K02 for 5.x, whose tokenizer no longer does) must come first, confirmed, with the cause of that
world first among its causes.

The checks that decide (cache.offline-flag, cache.model-missing, hub.dns / hub.connect) need no ML
library; a child interpreter with torch, transformers and huggingface_hub made unimportable proves
that (CI's Python 3.8 job has none of them).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from diagnostics.context import Context
from diagnostics.knowledge.explain import CheckResults, explain_file

ROOT = Path(__file__).parent.parent
SEED = sorted((ROOT / "tests" / "logs" / "seed").glob("seed_transformers_*.log"))
DECIDING = {"cache.offline-flag", "cache.model-missing", "hub.dns", "hub.connect"}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends: every connection is refused


def world(tmp_path: Path, name: str) -> dict:
    """The environment a capture was made in: an empty cache, offline or without a reachable Hub."""
    environ = {"HOME": str(tmp_path), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "HF_HOME": str(tmp_path / "hf-empty"), "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"}
    if name.endswith("_offline.log"):
        environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return environ


def expected(name: str):
    """(signature, first cause) for a capture: K02 from transformers 5, K01 before; .b offline, .a no network."""
    signature = "K02" if "_5_" in name else "K01"
    return signature, signature + (".b" if name.endswith("_offline.log") else ".a")


def _registered(ctx) -> set:
    checks = CheckResults(ctx).checks
    return {code for check in checks for code in [check.code] + [doc.code for doc in getattr(check, "emits", ())]}


@pytest.fixture(scope="module")
def context_of(tmp_path_factory):
    """The Context of the world a capture was made in, one per kind of world (offline, no network):
    its checks run once and every capture made in that world is explained with their results."""
    made = {}

    def context(name: str) -> Context:
        kind = "offline" if name.endswith("_offline.log") else "no_network"
        if kind not in made:
            home = tmp_path_factory.mktemp(kind)
            made[kind] = Context(environ=world(home, name), cwd=home)
        return made[kind]

    return context


@pytest.mark.skipif(not SEED, reason="the seed captures are not in this checkout")
@pytest.mark.parametrize("path", SEED, ids=lambda p: p.name)
def test_seed_capture_is_the_clip_files_cause_confirmed_here(path, context_of):
    ctx = context_of(path.name)
    missing = {"cache.offline-flag", "cache.model-missing"} - _registered(ctx)
    if missing:
        pytest.skip(f"no check registered for {sorted(missing)} on this installation")
    explanation = explain_file(str(path), ctx)
    top = explanation.matches[0]
    signature, cause = expected(path.name)
    assert (top.signature.id, top.status) == (signature, "confirmed"), (path.name, top.signature.id, top.status)
    first = top.causes[0]
    assert (first.cause.id, first.status) == (cause, "confirmed"), (path.name, first.cause.id, first.status)
    deciders = {need.by for need in first.needs if need.outcome == "confirmed"}
    assert deciders & DECIDING, (path.name, deciders)
    assert explanation.blocking


_CHILD = r"""
import json, sys
for name in ("torch", "transformers", "huggingface_hub", "tokenizers", "safetensors"):
    sys.modules[name] = None  # importing any of them now fails, as on an install without them
from diagnostics.context import Context
from diagnostics.knowledge.explain import explain_file
out = []
for path, environ in json.loads(sys.argv[1]):
    top = explain_file(path, Context(environ=environ)).matches[0]
    out.append([top.signature.id, top.status, top.causes[0].cause.id, top.causes[0].status])
print(json.dumps(out))
"""


@pytest.mark.skipif(not SEED, reason="the seed captures are not in this checkout")
def test_seed_is_confirmed_without_any_ml_library(tmp_path):
    picked = [p for p in SEED if p.name in ("seed_transformers_4_19_2_offline.log",
                                            "seed_transformers_5_24_0_no_network.log")]
    jobs = []
    for index, path in enumerate(picked):
        home = tmp_path / str(index)
        home.mkdir()
        jobs.append([str(path), world(home, path.name)])
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(jobs)], capture_output=True, text=True,
                          timeout=300, env=env, cwd=str(ROOT))
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(got) == len(picked) == 2
    for path, answer in zip(picked, got):
        signature, cause = expected(path.name)
        assert answer == [signature, "confirmed", cause, "confirmed"], (path.name, answer)
