"""Checking the remedy: the affected checks before and after, a fresh offline load, and the verdict.

The checks that the missing CLIP files fail are run before provisioning and again in offline mode
(what the service should run with; for `--out DIR` with a config whose FrozenCLIPEmbedder points at
DIR). Then a fresh child process loads FrozenCLIPEmbedder as the service will and reports what it got
("Test Script Output"). `remedy_finding` turns all of it into the remedy's own finding. Nothing here
prints: the command (`commands/provision_clip.py`) shows the results and picks the exit code.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ...clip_files import PROBE_IDS, PROBE_TEXT, VOCAB_SIZE
from .provisioning import ProvisionResult, minimal_download
from .tower import REPO_ID

if TYPE_CHECKING:
    from ...probes.needed_models import NeededModel

CACHE_CHECKS = ("cache.model-missing", "cache.incomplete", "cache.shadowing-dir", "tokenizer.functional")
DIR_CHECKS = ("cache.model-missing", "tokenizer.functional")
REMEDY_CODE = "remedy.clip-offline"
REMEDY_TITLE = "Provision CLIP from the checkpoint (offline)"
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # the latter for transformers < 4.22
HUB_SAFETENSORS_BYTES = 1710540580  # the Hub's model.safetensors (vision tower included)

# Runs in a child interpreter with the offline environment: what the service will do. Python 3.8
# compatible; prints readable lines, then one JSON line.
VERIFY_SCRIPT = r"""
import contextlib, io, json, os, sys, time
cwd, ref, text, code_root, default = sys.argv[1:6]
os.chdir(cwd)
if code_root:
    sys.path.insert(0, code_root)
out = {"lines": []}
say = out["lines"].append
started = time.time()
try:
    import torch
    emb = None
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            from ldm.modules.encoders.modules import FrozenCLIPEmbedder
    except Exception as exc:
        say("ldm is not importable here (%s: %s); loading with transformers' classes instead"
            % (type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else ""))
        from transformers import CLIPTextModel, CLIPTokenizer
        tok = CLIPTokenizer.from_pretrained(ref)
        model = CLIPTextModel.from_pretrained(ref).eval()
        say("CLIPTokenizer / CLIPTextModel.from_pretrained(%r) loaded in %.1f s" % (ref, time.time() - started))
    else:
        call = ("FrozenCLIPEmbedder(device='cpu')" if default == "1"
                else "FrozenCLIPEmbedder(version=%r, device='cpu')" % ref)
        emb = FrozenCLIPEmbedder(device="cpu") if default == "1" else FrozenCLIPEmbedder(version=ref, device="cpu")
        tok, model = emb.tokenizer, emb.transformer
        say("%s constructed in %.1f s (ldm from %s)" % (call, time.time() - started,
            os.path.dirname(sys.modules["ldm"].__file__ or "")))
    ids = [int(i) for i in tok(text)["input_ids"]]
    out.update(vocab_size=int(tok.vocab_size), ids=ids)
    say("tokenizer: %s, vocabulary %d; %r -> %s" % (type(tok).__name__, tok.vocab_size, text, ids))
    n = sum(p.numel() for p in model.parameters())
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    out.update(parameters=int(n), dtype=dtype)
    say("text model: %s, %s parameters, %s" % (type(model).__name__, format(n, ","), dtype))
    with torch.no_grad():
        if emb is not None:
            z = emb.encode([text])
            how = "encode"
        else:
            batch = tok([text], truncation=True, max_length=77, padding="max_length", return_tensors="pt")
            z = model(input_ids=batch["input_ids"]).last_hidden_state
            how = "last_hidden_state"
    out.update(shape=list(z.shape), finite=bool(torch.isfinite(z).all()))
    say("%s([%r]) -> %s, mean %.6f, std %.6f"
        % (how, text, list(z.shape), float(z.float().mean()), float(z.float().std())))
except BaseException as exc:
    out["error"] = "%s: %s" % (type(exc).__name__, str(exc)[:1500])
    say("FAILED: " + out["error"])
out["seconds"] = round(time.time() - started, 2)
sys.stdout.write("\n" + json.dumps(out) + "\n")
"""

DIR_CONFIG = """\
model:
  params:
    cond_stage_config:
      target: ldm.modules.encoders.modules.FrozenCLIPEmbedder
      params:
        version: {version}
