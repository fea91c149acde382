"""Harness overhead of the model check: our instantiate + load vs the plain script everyone writes.

The plain script is what `scripts/txt2img.py`'s `load_model_from_config` does (and the seed's
hand-written `test/check_unet_load.py`): `instantiate_from_config(config.model)` then
`model.load_state_dict(sd, strict=False)`. Ours is `probes.model.run_model_child`: the same import,
instantiation (parameters on the meta device) and strict=False load with key grouping, in a child
process, without the device move and smoke forward. Both start a fresh interpreter, so the time
includes importing torch, Lightning, transformers and ldm, as a real check does.

    python benchmarks/bench_model_overhead.py [--size tiny|full] [--repeat 3] [--keep DIR] [--json OUT]

`--size full` builds the real SD 1.5-inpainting widths with random weights (2.1 GB fp16 file, about
8 GB of RAM for the plain script); `tiny` uses the tests' widths. Target: ratio <= 1.1.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.ldm_factory import child_env, pl_shim  # noqa: E402

PLAIN = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
from omegaconf import OmegaConf
from ldm.util import instantiate_from_config
from safetensors.torch import load_file
config = OmegaConf.load(sys.argv[1])
model = instantiate_from_config(config.model)
t1 = time.perf_counter()
sd = load_file(sys.argv[2])
missing, unexpected = model.load_state_dict(sd, strict=False)
t2 = time.perf_counter()
print(json.dumps({"instantiate": t1 - t0, "load": t2 - t1, "missing": len(missing), "unexpected": len(unexpected)}))
"""

OURS = r"""
import json, sys, time
from diagnostics.context import Context, Options
from diagnostics.probes.model import model_request, run_model_child
ctx = Context(Options(config=sys.argv[1], checkpoint=sys.argv[2], timeout=3600))
request = dict(model_request(ctx), device="none", smoke=False)
facts = run_model_child(ctx, request)
stages = facts["stages"]
print(json.dumps({"error": facts["error"], "import": stages.get("import", {}).get("seconds"),
                  "instantiate": stages.get("instantiate", {}).get("seconds"),
                  "load": stages.get("load", {}).get("seconds"),
                  "missing": (stages.get("load", {}).get("missing") or {}).get("count")}))
"""


def _children_cpu() -> float:
    try:
        import resource
    except ImportError:  # Windows: wall time only
        return 0.0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # includes grandchildren once they are reaped
    return usage.ru_utime + usage.ru_stime


def timed(argv, env):
    """(wall seconds, CPU seconds of the process tree, the script's JSON line)."""
    cpu0 = _children_cpu()
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=str(REPO))
    wall = time.perf_counter() - t0
    cpu = _children_cpu() - cpu0
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    last = [line for line in proc.stdout.splitlines() if line.startswith("{")][-1]
    return wall, cpu, json.loads(last)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("tiny", "full"), default="tiny")
    parser.add_argument("--config", default="v1-inpainting-inference.yaml")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", help="directory for the generated model (reused when it exists)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="ldm-bench-"))
    try:
        return run(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)  # the generated model is gigabytes


def run(args, work: Path) -> int:
    shim = pl_shim(work / "pl-shim")
    env = child_env([shim])
    manifest_path = work / args.size / "manifest.json"
    if not manifest_path.exists():
        print(f"building a {args.size} {args.config} model with random weights in {work / args.size} ...", flush=True)
        subprocess.run([sys.executable, "-m", "tests.ldm_factory", "bench", str(work / args.size), args.config,
                        args.size, "fp16"], env=env, cwd=str(REPO), check=True)
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    print(f"model: {manifest['parameters'] / 1e6:.1f} M parameters, {manifest['bytes'] / 2**20:.0f} MiB "
          f"({manifest['tensors']} tensors)")

    rows = {"plain": [], "ours": []}
    cpus = {"plain": [], "ours": []}
    details = {"plain": [], "ours": []}
    for i in range(args.repeat):
        # alternate the order so that page-cache warmth favours neither side
        order = ("plain", "ours") if i % 2 == 0 else ("ours", "plain")
        for name in order:
            script = PLAIN if name == "plain" else OURS
            wall, cpu, data = timed([sys.executable, "-c", script, manifest["config"], manifest["checkpoint"]], env)
            if name == "ours" and data.get("error"):
                raise SystemExit(f"the harness run failed: {data['error']}")
            rows[name].append(wall)
            cpus[name].append(cpu)
            details[name].append(data)
            print(f"  run {i + 1} {name:5s}: {wall:7.2f} s wall {cpu:7.2f} s CPU  {json.dumps(data)}", flush=True)
    # The fastest run is the best estimate of each side's cost on a shared machine; CPU time is the
    # check that does not depend on what else the machine is doing.
    plain, ours = min(rows["plain"]), min(rows["ours"])
    ratio = ours / plain
    cpu_ratio = statistics.median(cpus["ours"]) / statistics.median(cpus["plain"]) if cpus["plain"][0] else None
    print(f"fastest wall: plain {plain:.2f} s, ours {ours:.2f} s, ratio {ratio:.3f}; median CPU ratio "
          + (f"{cpu_ratio:.3f}" if cpu_ratio else "n/a") + " (target <= 1.1): "
          + ("OK" if ratio <= 1.1 else "OVER TARGET"))
    if args.json:
        Path(args.json).write_text(json.dumps({"size": args.size, "config": args.config, "manifest": manifest,
                                               "walls": rows, "cpu": cpus, "details": details, "ratio": ratio,
                                               "cpu_ratio": cpu_ratio, "cpu_count": os.cpu_count()}, indent=2),
                                   encoding="utf-8")
    return 0 if ratio <= 1.1 else 1


if __name__ == "__main__":
    sys.exit(main())
