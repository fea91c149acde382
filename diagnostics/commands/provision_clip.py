"""`python -m diagnostics provision-clip --checkpoint CKPT (--hf-cache | --out DIR)`: the offline CLIP remedy.

The seed's failure, ldm's FrozenCLIPEmbedder unable to load `openai/clip-vit-large-patch14` without the
Hub, is fixed from the checkpoint itself (remedies/clip_offline.py): no network, no 1.7 GB download, no
edit of ldm's code. This command checks the affected findings before, provisions, checks them again in
offline mode (a fresh child process loads FrozenCLIPEmbedder as the service will), and writes the
resolution report with the before -> after table and that child's output ("Test Script Output").

Exit codes as everywhere: 0 the CLIP problem is solved (nothing blocking in the re-check), 1 it is not
(no text encoder in the checkpoint: the minimal `hf download` is printed instead), 2 usage error.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from typing import Any, Dict, List, Optional, Tuple

from ..cli import EXIT_BLOCKING, EXIT_OK, UsageError
from .common import add_target_options, context_from_args

CACHE_CHECKS = ("cache.model-missing", "cache.incomplete", "cache.shadowing-dir", "tokenizer.functional")
DIR_CHECKS = ("cache.model-missing", "tokenizer.functional")
REMEDY_CODE = "remedy.clip-offline"
REMEDY_TITLE = "Provision CLIP from the checkpoint (offline)"
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # the latter for transformers < 4.22

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


def add_arguments(parser) -> None:
    add_target_options(parser)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--hf-cache", action="store_true",
                      help="place the files in the Hugging Face cache the installed transformers reads, as "
                           "openai/clip-vit-large-patch14 (unmodified ldm code then loads it offline)")
    mode.add_argument("--out", metavar="DIR",
                      help="write the files into DIR instead, and print the yaml change "
                           "(cond_stage_config.params.version: DIR)")
    parser.add_argument("--report-dir", default="reports", help="directory for the report files (default: reports/)")
    parser.add_argument("--format", default="md,html,json",
                        help="comma-separated report formats: md, html, json (default: all)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show every re-checked finding")


# -- running the checks --------------------------------------------------------------------------

def clip_refs(ctx) -> List[str]:
    from ..probes.needed_models import probe_needed_models

    needed = ctx.fact("needed_models", probe_needed_models)
    return [m["ref"] for m in needed["models"] if m.get("tokenizer_check") == "clip"]


def run_affected(ctx, check_ids) -> List[Any]:
    """The affected checks, their findings narrowed to the CLIP model(s) (a config may need others)."""
    from ..registry import CheckResult, get_check, run_check

    refs = set(clip_refs(ctx))
    results = []
    for check_id in check_ids:
        r = run_check(get_check(check_id), ctx)
        kept = [f for f in r.findings if f.code != "cache.model-missing" or f.evidence.get("model") in refs
                or "model" not in f.evidence]
        results.append(CheckResult(r.check, kept or r.findings, r.seconds))
    return results


def offline_context(ctx, config: Optional[str] = None):
    """The same target with offline mode on (what the service should run with) and, for --out, a config
    whose FrozenCLIPEmbedder points at DIR."""
    from ..context import Context, Options

    o = ctx.options
    options = Options(checkpoint=o.checkpoint, config=config or o.config, code_root=o.code_root,
                      model_ids=list(o.model_ids), device=o.device, timeout=o.timeout)
    environ = dict(ctx.environ)
    environ.update(OFFLINE_ENV)
    return Context(options, environ=environ, cwd=ctx.cwd, runner=ctx.runner, python=ctx.python)


DIR_CONFIG = """\
model:
  params:
    cond_stage_config:
      target: ldm.modules.encoders.modules.FrozenCLIPEmbedder
      params:
        version: {version}
