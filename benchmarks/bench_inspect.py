"""Benchmark for `inspect` (issue 4): a full-size SD 1.5-inpainting checkpoint, measured side by side.

Generates, with the real `ldm` classes from sdkit's real config (built on the meta device, then filled
with random weights from a small random pool, so generation needs no more memory than the file):

- `sd15-inpainting-ema-fp32.ckpt`: Lightning-style torch zip, UNet + VAE + CLIP + EMA, float32 (~7.7 GB);
- `sd15-inpainting-pruned-fp16.safetensors`: the same model without EMA in float16 (~2.1 GB);

then runs each measurement in a fresh child process (wall time of the call itself, and the child's peak
RSS from `wait4`) and prints one table with the issue's targets:

    torch.load(map_location="cpu") vs inspect      wall ratio <= 1 %, peak RSS ratio <= 3 %
    safetensors header                              <= 50 ms
    --deep read rate vs `cat FILE > /dev/null`      >= 70 %, RSS <= 3 x the largest tensor
    --hash vs `sha256sum`                           >= 90 % of its speed
    --hash rerun (cache)                            <= 0.1 s

Cheap measurements (inspect, header, cached rerun) are the best of three runs; the expensive ones
(torch.load, --deep, --hash, cat, sha256sum) run once.

Usage: python benchmarks/bench_inspect.py [--out DIR] [--dtype float16] [--no-ema] [--regenerate] [--json FILE]
Needs torch, safetensors, numpy, omegaconf, pytorch_lightning and the `ldm`/`sdkit` packages; about
10 GB of disk and, for the torch.load baseline, as much free RAM as the checkpoint's size.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "v1-inpainting-inference.yaml"


# ---------------------------------------------------------------- generation

def _fill_from_pool(shape, pool, cursor: List[int]):
    import torch

    n = 1
    for d in shape:
        n *= int(d)
    out = torch.empty(n, dtype=pool.dtype)
    done = 0
    while done < n:
        start = cursor[0] % pool.numel()
        take = min(n - done, pool.numel() - start)
        out[done:done + take].copy_(pool[start:start + take])
        done += take
        cursor[0] += take + 7919  # shift so neighbouring tensors differ
    return out.view(*shape) if shape else out.view(())


def generate(out: Path, dtype: str, ema: bool, regenerate: bool) -> Dict[str, Path]:
    sys.path.insert(0, str(ROOT))
    from tests import ckpt_factory as factory  # builds the real ldm model from the real config

    import torch

    ckpt = out / f"sd15-inpainting{'-ema' if ema else ''}-{'fp32' if dtype == 'float32' else 'fp16'}.ckpt"
    st = out / "sd15-inpainting-pruned-fp16.safetensors"
    if ckpt.exists() and st.exists() and not regenerate:
        return {"ckpt": ckpt, "safetensors": st}
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model = factory.full_size_model(CONFIG)
    meta_sd = factory.sd1_layout(model.state_dict(), torch.zeros(1, 77, dtype=torch.int64))
    gen = torch.Generator().manual_seed(0)
    pool = (torch.randn(32 * 1024 * 1024, generator=gen) * 0.02).to(getattr(torch, dtype))
    cursor = [0]

    def materialise(keep_ema: bool, pool_) -> Dict[str, Any]:
        sd = {}
        for key, value in meta_sd.items():
            if key.startswith("model_ema.") and not keep_ema:
                continue
            if key.endswith("embeddings.position_ids"):
                sd[key] = torch.arange(77, dtype=torch.int64)[None]
            elif key == "model_ema.num_updates":
                sd[key] = torch.tensor(440000, dtype=torch.int32)
            elif key == "model_ema.decay":
                sd[key] = torch.tensor(0.9999, dtype=torch.float32)
            elif value.device.type != "meta":
                sd[key] = value.detach().clone().to(pool_.dtype)  # DDPM schedule buffers are real already
            else:
                sd[key] = _fill_from_pool(tuple(value.shape), pool_, cursor)
        return sd

    from pytorch_lightning.callbacks.model_checkpoint import ModelCheckpoint

    sd = materialise(ema, pool)
    torch.save({"epoch": 6, "global_step": 440000, "pytorch-lightning_version": "1.4.2", "state_dict": sd,
                "callbacks": {ModelCheckpoint: {"best_model_path": "", "dirpath": "logs/checkpoints"}}}, str(ckpt))
    del sd
    from safetensors.torch import save_file

    pruned = materialise(False, pool.to(torch.float16))
    save_file(pruned, str(st))
    del pruned
    for path in (ckpt, st):
        with open(str(path), "rb") as fh:
            os.fsync(fh.fileno())
    print(f"generated in {time.perf_counter() - t0:.1f} s: {ckpt.name} ({ckpt.stat().st_size / 1e9:.2f} GB), "
          f"{st.name} ({st.stat().st_size / 1e9:.2f} GB)", file=sys.stderr)
    return {"ckpt": ckpt, "safetensors": st}


# ---------------------------------------------------------------- measuring

def child(code: str, *args: str) -> Dict[str, Any]:
    """Run `code` in a fresh interpreter; it prints one JSON line. Adds the child's peak RSS (bytes)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    out = proc.stdout.read().decode()
    err = proc.stderr.read().decode()
    proc.returncode = os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}): {err[-2000:]}")
    data = json.loads(out.strip().splitlines()[-1])
    data["peak_rss"] = usage.ru_maxrss * 1024  # kilobytes on Linux
    return data