"""


def affected_checks(mode: str) -> Tuple[str, ...]:
    """The checks the remedy changes: the cache ones too for `hf-cache`, where it writes into the cache."""
    return CACHE_CHECKS if mode == "hf-cache" else DIR_CHECKS


def clip_refs(ctx) -> List[str]:
    from ...probes.needed_models import probe_needed_models

    needed = ctx.fact("needed_models", probe_needed_models)
    return [model.ref for model in needed.models if model.tokenizer_check == "clip"]


def clip_model(ctx, versions: Mapping[str, Optional[str]]) -> "NeededModel":
    """The config's CLIP model (as needed_models describes it), else FrozenCLIPEmbedder's default."""
    from ...probes.needed_models import probe_needed_models
    from .placement import clip_model_entry

    return next((model for model in ctx.fact("needed_models", probe_needed_models).models
                 if model.tokenizer_check == "clip"), None) or clip_model_entry(versions)


def run_affected(ctx, check_ids: Sequence[str]) -> List[Any]:
    """The affected checks, their findings narrowed to the CLIP model(s) (a config may need others)."""
    from ...registry import CheckResult, get_check, run_check

    refs = set(clip_refs(ctx))
    results = []
    for check_id in check_ids:
        checked = run_check(get_check(check_id), ctx)
        kept = [f for f in checked.findings if f.code != "cache.model-missing" or f.evidence.get("model") in refs
                or "model" not in f.evidence]
        results.append(CheckResult(checked.check, kept or checked.findings, checked.seconds))
    return results


def offline_context(ctx, config: Optional[str] = None):
    """The same target with offline mode on (what the service should run with) and, for --out, a config
    whose FrozenCLIPEmbedder points at DIR."""
    from ...context import Context, Options

    options = ctx.options
    offline_options = Options(checkpoint=options.checkpoint, config=config or options.config,
                              code_root=options.code_root, model_ids=list(options.model_ids), device=options.device,
                              timeout=options.timeout)
    environ = dict(ctx.environ)
    environ.update(OFFLINE_ENV)
    return Context(offline_options, environ=environ, cwd=ctx.cwd, runner=ctx.runner, python=ctx.python)


def _last_json_line(stdout: str) -> Dict[str, Any]:
    for line in reversed((stdout or "").strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return {}
    return {}


def verify_in_child(ctx, ref: str, default: bool) -> Tuple[str, Dict[str, Any]]:
    """Load the model the way the service will, in a fresh process with offline mode on: the transcript."""
    argv = [ctx.python, "-c", VERIFY_SCRIPT, str(ctx.cwd), ref, PROBE_TEXT, ctx.options.code_root or "",
            "1" if default else "0"]
    result = ctx.runner(argv, max(ctx.options.timeout, 120.0), dict(ctx.environ))
    facts = _last_json_line(result.stdout)
    if not facts:
        tail = (result.stderr or "").strip().splitlines()[-5:]
        facts = {"error": result.error or "no result from the child process", "lines": ["FAILED: " + (
            result.error or "the check printed nothing")] + tail}
    env = " ".join(f"{k}={v}" for k, v in OFFLINE_ENV.items())
    call = "FrozenCLIPEmbedder(device='cpu')" if default else f"FrozenCLIPEmbedder(version={ref!r}, device='cpu')"
    code = (f"from ldm.modules.encoders.modules import FrozenCLIPEmbedder; e = {call}; "
            f"print(e.tokenizer.vocab_size, e.encode([{PROBE_TEXT!r}]).shape)")
    quoted = f'"{code}"' if not any(c in code for c in '"$`\\!') else shlex.quote(code)
    head = f"$ cd {shlex.quote(str(ctx.cwd))} && {env} python -c {quoted}"
    return "\n".join([head] + list(facts.get("lines") or [])), facts


@dataclass
class Recheck:
    """The affected checks run again offline, and what a fresh offline process loaded."""

    results: List[Any] = field(default_factory=list)
    context: Any = None  # the offline Context they ran in (None when nothing was re-checked)
    transcript: str = ""
    verified: Dict[str, Any] = field(default_factory=dict)


def recheck_offline(ctx, mode: str, out_dir: Optional[str]) -> Recheck:
    """Re-run the affected checks in offline mode (for --out, with a config pointing at DIR), then load
    the provisioned files in a fresh offline process."""
    config_dir = None
    try:
        config = None
        if mode == "out":
            config_dir = tempfile.mkdtemp(prefix="ldm-diag-clip-")
            config = os.path.join(config_dir, "cond-stage.yaml")
            with open(config, "w", encoding="utf-8") as fh:
                fh.write(DIR_CONFIG.format(version=out_dir))
        after_ctx = offline_context(ctx, config)
        results = run_affected(after_ctx, affected_checks(mode))
        transcript, verified = verify_in_child(after_ctx, out_dir if mode == "out" else REPO_ID, mode == "hf-cache")
    finally:
        if config_dir:
            shutil.rmtree(config_dir, ignore_errors=True)
    return Recheck(results, after_ctx, transcript, verified)


def remedy_finding(result: ProvisionResult, versions, offline: str, verified: Optional[Dict[str, Any]] = None):
    """The remedy's own verdict: what was written, and whether the offline child loaded it as expected."""
    if result.ok:
        return _provisioned_finding(result, offline, verified or {})
    return _refused_finding(result, versions, offline)


