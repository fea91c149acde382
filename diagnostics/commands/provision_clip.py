"""`python -m diagnostics provision-clip --checkpoint CKPT (--hf-cache | --clip-dir DIR)`: the offline CLIP remedy.

The seed's failure, ldm's FrozenCLIPEmbedder unable to load `openai/clip-vit-large-patch14` without the
Hub, is fixed from the checkpoint itself (remedies/clip_offline/): no network, no 1.7 GB download, no
edit of ldm's code. This command checks the affected findings before, provisions, checks them again in
offline mode (a fresh child process loads FrozenCLIPEmbedder as the service will), and writes the
resolution report with the before -> after table and that child's output ("Test Script Output").
The remedy's operations (`provisioning.provision`, `recheck.recheck_offline`, `recheck.remedy_finding`)
return data and never print; this module prints their results, writes the report and picks the exit code.

Exit codes as everywhere: 0 the CLIP problem is solved (nothing blocking in the re-check), 1 it is not
(no text encoder in the checkpoint: the minimal `hf download` is printed instead), 2 usage error.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Dict, List, Optional

from ..cli import EXIT_BLOCKING, EXIT_OK, UsageError
from .common import add_target_options, context_from_args


def add_arguments(parser) -> None:
    add_target_options(parser)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--hf-cache", action="store_true",
                      help="place the files in the Hugging Face cache the installed transformers reads, as "
                           "openai/clip-vit-large-patch14 (unmodified ldm code then loads it offline)")
    mode.add_argument("--clip-dir", "--out", dest="out", metavar="DIR",
                      help="write the files into DIR instead, and print the yaml change "
                           "(cond_stage_config.params.version: DIR); --out is the older name of this option")
    parser.add_argument("--report-dir", default="reports", help="directory for the report files (default: reports/)")
    parser.add_argument("--format", default="md,html,json",
                        help="comma-separated report formats: md, html, json (default: all)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show every re-checked finding")


# -- turning the outcome into findings and report parts -----------------------------------------

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
                 f"{fmt_bytes(SEED_DOWNLOAD_BYTES)} ({SEED_DOWNLOAD_BYTES:,} bytes: the Hub's pytorch_model.bin that a "
                 f"full Hub download fetches, vision tower included); took {result.seconds:.1f} s; no code was edited.")
    return steps


def note_on_key_names(source: Dict[str, Any], versions) -> Optional[str]:
    """When ldm's load_state_dict(strict=False) drops the checkpoint's CLIP keys with this transformers
    (ckpt.clip-missing), the provisioned weights are what the model runs with: say that they are the
    checkpoint's own."""
    from ..remedies.clip_offline.selection import spelling_applied

    prefix = source.get("prefix") or ""
    transformers_version = versions.get("transformers")
    if not prefix.startswith("cond_stage_model.") or spelling_applied(prefix, transformers_version) is not False:
        return None
    return (f"With transformers {transformers_version}, ldm's load_state_dict(strict=False) skips the checkpoint's {prefix}* keys as "
            "unexpected (ckpt.clip-missing), so the model keeps what from_pretrained loaded: these provisioned "
            "weights, which are those same tensors. The checkpoint's text encoder is used either way.")