TORCH_LOAD = """
import json, sys, time, torch
t = time.perf_counter()
sd = torch.load(sys.argv[1], map_location="cpu", weights_only=False)  # our own file: the pre-2.6 default
print(json.dumps({"seconds": time.perf_counter() - t}))
"""

INSPECT = """
import json, sys, time
from diagnostics.probes.checkpoint import inspect_checkpoint
# Import what the call imports lazily, as the torch.load child imports torch before its clock starts.
from diagnostics.probes.checkpoint import layout, safetensors_fmt, sniff, torchfile, values, hashing  # noqa
if sys.argv[2] == "1":
    import numpy  # noqa
deep, want_hash = sys.argv[2] == "1", sys.argv[3] == "1"
env = {"LDM_DIAG_CACHE_DIR": sys.argv[4]}
t = time.perf_counter()
facts = inspect_checkpoint(sys.argv[1], deep=deep, want_hash=want_hash, environ=env)
seconds = time.perf_counter() - t
assert facts["analysed"] and not facts["problems"], facts["problems"]
print(json.dumps({"seconds": seconds, "phases": facts["seconds"], "deep": facts.get("deep"), "hash": facts.get("hash"),
                  "tensors": facts["tensors_total"], "family": facts["family"], "variant": facts["variant"]}))
"""

HEADER = """
import json, os, sys, time
from diagnostics.probes.checkpoint.safetensors_fmt import read_safetensors
size = os.path.getsize(sys.argv[1])
best = 1e9
for _ in range(5):
    t = time.perf_counter()
    with open(sys.argv[1], "rb") as fh:
        result = read_safetensors(fh, size)
    best = min(best, time.perf_counter() - t)
print(json.dumps({"seconds": best, "tensors": len(result.tensors), "header_bytes": result.container["header_bytes"]}))
"""

CLI = """
import json, subprocess, sys, time
t = time.perf_counter()
proc = subprocess.run([sys.executable, "-m", "diagnostics", "inspect", sys.argv[1], "--json"], capture_output=True)
print(json.dumps({"seconds": time.perf_counter() - t, "rc": proc.returncode}))
"""


def drop_cache(path: Path) -> bool:
    """Evict the file from the page cache (no root needed); False where the platform cannot."""
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return True


