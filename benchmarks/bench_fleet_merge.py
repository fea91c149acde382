"""Benchmark for `fleet merge` (issue 14): 1,000 node reports, merge time as a ratio to a plain
`json.load` of the same files (target: within 10x), and the 1,000-node fleet HTML in Chromium.

The node reports are real reports of this machine, made first under three conditions (the plain
environment, the Hub endpoint on a closed port, an interpreter without the ML stack given with
`--bare-python`), then copied to 1,000 node directories with their node id set and some drift
mixed in (torch 2.13.0 on every 50th node, another driver on every 97th); 10 expected nodes have no
report. Both measurements run in a fresh child process over the same warm files, best of three:

    baseline   for each file: json.load(open(path))
    merge      diagnostics.cli.main(["fleet", "merge", DIR, "--expect", ..., "--out", OUT])

Usage: python benchmarks/bench_fleet_merge.py [--nodes 1000] [--out DIR] [--bare-python PY] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
MISSING = 10


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(**extra) -> Dict[str, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    for name in ("SLURMD_NODENAME", "NODE_NAME"):
        env.pop(name, None)
    env.update(extra)
    return env


def seed_reports(work: Path, bare_python: Optional[str]) -> List[Path]:
    """Real reports of this machine under different conditions."""
    conditions = [("plain", sys.executable, {}), ("hub-down", sys.executable,
                                                 {"HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"})]
    if bare_python:
        conditions.append(("bare", bare_python, {}))
    seeds = []
    for name, python, extra in conditions:
        out = work / "seeds" / name
        proc = subprocess.run([python, "-m", "diagnostics", "report", "--node-id", name, "--out", str(out),
                               "--format", "json,html"], env=_env(**extra), capture_output=True, text=True, timeout=600)
        if proc.returncode not in (0, 1):
            raise SystemExit(f"seed report {name} failed: {proc.stderr[-2000:]}")
        seeds.append(out)
    return seeds


def fleet_of(seeds: List[Path], nodes_dir: Path, count: int) -> List[str]:
    """`count` node directories made from the seeds; returns every expected node id."""
    loaded = [(json.loads((s / "resolution-report.json").read_text(encoding="utf-8")),
               (s / "resolution-report.html").read_text(encoding="utf-8")) for s in seeds]
    names = [f"gpu{index:04d}" for index in range(1, count + MISSING + 1)]
    for index, name in enumerate(names[:count]):
        # mostly the plain report; every 7th the Hub outage, every 31st the venv without the ML stack
        seed = 2 if (len(loaded) > 2 and index % 31 == 5) else (1 if index % 7 == 3 else 0)
        data, html = loaded[seed]
        data = json.loads(json.dumps(data))
        data["node"]["id"] = name
        packages = data["facts"]["environment"]["packages"]
        if index % 50 == 10 and packages.get("torch"):
            packages["torch"] = "2.13.0"
        if index % 97 == 20:
            data["node"]["driver_version"] = "535.183.01"
        target = nodes_dir / name
        target.mkdir(parents=True, exist_ok=True)
        (target / "resolution-report.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
        (target / "resolution-report.html").write_text(html, encoding="utf-8")
    return names


BASELINE = r"""
import json, os, sys, time
paths = [os.path.join(r, f) for r, _, fs in os.walk(sys.argv[1]) for f in fs if f == "resolution-report.json"]
best = None
for _ in range(3):
    start = time.perf_counter()
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            json.load(fh)
    took = time.perf_counter() - start
    best = took if best is None else min(best, took)
print(json.dumps({"seconds": best, "files": len(paths), "bytes": sum(os.path.getsize(p) for p in paths)}))
"""

MERGE = r"""
import contextlib, io, json, sys, time
from diagnostics.cli import main
best, code = None, None
for _ in range(3):
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["fleet", "merge", sys.argv[1], "--expect", sys.argv[2], "--out", sys.argv[3]])
    took = time.perf_counter() - start
    best = took if best is None else min(best, took)
print(json.dumps({"seconds": best, "exit": code}))
"""


def measure(code: str, *args: str) -> Dict[str, float]:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=1800, env=_env())
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def screenshot(html: Path, png: Path) -> Optional[str]:
    sys.path.insert(0, str(ROOT))
    from tests.browser import FLAGS, chromium_binary

    binary = chromium_binary()
    if binary is None:
        return None
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=3000",
                        "--window-size=1400,900", f"--screenshot={png}", html.resolve().as_uri()],
                       capture_output=True, timeout=120)
    return str(png) if png.is_file() else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--out", help="keep the fleet here (default: a temporary directory)")
    parser.add_argument("--bare-python", help="an interpreter without torch/transformers, for the third condition")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    nodes_dir, fleet_dir = work / "nodes", work / "fleet"
    shutil.rmtree(nodes_dir, ignore_errors=True)
    names = fleet_of(seed_reports(work, args.bare_python), nodes_dir, args.nodes)
    expect = f"gpu[0001-{len(names):04d}]"
    baseline = measure(BASELINE, str(nodes_dir))
    merged = measure(MERGE, str(nodes_dir), expect, str(fleet_dir))
    ratio = merged["seconds"] / baseline["seconds"]
    html = fleet_dir / "resolution-fleet.html"
    data = json.loads((fleet_dir / "resolution-fleet.json").read_text(encoding="utf-8"))
    png = screenshot(html, work / "resolution-fleet.png")
    figures = {"nodes": args.nodes, "files": baseline["files"], "megabytes": round(baseline["bytes"] / 1e6, 1),
               "json_load_s": round(baseline["seconds"], 3), "merge_s": round(merged["seconds"], 3),
               "ratio": round(ratio, 2), "target_ratio": 10, "exit": merged["exit"], "groups": len(data["groups"]),
               "drift_keys": [d["key"] for d in data["drift"]], "matrix_rows": len(data["matrix"]),
               "missing": len(data["missing"]), "html_kb": round(html.stat().st_size / 1024, 1), "screenshot": png}
    print(f"{args.nodes} node reports ({figures['megabytes']} MB): json.load {figures['json_load_s']} s, "
          f"fleet merge {figures['merge_s']} s -> {figures['ratio']}x (target <= 10x)")
    print(f"groups {figures['groups']}, drift {figures['drift_keys']}, matrix rows {figures['matrix_rows']}, "
          f"missing {figures['missing']}, HTML {figures['html_kb']} KiB, screenshot {png}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0 if ratio <= 10 else 1


if __name__ == "__main__":
    sys.exit(main())