def original_problem(before_results, code_root: Optional[str]) -> Optional[Dict[str, Any]]:
    """The seed's "Original Problem" from the failing tokenizer check: where FrozenCLIPEmbedder fails."""
    from ..findings import Status

    findings = [f for checked in before_results for f in checked.findings]
    failed = [f for f in findings if f.code == "tokenizer.functional" and f.status in (Status.FAIL, Status.ERROR)]
    if not failed:
        failed = [f for f in findings if f.code == "cache.model-missing" and f.status is Status.FAIL]
    if not failed:
        return None
    finding = failed[0]
    message = finding.evidence.get("error") if finding.evidence.get("error_type") else None
    problem: Dict[str, Any] = {
        "error_message": (f"{finding.evidence['error_type']}: {message}" if message else finding.summary),
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
            raise UsageError(f"--clip-dir {args.out} exists and is not a directory")
        problem = check_writable_dir(args.out)
        if problem:
            raise UsageError(f"--clip-dir: {problem}")
    problem = check_writable_dir(args.report_dir)
    if problem:
        raise UsageError(f"--report-dir: {problem}")


def run(args) -> int:
    from ..probes.cache import probe_cache
    from ..probes.environment import probe_environment
    from ..remedies.clip_offline import REPO_ID, provision
    from ..remedies.clip_offline.recheck import (OFFLINE_ENV, Recheck, affected_checks, clip_model, clip_refs,
                                                 recheck_offline, remedy_finding, run_affected)
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

    print("Before:")
    before = run_affected(ctx, affected_checks(mode))
    _print_findings(before, marks, args.verbose)
    versions = ctx.fact("environment", probe_environment).packages
    offline = offline_var(versions)
    locations = ctx.fact("cache", probe_cache).locations if mode == "hf-cache" else None
    others = [ref for ref in clip_refs(ctx) if ref != REPO_ID]
    if mode == "hf-cache" and others and REPO_ID not in clip_refs(ctx):
        print(f"Note: the config loads CLIP from {others[0]}, not {REPO_ID}: the cache entry does not serve it; "
              f"use --clip-dir {others[0]} if that is a folder, or point the yaml at {REPO_ID}.")
    print(f"Provisioning {REPO_ID} from {checkpoint} ...")
    result = provision(checkpoint, mode, versions, locations=locations, out_dir=out_dir)
    print(f"  {result.message}")

    yaml_text = yaml_change(clip_model(ctx, versions), ctx.options.config, out_dir or "") if mode == "out" else None
    recheck = recheck_offline(ctx, mode, out_dir) if result.ok else Recheck(results=before)
    if result.ok:
        print(f"After ({' '.join(f'{k}={v}' for k, v in OFFLINE_ENV.items())}"
              + (", with the yaml change" if mode == "out" else "") + "):")
        _print_findings(recheck.results, marks, True)
        print("Test script output:")
        for line in recheck.transcript.splitlines():
            print(f"  {line}")

    finding = remedy_finding(result, versions, offline, recheck.verified)
    report, paths = _write_resolution_report(args, ctx, formats, before, result, recheck, finding, yaml_text,
                                             offline, versions)
    if yaml_text and result.ok:
        print(f"Yaml change: {yaml_text}")
    if result.ok:
        print(f"Next: start the service with `{offline}`.")
    else:
        print(f"  fix: {finding.fix}")
    print(f"Status: {report.status}. Reports: {', '.join(paths)}")
    blocking = finding.blocking or any(f.blocking for checked in recheck.results for f in checked.findings)
    return EXIT_BLOCKING if blocking else EXIT_OK


def _write_resolution_report(args, ctx, formats, before, result, recheck, finding, yaml_text: Optional[str],
                             offline: str, versions):
    """The CLIP Loading Resolution Report in every asked format: (report, paths written)."""
    from ..findings import Status
    from ..registry import Check, CheckResult
    from ..remedies.clip_offline import REPO_ID
    from ..remedies.clip_offline.recheck import REMEDY_CODE, REMEDY_TITLE, offline_context
    from ..report.build import Remedy, build_report
    from ..report.render import output_paths, write_report

    after = recheck.results
    results = list(after) + [CheckResult(Check(REMEDY_CODE, REMEDY_TITLE, lambda: [finding]), [finding],
                                         result.seconds)]
    # The report describes the user's deployment (their config, not the temporary one) with the facts
    # gathered after provisioning.
    report_ctx = offline_context(ctx) if recheck.context is not None else ctx
    for name, value in (recheck.context or ctx).facts.items():
        report_ctx.set_fact(name, value)
    report_ctx.set_fact("clip_provision", result.to_dict())
    files = [(f["path"], f"provisioned: {f['role']}" + ("" if f.get("written", True) else " (already there, kept)"))
             for f in result.files]
    remedy = Remedy(
        title=f"Provision {REPO_ID} offline from the checkpoint",
        steps=remedy_steps(result, yaml_text, offline, versions),
        before=[f for checked in before for f in checked.findings],
        after=[f for checked in after for f in checked.findings] if result.ok else [],
        files=files,
        transcript=recheck.transcript,
    )
    incomplete = any(checked.status is Status.ERROR for checked in after)
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
    return report, paths


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

    for checked in results:
        for finding in checked.findings:
            if finding.status is Status.SKIP and not verbose:
                continue
            print(f"  {marks[finding.status.value]} {finding.code}: {finding.summary}")
