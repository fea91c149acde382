"""Seed scenario: how long until the harness answers, vs how long transformers takes to fail.

The seed's situation: an empty Hugging Face cache, no network, the default FrozenCLIPEmbedder id.
Measured here:

1. every registered check (the whole report's verdicts) in a fresh interpreter, wall time; and
   `python -m diagnostics report` when that command is installed;
2. each network/cache fault of the test suite, classified with 1-second step timeouts, wall time;
3. with `--transformers-time-to-fail` (minutes!): `CLIPTokenizer.from_pretrained` and
   `CLIPTextModel.from_pretrained` of the same id in the same environment, as ldm calls them.

    python benchmarks/bench_seed_scenario.py [--endpoint URL] [--transformers-time-to-fail] [--json OUT]

Without `--endpoint` the machine's real network is used (the seed scenario proper on an air-gapped
host); `--endpoint https://huggingface.invalid` simulates "no network" anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DEFAULT_ID = "openai/clip-vit-large-patch14"
DROP_VARS = ("HF_", "HUGGINGFACE_", "TRANSFORMERS_", "LDM_DIAG_", "XDG_CACHE_HOME")

CHECKS_CHILD = r"""
import json, sys, time
started = time.perf_counter()
sys.path.insert(0, sys.argv[1])
from diagnostics.context import Context
from diagnostics.registry import run_checks
results = run_checks(Context())
out = {"seconds": time.perf_counter() - started,
       "verdicts": {f.code: f.status.value for r in results for f in r.findings},
       "per_check": {r.check.id: round(r.seconds, 3) for r in results}}
print(json.dumps(out))
"""

TTF_CHILD = r"""
import json, sys, time
ref = sys.argv[1]
out = {}
t0 = time.perf_counter()
from transformers import CLIPTokenizer, CLIPTextModel
out["import_s"] = time.perf_counter() - t0
t1 = time.perf_counter()
try:
    tok = CLIPTokenizer.from_pretrained(ref)
    out["tokenizer"] = {"raised": None, "vocab_size": tok.vocab_size, "ids": tok("a photo of a dog")["input_ids"]}
except Exception as exc:
    out["tokenizer"] = {"raised": "%s: %s" % (type(exc).__name__, str(exc)[:300])}
out["tokenizer_s"] = time.perf_counter() - t1
t2 = time.perf_counter()
try:
    CLIPTextModel.from_pretrained(ref)
    out["model"] = {"raised": None}
except Exception as exc:
    out["model"] = {"raised": "%s: %s" % (type(exc).__name__, str(exc)[:300])}