"""


def verify_in_child(ctx, ref: str, default: bool) -> Tuple[str, Dict[str, Any]]:
    """Load the model the way the service will, in a fresh process with offline mode on: the transcript."""
    import json
    import shlex

    from ..clip_files import PROBE_TEXT

    argv = [ctx.python, "-c", VERIFY_SCRIPT, str(ctx.cwd), ref, PROBE_TEXT, ctx.options.code_root or "",
            "1" if default else "0"]
    result = ctx.runner(argv, max(ctx.options.timeout, 120.0), dict(ctx.environ))
    facts: Dict[str, Any] = {}
    for line in reversed((result.stdout or "").strip().splitlines()):
        if line.startswith("{"):
            try:
                facts = json.loads(line)
            except ValueError:
                facts = {}
            break
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


# -- turning the outcome into findings and report parts -----------------------------------------

def remedy_finding(result, versions, offline: str, verified: Optional[Dict[str, Any]] = None):
    """The remedy's own verdict: what was written, and whether the offline child loaded it as expected."""
    from ..clip_files import PROBE_IDS, VOCAB_SIZE
    from ..findings import Finding, Status
    from ..remedies.clip_offline import REPO_ID, minimal_download
    from ..util import fmt_bytes

    evidence = result.to_dict()
    title = REMEDY_TITLE
    if result.ok:
        verified = verified or {}
        evidence["verification"] = {k: v for k, v in verified.items() if k != "lines"}
        summary = f"{result.message} Took {result.seconds:.1f} s." if result.state == "provisioned" else result.message
        error = verified.get("error")
        if error and ("ModuleNotFoundError" in error or "ImportError" in error):
            return Finding(REMEDY_CODE, Status.WARN, title,
                           f"{summary} The offline load could not be tried here ({error}).", evidence=evidence,
                           blocking=False, fix=f"Try it where the service runs, with `{offline}`.")
        wrong = error or (verified and (verified.get("vocab_size") != VOCAB_SIZE or verified.get("ids") != PROBE_IDS
                                        or verified.get("finite") is False))
        if wrong:
            got = error or f"vocabulary {verified.get('vocab_size')}, ids {verified.get('ids')}"
            return Finding(REMEDY_CODE, Status.FAIL, title,
                           f"{summary} But FrozenCLIPEmbedder does not load it correctly offline: {got}.",
                           evidence=evidence,
                           cause="The files are in place, but a fresh offline process failed to load them or got "
                                 "another tokenizer (see the Test Script Output).",
                           fix="Read the Test Script Output in the report; the re-checked findings name the file "
                               "that does not resolve.")
        return Finding(REMEDY_CODE, Status.OK, title, summary, evidence=evidence,
                       fix=f"Start the service with `{offline}` so nothing waits for the Hub.")
    download = minimal_download(versions)
    if result.state in ("no-text-encoder", "unusable-text-encoder", "unreadable"):
        cause = {
            "no-text-encoder": "A pruned or UNet/VAE-only checkpoint, or an SD 2.x one (OpenCLIP ViT-H, which "
                               "FrozenOpenCLIPEmbedder loads through open_clip, not this model).",
            "unusable-text-encoder": "The text encoder is incomplete, of another size, or stored in a way that "
                                     "cannot be copied without running the file's code.",
            "unreadable": "The file is damaged or not a checkpoint (see `python -m diagnostics inspect CKPT`).",
        }[result.state]
        return Finding(REMEDY_CODE, Status.FAIL, title, result.message, evidence=evidence, cause=cause,
                       fix=(f"On a machine with network: `{download}` "
                            f"({fmt_bytes(1710540580)} for model.safetensors: the Hub's weights include the vision "
                            f"tower), copy the cache folder models--{REPO_ID.replace('/', '--')} to the server, then "
                            f"start "
                            f"with `{offline}`."))
    fixes = {
        "needs-torch": "Install torch here, or run provision-clip where torch is installed and copy the files.",
        "not-writable": "Run as a user who can write the cache, or use `--out DIR` and the yaml change.",
        "no-space": "Free disk space, or use `--out DIR` on another disk and the yaml change.",
        "write-error": "Fix the cause above and run the command again (temporary files were removed).",
    }
    return Finding(REMEDY_CODE, Status.FAIL, title, result.message, evidence=evidence,
                   fix=fixes.get(result.state, download))


