"""Load the CLIP tokenizer exactly as ldm's FrozenCLIPEmbedder will, in a child process.

Same class (`transformers.CLIPTokenizer`), same id or path, same environment and working directory
(a directory named like the repo id changes what transformers loads). When the Hub cannot be
reached the child runs with the offline variables set, so it answers in seconds instead of
retrying for minutes (knowledge base K29); the facts record that. The child reports the
vocabulary size and the ids of a reference prompt: transformers 5 returns a 2-token tokenizer
instead of raising when no vocabulary resolves, and only those numbers show it.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional

from ..clip_files import PROBE_TEXT
from ..redact import scrub

SECRET_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")

# Runs in the child interpreter; Python 3.8 compatible; prints one JSON line last.
TOKENIZER_SCRIPT = r"""
import json, os, sys, time
cwd, ref, text = sys.argv[1], sys.argv[2], sys.argv[3]
out = {"cwd": cwd}
started = time.time()
try:
    os.chdir(cwd)
    import transformers
    out["transformers"] = transformers.__version__
    from transformers import CLIPTokenizer
    tok = CLIPTokenizer.from_pretrained(ref)
    out["class"] = type(tok).__name__
    out["vocab_size"] = int(tok.vocab_size)
    out["len"] = len(tok)
    out["ids"] = [int(i) for i in tok(text)["input_ids"]]
    out["name_or_path"] = str(getattr(tok, "name_or_path", ""))
except BaseException as exc:
    out["error_type"] = type(exc).__name__
    out["error"] = str(exc)[:2000]
out["seconds"] = round(time.time() - started, 3)
sys.stdout.write("\n" + json.dumps(out) + "\n")
"""

OFFLINE_VARS = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def run_tokenizer_check(ctx, ref: str, offline: bool, timeout: float) -> Dict[str, Any]:
    env = dict(ctx.environ)
    if offline:
        env.update(OFFLINE_VARS)  # both: transformers < 4.22 reads only TRANSFORMERS_OFFLINE
    from .. import progress

    with progress.step(f"tokenizer: loading {ref} in a child process", timeout=timeout):
        result = ctx.runner([ctx.python, "-c", TOKENIZER_SCRIPT, str(ctx.cwd), ref, PROBE_TEXT], timeout, env)
    facts: Dict[str, Any] = {"ref": ref, "forced_offline": offline, "timeout": timeout,
                             "returncode": result.returncode, "timed_out": result.timed_out}
    parsed: Optional[Dict[str, Any]] = None
    for line in reversed((result.stdout or "").strip().splitlines()):
        if line.startswith("{"):
            try:
                parsed = json.loads(line)
            except ValueError:
                parsed = None
            break
    if parsed is None:
        facts["ran"] = False
        facts["error"] = result.error or "the child process printed no result"
    else:
        facts["ran"] = True
        facts.update(parsed)
    secrets = [ctx.environ.get(v, "") for v in SECRET_VARS]
    facts["stderr_tail"] = scrub(_tail(result.stderr), secrets)
    if facts.get("error"):
        facts["error"] = scrub(facts["error"], secrets)
    return facts


def _tail(text: Optional[str], lines: int = 8) -> str:
    if not text:
        return ""
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return "\n".join(line[:300] for line in kept)