out["model_s"] = time.perf_counter() - t2
out["total_s"] = time.perf_counter() - t0
print(json.dumps(out))
"""


def seed_environment(workdir: Path, endpoint: str = "") -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(DROP_VARS)}
    env.update({"HOME": str(workdir / "home"), "HF_HOME": str(workdir / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1"})
    if endpoint:
        env["HF_ENDPOINT"] = endpoint
    return env


def time_checks(env: Dict[str, str], cwd: Path) -> Dict[str, Any]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHECKS_CHILD, str(REPO)], env=env, cwd=str(cwd),
                          capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        return {"wall_s": wall, "error": proc.stderr[-2000:]}
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    data["wall_s"] = wall
    return data


def time_report_command(env: Dict[str, str], cwd: Path) -> Dict[str, Any]:
    env = dict(env, PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""))
    probe = subprocess.run([sys.executable, "-m", "diagnostics", "report", "--help"], env=env, cwd=str(cwd),
                           capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        return {"available": False, "reason": (probe.stderr or probe.stdout).strip().splitlines()[-1:]}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "diagnostics", "report"], env=env, cwd=str(cwd),
                          capture_output=True, text=True, timeout=600)
    return {"available": True, "wall_s": time.perf_counter() - started, "exit_code": proc.returncode}


def time_transformers(env: Dict[str, str], cwd: Path, timeout: float) -> Dict[str, Any]:
    started = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", TTF_CHILD, DEFAULT_ID], env=env, cwd=str(cwd),
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"wall_s": time.perf_counter() - started, "timed_out": True}
    wall = time.perf_counter() - started
    try:
        data = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"wall_s": wall, "error": proc.stderr[-2000:]}
    data["wall_s"] = wall
    return data


def time_faults(workdir: Path) -> List[Dict[str, Any]]:
    """The fault tests' scenarios, timed (1 s per network step)."""
    from tests.fakehub import CLIP_ID, FakeHub, clip_repo, closed_port, hermetic_env, make_context, \
        populate_cache, run_codes, self_signed_cert

    rows: List[Dict[str, Any]] = []

    def run(name: str, expect: str, checks, cwd=None, **env):
        tmp = Path(tempfile.mkdtemp(dir=str(workdir)))
        ctx = make_context(hermetic_env(tmp, **env), cwd or tmp)
        found, seconds = run_codes(ctx, *checks)
        got = sorted({c for c, fs in found.items() for f in fs if f.status.value in ("fail", "warn")})
        rows.append({"fault": name, "expected": expect, "classified_as": got, "seconds": round(seconds, 3),
                     "ok": expect in got})

    hub_checks = ("hub.endpoint", "hub.proxy", "hub.dns", "hub.connect", "hub.tls", "hub.http-status")
    run("unresolvable host (.invalid)", "hub.dns", hub_checks, HF_ENDPOINT="https://huggingface.invalid")
    run("closed port", "hub.connect", hub_checks, HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}")
    for mode, label in (("hang", "server that never answers"), ("gated", "401 gated"), ("404", "404"),
                        ("500", "500")):
        with FakeHub(mode=mode) as hub:
            run(label, "hub.http-status", hub_checks, HF_ENDPOINT=hub.endpoint)
    try:  # self_signed_cert skips through pytest when openssl is missing
        cert = self_signed_cert(Path(tempfile.mkdtemp(dir=str(workdir))))
        with FakeHub(tls=cert) as hub:
            run("TLS self-signed", "hub.tls", hub_checks, HF_ENDPOINT=hub.endpoint)
    except BaseException as exc:  # pytest.skip raises an outcome exception
        rows.append({"fault": "TLS self-signed", "skipped": str(exc)})
    with FakeHub() as hub:
        run("proxy on a closed port", "hub.proxy", hub_checks, HF_ENDPOINT=hub.endpoint,
            HTTP_PROXY=f"http://127.0.0.1:{closed_port()}")
        run("HF_HUB_OFFLINE with an empty cache", "cache.offline-flag", ("cache.offline-flag", "cache.model-missing"),
            HF_ENDPOINT=hub.endpoint, HF_HUB_OFFLINE="1")
    tmp = Path(tempfile.mkdtemp(dir=str(workdir)))
    repo = populate_cache(tmp / "hf" / "hub", CLIP_ID, clip_repo())
    (repo / "blobs" / ("0" * 64 + ".incomplete")).write_bytes(b"partial")
    ctx = make_context(hermetic_env(tmp, HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}"), tmp)
    found, seconds = run_codes(ctx, "cache.incomplete")
    rows.append({"fault": "incomplete blob", "expected": "cache.incomplete", "seconds": round(seconds, 3),
                 "classified_as": [c for c, fs in found.items() if fs[0].status.value in ("warn", "fail")],
                 "ok": found["cache.incomplete"][0].status.value == "warn"})
    app = Path(tempfile.mkdtemp(dir=str(workdir)))
    (app / CLIP_ID).mkdir(parents=True)
    run("shadowing directory", "cache.shadowing-dir", ("cache.shadowing-dir",), cwd=app)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default="", help="HF_ENDPOINT for the seed scenario (default: the real Hub)")
    parser.add_argument("--transformers-time-to-fail", action="store_true",
                        help="also time transformers' own load in the same scenario (takes minutes)")
    parser.add_argument("--ttf-timeout", type=float, default=1200.0, help="limit for that run in seconds")
    parser.add_argument("--no-faults", action="store_true", help="skip the fault classification timings")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)

    results: Dict[str, Any] = {"python": sys.version.split()[0], "endpoint": args.endpoint or "default"}
    with tempfile.TemporaryDirectory(prefix="ldm-diag-bench-") as tmp:
        work = Path(tmp)
        (work / "app").mkdir()
        env = seed_environment(work, args.endpoint)
        checks = time_checks(env, work / "app")
        results["checks"] = checks
        print(f"seed scenario, every registered check: {checks['wall_s']:.2f} s wall")
        for code in ("cache.model-missing", "tokenizer.functional", "hub.dns"):
            print(f"  {code}: {checks.get('verdicts', {}).get(code)}")
        slow = sorted(checks.get("per_check", {}).items(), key=lambda kv: -kv[1])[:3]
        print("  slowest checks: " + ", ".join(f"{k} {v:.2f} s" for k, v in slow))
        report = time_report_command(env, work / "app")
        results["report_command"] = report
        if report.get("available"):
            print(f"python -m diagnostics report: {report['wall_s']:.2f} s wall (exit {report['exit_code']})")
        if not args.no_faults:
            results["faults"] = time_faults(work)
            for row in results["faults"]:
                if "skipped" in row:
                    print(f"  fault {row['fault']}: skipped ({row['skipped']})")
                else:
                    print(f"  fault {row['fault']:<38} -> {', '.join(row['classified_as']) or '-':<40} "
                          f"{row['seconds']:.2f} s {'ok' if row['ok'] else 'WRONG'}")
        if args.transformers_time_to_fail:
            (work / "hf").mkdir(exist_ok=True)
            ttf = time_transformers(seed_environment(work / "ttf", args.endpoint), work / "app", args.ttf_timeout)
            results["transformers_time_to_fail"] = ttf
            print(f"transformers' own time to fail: {ttf['wall_s']:.1f} s wall "
                  f"(tokenizer {ttf.get('tokenizer_s', float('nan')):.1f} s -> {ttf.get('tokenizer')}, "
                  f"CLIPTextModel {ttf.get('model_s', float('nan')):.1f} s -> {ttf.get('model')})")
            print(f"ratio: {ttf['wall_s'] / checks['wall_s']:.0f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