def remedy_steps(result, yaml_text: Optional[str], offline: str, versions) -> List[str]:
    from ..clip_files import EXPECTED_SIZES
    from ..remedies.clip_offline import SEED_DOWNLOAD_BYTES
    from ..util import fmt_bytes

    src = result.source
    if result.state not in ("provisioned", "already-complete"):
        return [result.message]
    if result.state == "already-complete":
        return [result.message, f"Start the service with `{offline}`."]
    by_name = {f["name"]: f for f in result.files}
    weights = by_name.get(result.weights_name or "", {})
    steps = [
        f"Read the text encoder from {src.get('checkpoint')} without running its code ({src.get('format')}, "
        f"{src.get('tensors')} tensors under {src.get('prefix')}*, {', '.join(sorted(src.get('dtypes') or {}))}; "
        f"{src.get('read_seconds')} s).",
        f"Generated vocab.json ({by_name.get('vocab.json', {}).get('size')} bytes, expected "
        f"{EXPECTED_SIZES['vocab.json']}) and merges.txt ({by_name.get('merges.txt', {}).get('size')} bytes, expected "
        f"{EXPECTED_SIZES['merges.txt']}) from OpenAI's BPE merges shipped with ldm-diagnostics, with "
        "tokenizer_config.json and special_tokens_map.json; wrote config.json for the ViT-L/14 text tower.",
        f"Wrote {result.weights_name} ({fmt_bytes(weights.get('size'))}): the checkpoint's tensors unchanged, renamed "
        f"to text_model.*; " + "; ".join(result.notes) + ".",
    ]
    if result.layout == "hub":
        steps.append(f"Placed them in the Hugging Face cache as {result.target}/snapshots/{result.revision} "
                     f"(refs/main -> {result.revision}"
                     + (f", was {result.previous_ref}" if result.previous_ref else "")
                     + "), marked by README.md; no existing file was overwritten.")
    elif result.layout == "legacy":
        steps.append(f"Placed them in the flat transformers cache {result.target} under the names transformers "
                     "< 4.22 looks up (sha256 of each file's URL), with .json sidecars marked as provisioned.")
    else:
        steps.append(f"Wrote them into {result.target}; then {_one_line(yaml_text)}.")
    steps.append(f"Start the service with `{offline}` (the Hub is never asked, so nothing waits for it).")
    if note_on_key_names(result.source, versions):
        steps.append(note_on_key_names(result.source, versions))
    steps.append(f"On disk: {fmt_bytes(result.bytes_total)} ({result.bytes_total:,} bytes) instead of "
                 f"{fmt_bytes(SEED_DOWNLOAD_BYTES)} ({SEED_DOWNLOAD_BYTES:,} bytes: the Hub's pytorch_model.bin the "
                 f"seed downloaded, vision tower included); took {result.seconds:.1f} s; no code was edited.")
    return steps


def note_on_key_names(source: Dict[str, Any], versions) -> Optional[str]:
    """When ldm's load_state_dict(strict=False) drops the checkpoint's CLIP keys with this transformers
    (ckpt.clip-missing), the provisioned weights are what the model runs with: say that they are the
    checkpoint's own."""
    from ..util import version_at_least

    prefix = source.get("prefix") or ""
    tv = versions.get("transformers")
    v5 = version_at_least(tv, "5") if tv else None
    if v5 is None or not prefix.startswith("cond_stage_model."):
        return None
    nested = prefix.endswith("text_model.")
    if nested != bool(v5):
        return None
    return (f"With transformers {tv}, ldm's load_state_dict(strict=False) skips the checkpoint's {prefix}* keys as "
            "unexpected (ckpt.clip-missing), so the model keeps what from_pretrained loaded: these provisioned "
            "weights, which are those same tensors. The checkpoint's text encoder is used either way.")


def original_problem(before_results, code_root: Optional[str]) -> Optional[Dict[str, Any]]:
    """The seed's "Original Problem" from the failing tokenizer check: where FrozenCLIPEmbedder fails."""
    from ..findings import Status

    failed = [f for r in before_results for f in r.findings if f.code == "tokenizer.functional"
              and f.status in (Status.FAIL, Status.ERROR)]
    if not failed:
        failed = [f for r in before_results for f in r.findings if f.code == "cache.model-missing"
                  and f.status is Status.FAIL]
    if not failed:
        return None
    f = failed[0]
    message = f.evidence.get("error") if f.evidence.get("error_type") else None
    problem: Dict[str, Any] = {
        "error_message": (f"{f.evidence['error_type']}: {message}" if message else f.summary),
        "qualname": "FrozenCLIPEmbedder.__init__",
        "code": "self.tokenizer = CLIPTokenizer.from_pretrained(version)",
    }
    path = _ldm_encoders_file(code_root)
    if path:
        problem["file"] = path
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                for number, line in enumerate(fh, 1):
                    if "CLIPTokenizer.from_pretrained(version)" in line:
                        problem["line"] = number
                        break
        except OSError:
            pass
    return problem