def timed(argv: List[str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def cat_seconds(path: Path) -> float:
    with open(os.devnull, "wb") as null:
        t = time.perf_counter()
        subprocess.run(["cat", str(path)], stdout=null, check=True)
        return time.perf_counter() - t


LARGEST = """
import json, os, sys
from diagnostics.probes.checkpoint.torchfile import read_torch_zip
with open(sys.argv[1], "rb") as fh:
    print(json.dumps({"bytes": max(t.nbytes for t in read_torch_zip(fh, os.path.getsize(sys.argv[1])).tensors)}))
"""


def largest_tensor_bytes(path: Path) -> int:
    return child(LARGEST, str(path))["bytes"]


def best_of(runs: int, code: str, *args: str) -> Dict[str, Any]:
    """The fastest of a few runs of a cheap child (the machine may be shared); the others are kept."""
    results = [child(code, *args) for _ in range(runs)]
    best = min(results, key=lambda r: r["seconds"])
    best["all_seconds"] = [round(r["seconds"], 4) for r in results]
    return best


def run(files: Dict[str, Path], skip_torch_load: bool, cold: bool) -> Dict[str, Any]:
    ckpt, st = files["ckpt"], files["safetensors"]
    size = ckpt.stat().st_size
    cache = Path(tempfile.mkdtemp(prefix="ldm-diag-hash-cache-"))
    res: Dict[str, Any] = {"file": ckpt.name, "size_bytes": size, "safetensors_bytes": st.stat().st_size}
    cat_seconds(ckpt)  # warm the page cache for the warm measurements
    res["inspect"] = best_of(3, INSPECT, str(ckpt), "0", "0", str(cache))
    res["inspect_cli"] = best_of(3, CLI, str(ckpt))
    res["safetensors_header"] = child(HEADER, str(st))
    res["safetensors_inspect"] = best_of(3, INSPECT, str(st), "0", "0", str(cache))
    res["largest_tensor_bytes"] = largest_tensor_bytes(ckpt)
    # Warm cache: alternate cat and the deep scan twice and keep the best of each (before torch.load,
    # whose 8 GB evicts the page cache).
    cats, deeps = [], []
    for _ in range(2):
        cats.append(cat_seconds(ckpt))
        deeps.append(child(INSPECT, str(ckpt), "1", "0", str(cache)))
    res["cat_warm"] = min(cats)
    res["cat_warm_all"] = [round(c, 3) for c in cats]
    res["deep_warm"] = min(deeps, key=lambda d: d["deep"]["seconds"])
    res["deep_warm_all"] = [d["deep"]["seconds"] for d in deeps]
    if not skip_torch_load:
        res["torch_load"] = child(TORCH_LOAD, str(ckpt))
    if cold and drop_cache(ckpt):
        res["cat_cold"] = cat_seconds(ckpt)
        drop_cache(ckpt)
        res["deep_cold"] = child(INSPECT, str(ckpt), "1", "0", str(cache))
    cat_seconds(ckpt)
    if shutil.which("sha256sum"):
        res["sha256sum"] = timed(["sha256sum", str(ckpt)])
    res["hash_first"] = child(INSPECT, str(ckpt), "0", "1", str(cache))
    res["hash_rerun"] = best_of(3, INSPECT, str(ckpt), "0", "1", str(cache))
    shutil.rmtree(str(cache), ignore_errors=True)
    return res


def report(res: Dict[str, Any]) -> str:
    gb = res["size_bytes"] / 1e9
    rows = []

    def row(what, ours, theirs, ratio, target, ok):
        rows.append((what, ours, theirs, ratio, target, "yes" if ok else "NO"))

    ins = res["inspect"]
    if "torch_load" in res:
        tl = res["torch_load"]
        wall = ins["seconds"] / tl["seconds"]
        rss = ins["peak_rss"] / tl["peak_rss"]
        row("inspect vs torch.load: wall", f"{ins['seconds'] * 1000:.0f} ms", f"{tl['seconds']:.2f} s",
            f"{100 * wall:.2f} %", "<= 1 %", wall <= 0.01)
        row("inspect vs torch.load: peak RSS", f"{ins['peak_rss'] / 2**20:.0f} MiB", f"{tl['peak_rss'] / 2**20:.0f} MiB",
            f"{100 * rss:.2f} %", "<= 3 %", rss <= 0.03)
        cli = res["inspect_cli"]
        row("  (whole CLI process vs torch.load call)", f"{cli['seconds']:.2f} s", f"{tl['seconds']:.2f} s",
            f"{100 * cli['seconds'] / tl['seconds']:.1f} %", "-", True)
    hdr = res["safetensors_header"]
    row("safetensors header (fp16 pruned)", f"{hdr['seconds'] * 1000:.1f} ms", f"{hdr['tensors']} tensors", "-",
        "<= 50 ms", hdr["seconds"] <= 0.05)
    row("  full inspect of the safetensors", f"{res['safetensors_inspect']['seconds'] * 1000:.0f} ms", "-", "-", "-", True)
    for label in ("warm", "cold"):
        if f"deep_{label}" not in res:
            continue
        deep = res[f"deep_{label}"]["deep"]
        rate = deep["bytes_read"] / deep["seconds"]
        cat_rate = res["size_bytes"] / res[f"cat_{label}"]
        row(f"--deep read rate vs cat ({label} cache)", f"{rate / 1e9:.2f} GB/s", f"{cat_rate / 1e9:.2f} GB/s",
            f"{100 * rate / cat_rate:.0f} %", ">= 70 %", rate >= 0.7 * cat_rate)
        peak = res[f"deep_{label}"]["peak_rss"]
        row(f"  --deep peak RSS vs largest tensor ({label})", f"{peak / 2**20:.0f} MiB",
            f"{res['largest_tensor_bytes'] / 2**20:.0f} MiB", f"{peak / res['largest_tensor_bytes']:.2f} x", "<= 3 x",
            peak <= 3 * res["largest_tensor_bytes"])
    if "sha256sum" in res:
        ours = res["hash_first"]["phases"]["hash"]
        row("--hash vs sha256sum", f"{gb / ours:.2f} GB/s", f"{gb / res['sha256sum']:.2f} GB/s",
            f"{100 * res['sha256sum'] / ours:.0f} %", ">= 90 %", res["sha256sum"] / ours >= 0.9)
    rerun = res["hash_rerun"]
    row("--hash rerun (cached)", f"{rerun['phases']['hash'] * 1000:.1f} ms hash, {rerun['seconds'] * 1000:.0f} ms total",
        "-", "-", "<= 0.1 s", rerun["seconds"] <= 0.1)
    widths = [max(len(str(r[i])) for r in rows + [("what", "ours", "reference", "ratio", "target", "met")])
              for i in range(6)]
    head = ("what", "ours", "reference", "ratio", "target", "met")
    lines = [f"{res['file']}: {gb:.2f} GB, {ins['tensors']} tensors, {ins['family']} {ins['variant']}", ""]
    for r in [head] + rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "ldm-diagnostics-bench"),
                        help="where the generated checkpoints go (kept for reruns)")
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                        help="dtype of the .ckpt (float16 halves size and time)")
    parser.add_argument("--no-ema", action="store_true", help="leave the EMA out of the .ckpt (4.3 GB in float32)")
    parser.add_argument("--regenerate", action="store_true", help="rebuild the files even if they exist")
    parser.add_argument("--skip-torch-load", action="store_true", help="skip the torch.load baseline (needs RAM)")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-cache (posix_fadvise) measurements")
    parser.add_argument("--json", help="also write the raw measurements to this file")
    parser.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.generate_only:
        files = generate(Path(args.out), args.dtype, not args.no_ema, args.regenerate)
        print(json.dumps({k: str(v) for k, v in files.items()}))
        return 0
    # Generate in a child process: a child's peak RSS counts from the fork, so the measuring process must
    # stay small for the children's figures to be their own.
    cmd = [sys.executable, str(Path(__file__).resolve()), "--generate-only", "--out", args.out, "--dtype", args.dtype]
    cmd += ["--no-ema"] * args.no_ema + ["--regenerate"] * args.regenerate
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, check=True)
    files = {k: Path(v) for k, v in json.loads(proc.stdout.decode().strip().splitlines()[-1]).items()}
    res = run(files, args.skip_torch_load, not args.no_cold)
    print(report(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