def _provisioned_finding(result: ProvisionResult, offline: str, verified: Dict[str, Any]):
    from ...findings import Finding, Status

    evidence = result.to_dict()
    evidence["verification"] = {k: v for k, v in verified.items() if k != "lines"}
    summary = f"{result.message} Took {result.seconds:.1f} s." if result.state == "provisioned" else result.message
    error = verified.get("error")
    if error and ("ModuleNotFoundError" in error or "ImportError" in error):
        return Finding(REMEDY_CODE, Status.WARN, REMEDY_TITLE,
                       f"{summary} The offline load could not be tried here ({error}).", evidence=evidence,
                       blocking=False, fix=f"Try it where the service runs, with `{offline}`.")
    wrong = error or (verified and (verified.get("vocab_size") != VOCAB_SIZE or verified.get("ids") != PROBE_IDS
                                    or verified.get("finite") is False))
    if wrong:
        got = error or f"vocabulary {verified.get('vocab_size')}, ids {verified.get('ids')}"
        return Finding(REMEDY_CODE, Status.FAIL, REMEDY_TITLE,
                       f"{summary} But FrozenCLIPEmbedder does not load it correctly offline: {got}.",
                       evidence=evidence,
                       cause="The files are in place, but a fresh offline process failed to load them or got "
                             "another tokenizer (see the Test Script Output).",
                       fix="Read the Test Script Output in the report; the re-checked findings name the file "
                           "that does not resolve.")
    return Finding(REMEDY_CODE, Status.OK, REMEDY_TITLE, summary, evidence=evidence,
                   fix=f"Start the service with `{offline}` so nothing waits for the Hub.")


REFUSAL_CAUSES = {
    "no-text-encoder": "A pruned or UNet/VAE-only checkpoint, or an SD 2.x one (OpenCLIP ViT-H, which "
                       "FrozenOpenCLIPEmbedder loads through open_clip, not this model).",
    "unusable-text-encoder": "The text encoder is incomplete, of another size, or stored in a way that "
                             "cannot be copied without running the file's code.",
    "unreadable": "The file is damaged or not a checkpoint (see `python -m diagnostics inspect CKPT`).",
}
WRITE_FIXES = {
    "needs-torch": "Install torch here, or run provision-clip where torch is installed and copy the files.",
    "not-writable": "Run as a user who can write the cache, or use `--clip-dir DIR` and the yaml change.",
    "no-space": "Free disk space, or use `--out DIR` on another disk and the yaml change.",
    "write-error": "Fix the cause above and run the command again (temporary files were removed).",
}


def _refused_finding(result: ProvisionResult, versions, offline: str):
    from ...findings import Finding, Status
    from ...util import fmt_bytes

    evidence = result.to_dict()
    download = minimal_download(versions)
    if result.state in REFUSAL_CAUSES:
        return Finding(REMEDY_CODE, Status.FAIL, REMEDY_TITLE, result.message, evidence=evidence,
                       cause=REFUSAL_CAUSES[result.state],
                       fix=(f"On a machine with network: `{download}` "
                            f"({fmt_bytes(HUB_SAFETENSORS_BYTES)} for model.safetensors: the Hub's weights include "
                            f"the vision tower), copy the cache folder models--{REPO_ID.replace('/', '--')} to the "
                            f"server, then start with `{offline}`."))
    return Finding(REMEDY_CODE, Status.FAIL, REMEDY_TITLE, result.message, evidence=evidence,
                   fix=WRITE_FIXES.get(result.state, download))