def _ldm_encoders_file(code_root: Optional[str]) -> Optional[str]:
    """ldm/modules/encoders/modules.py without importing ldm (find_spec of the top package only)."""
    import importlib.util

    bases = []
    if code_root:
        bases.append(os.path.join(code_root, "ldm"))
    try:
        spec = importlib.util.find_spec("ldm")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        bases.extend(spec.submodule_search_locations)
    for base in bases:
        path = os.path.join(base, "modules", "encoders", "modules.py")
        if os.path.isfile(path):
            return path
    return None


# -- the command ---------------------------------------------------------------------------------

def _validate(args, ctx) -> None:
    from ..report.write import check_writable_dir

    if not ctx.options.checkpoint:
        raise UsageError("--checkpoint CKPT is required (or set LDM_DIAG_CHECKPOINT): the text encoder comes from it")
    if args.out:
        if os.path.exists(args.out) and not os.path.isdir(args.out):
            raise UsageError(f"--out {args.out} exists and is not a directory")
        problem = check_writable_dir(args.out)
        if problem:
            raise UsageError(f"--out: {problem}")
    problem = check_writable_dir(args.report_dir)
    if problem:
        raise UsageError(f"--report-dir: {problem}")


def run(args) -> int:
    from ..findings import Status
    from ..probes.cache import probe_cache
    from ..probes.environment import probe_environment
    from ..probes.needed_models import probe_needed_models
    from ..registry import Check, CheckResult
    from ..remedies.clip_offline import REPO_ID, clip_model_entry, provision
    from ..report.build import Remedy, build_report
    from ..report.render import output_paths, write_report
    from ..report.terminal import marks_for
    from ..rules.cache import offline_var, yaml_change
    from .report import _formats

    formats = _formats(args.format)
    ctx = context_from_args(args)
    _validate(args, ctx)
    marks = marks_for(sys.stdout)
    checkpoint = str(ctx.options.checkpoint)
    mode = "hf-cache" if args.hf_cache else "out"
    out_dir = os.path.abspath(args.out) if args.out else None
    check_ids = CACHE_CHECKS if mode == "hf-cache" else DIR_CHECKS

    print("Before:")
    before = run_affected(ctx, check_ids)
    _print_findings(before, marks, args.verbose)
    versions = ctx.fact("environment", probe_environment)["packages"]
    offline = offline_var(versions)
    locations = ctx.fact("cache", probe_cache)["locations"] if mode == "hf-cache" else None

    others = [r for r in clip_refs(ctx) if r != REPO_ID]
    if mode == "hf-cache" and others and REPO_ID not in clip_refs(ctx):
        print(f"Note: the config loads CLIP from {others[0]}, not {REPO_ID}: the cache entry does not serve it; "
              f"use --out {others[0]} if that is a folder, or point the yaml at {REPO_ID}.")
    print(f"Provisioning {REPO_ID} from {checkpoint} ...")
    result = provision(checkpoint, mode, versions, locations=locations, out_dir=out_dir)
    print(f"  {result.message}")

    yaml_text = None
    verified: Dict[str, Any] = {}
    tmp_config_dir = None
    after_ctx = None
    transcript = ""
    try:
        if mode == "out":
            clip = next((m for m in ctx.fact("needed_models", probe_needed_models)["models"]
                         if m.get("tokenizer_check") == "clip"), None) or clip_model_entry(versions)
            yaml_text = yaml_change(clip, ctx.options.config, out_dir or "")
        if result.ok:
            config = None
            if mode == "out":
                tmp_config_dir = tempfile.mkdtemp(prefix="ldm-diag-clip-")
                config = os.path.join(tmp_config_dir, "cond-stage.yaml")
                with open(config, "w", encoding="utf-8") as fh:
                    fh.write(DIR_CONFIG.format(version=out_dir))
            after_ctx = offline_context(ctx, config)
            print(f"After ({' '.join(f'{k}={v}' for k, v in OFFLINE_ENV.items())}"
                  + (", with the yaml change" if mode == "out" else "") + "):")
            after = run_affected(after_ctx, check_ids)
            _print_findings(after, marks, True)
            transcript, verified = verify_in_child(after_ctx, out_dir if mode == "out" else REPO_ID, mode == "hf-cache")
            print("Test script output:")
            for line in transcript.splitlines():
                print(f"  {line}")
        else:
            after = before
    finally:
        if tmp_config_dir:
            shutil.rmtree(tmp_config_dir, ignore_errors=True)

    finding = remedy_finding(result, versions, offline, verified)
    remedy_check = Check(REMEDY_CODE, REMEDY_TITLE, lambda: [finding])
    remedy_result = CheckResult(remedy_check, [finding], result.seconds)
    results = list(after) + [remedy_result]

    # The report describes the user's deployment (their config, not the temporary one) with the facts
    # gathered after provisioning.
    report_ctx = offline_context(ctx) if after_ctx is not None else ctx
    source_facts = after_ctx.facts if after_ctx is not None else ctx.facts
    for name, value in source_facts.items():
        report_ctx.set_fact(name, value)
    report_ctx.set_fact("clip_provision", result.to_dict())
    files = [(f["path"], f"provisioned: {f['role']}" + ("" if f.get("written", True) else " (already there, kept)"))
             for f in result.files]
    remedy = Remedy(
        title=f"Provision {REPO_ID} offline from the checkpoint",
        steps=remedy_steps(result, yaml_text, offline, versions),
        before=[f for r in before for f in r.findings],
        after=[f for r in after for f in r.findings] if result.ok else [],
        files=files,
        transcript=transcript,
    )
    incomplete = any(r.status is Status.ERROR for r in after)
    paths = [str(p) for p in output_paths(args.report_dir, formats, incomplete).values()]
    report = build_report(results, report_ctx, written=paths, incomplete=incomplete, remedies=[remedy],
                          original_problem=original_problem(before, ctx.options.code_root))
    report.title = "CLIP Loading Resolution Report"
    _section_notes(report, result)
    if result.ok:
        report.recommendations.insert(0, f"Deploy with `{offline}`: the provisioned files are used without asking "
                                         "the Hub.")
        if yaml_text:
            report.recommendations.insert(1, _one_line(yaml_text)[0].upper() + _one_line(yaml_text)[1:] + ".")
    write_report(report, args.report_dir, formats)

    if yaml_text and result.ok:
        print(f"Yaml change: {yaml_text}")
    if result.ok:
        print(f"Next: start the service with `{offline}`.")
    else:
        print(f"  fix: {finding.fix}")
    print(f"Status: {report.status}. Reports: {', '.join(paths)}")
    blocking = any(f.blocking for r in results for f in r.findings)
    return EXIT_BLOCKING if blocking else EXIT_OK


def _one_line(yaml_text: Optional[str]) -> str:
    """The first line of rules.cache.yaml_change ("in X set `key: DIR`"), for places that show one line."""
    return (yaml_text or "").splitlines()[0].rstrip(":") if yaml_text else ""


def _section_notes(report, result) -> None:
    """The checkpoint and model sections say what this command looked at instead of "nothing checked"."""
    src = result.source
    for section in report.investigation:
        if section.key == "checkpoint" and not section.findings:
            if src.get("tensors"):
                section.note = (f"Read for its text encoder only, without running the file's code: "
                                f"{src.get('format')}, family {src.get('family')}, {src.get('tensors')} tensors "
                                f"under {src.get('prefix')}* "
                                f"({', '.join(sorted(src.get('dtypes') or {}))}). `python -m diagnostics inspect CKPT` "
                                "gives the full analysis.")
            else:
                section.note = f"Read for its text encoder only: {result.message}"
        if section.key == "model" and not section.findings and result.ok:
            section.note = ("The LDM was not built here; the Test Script Output below builds FrozenCLIPEmbedder in a "
                            "fresh offline process, as the service will.")


def _print_findings(results, marks, verbose: bool) -> None:
    from ..findings import Status

    for r in results:
        for f in r.findings:
            if f.status is Status.SKIP and not verbose:
                continue
            print(f"  {marks[f.status.value]} {f.code}: {f.summary}")
