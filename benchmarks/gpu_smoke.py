"""GPU smoke run of the model check at full size: SD 1.5-inpainting from the real config, random weights.

One prepared script for a machine with an NVIDIA GPU. It builds the real `v1-inpainting-inference.yaml`
model (sdkit's models_db/configs, the real `ldm` code) with random weights and a CLIP ViT-L/14-shaped
text encoder in a local directory (no hub needed), saves it as a pruned fp16 safetensors file
(2.1 GB, no EMA weights: what most deployments ship), then runs the harness's model check on it:
instantiate (meta device) + load (strict=False) + move to the GPU (fp16) + smoke forward (text
encoder, one 512 px UNet step with 9 input channels, VAE decode), and prints the time and memory of
each step and every config/model finding.

    python benchmarks/gpu_smoke.py [--device auto|cuda|cpu] [--dtype fp16|fp32] [--size full|tiny]
                                   [--latent N] [--keep DIR] [--json OUT]

Without a GPU (`--device auto`) it says so and runs the same path on the CPU at a small latent size
(16 = 128 px); `--device cuda` without a GPU exits with status 2. The pruned file with this config's
default `use_ema` reproduces the seed's "EMA weight mismatches": expect `config.use-ema` and
`model.load-keys` to fail with 688 missing model_ema.* keys.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.ldm_factory import child_env, pl_shim  # noqa: E402

CODES = ("config.load", "config.in-channels", "config.context-dim", "config.use-ema", "config.cond-stage",
         "model.import", "model.instantiate", "model.load-keys", "model.smoke-forward", "cuda.memory")


def gib(n):
    return "n/a" if n is None else f"{n / 2**30:.2f} GiB"


def cuda_available():
    try:
        import torch
    except ImportError:
        return None, "torch is not installed"
    try:
        if torch.cuda.is_available():
            return True, torch.cuda.get_device_name(0)
        return False, f"torch {torch.__version__} sees no CUDA device (torch.cuda.is_available() is False)"
    except Exception as exc:  # a broken driver must not crash the benchmark
        return False, f"torch.cuda.is_available() raised {type(exc).__name__}: {exc}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--dtype", choices=("fp16", "fp32"), default="fp16")
    parser.add_argument("--size", choices=("full", "tiny"), default="full")
    parser.add_argument("--config", default="v1-inpainting-inference.yaml")
    parser.add_argument("--latent", type=int, default=None, help="latent size (default: 64 = 512 px on a GPU, 16 on the CPU)")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--keep", help="directory for the generated model (reused when it exists)")
    parser.add_argument("--json", help="write all facts and figures here")
    args = parser.parse_args()

    has_cuda, where = cuda_available()
    if has_cuda is None:
        print(f"cannot run: {where}", file=sys.stderr)
        return 2
    device = args.device
    if device == "cuda" and not has_cuda:
        print(f"--device cuda, but no usable GPU: {where}", file=sys.stderr)
        return 2
    if device == "auto":
        device = "cuda" if has_cuda else "cpu"
        if not has_cuda:
            print(f"No GPU: {where}. Running the CPU path at a small size instead; run this script on a machine "
                  "with an NVIDIA GPU for the GPU figures.", flush=True)
    latent = args.latent or (64 if device == "cuda" else 16)
    print(f"device: {device} ({where if has_cuda else 'CPU'}), dtype {args.dtype if device == 'cuda' else 'fp32'}, "
          f"latent {latent} ({latent * 8} px), model size {args.size}", flush=True)

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="ldm-gpu-smoke-"))
    try:
        return run(args, work, device, latent, where)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)  # the generated model is gigabytes


def run(args, work: Path, device: str, latent: int, where: str) -> int:
    shim = pl_shim(work / "pl-shim")
    env = child_env([shim], LDM_DIAG_DTYPE=args.dtype)
    out = work / f"{args.size}-{Path(args.config).stem}"
    t0 = time.perf_counter()
    if not (out / "manifest.json").exists():
        print(f"building {args.config} at {args.size} size with random weights in {out} ...", flush=True)
        subprocess.run([sys.executable, "-m", "tests.ldm_factory", "bench", str(out), args.config, args.size, "fp16"],
                       env=env, cwd=str(REPO), check=True)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    print(f"model file: {manifest['checkpoint']} ({manifest['bytes'] / 2**30:.2f} GiB, "
          f"{manifest['parameters'] / 1e6:.2f} M parameters, {manifest['tensors']} tensors); "
          f"built in {time.perf_counter() - t0:.1f} s", flush=True)

    from diagnostics.context import Context, Options
    from diagnostics.probes.model import model_request, run_model_child
    from diagnostics.registry import get_check, run_check

    ctx = Context(Options(config=manifest["config"], checkpoint=manifest["checkpoint"], device=device,
                          timeout=args.timeout), environ=env)
    request = dict(model_request(ctx), latent_size=latent)
    t1 = time.perf_counter()
    facts = run_model_child(ctx, request)
    wall = time.perf_counter() - t1
    ctx.set_fact("model", facts)

    stages = facts["stages"]
    imp, inst, load = stages.get("import", {}), stages.get("instantiate", {}), stages.get("load", {})
    dev, smoke = stages.get("device", {}), stages.get("smoke", {})
    print("\n== figures")
    print(f"harness run (child process, wall): {wall:.1f} s")
    print(f"import: {imp.get('seconds', 0):.2f} s | instantiate: {inst.get('seconds', 0):.2f} s "
          f"(meta device: {inst.get('meta')}) | load: {load.get('seconds', 0):.2f} s "
          f"(read {load.get('read_seconds', 0):.2f} s)")
    for name, comp in (inst.get("components") or {}).items():
        print(f"  {name}: " + (f"{comp['parameters'] / 1e6:.2f} M params" if "parameters" in comp
                               else f"{comp.get('tensors')} EMA buffers"))
    if dev:
        print(f"to {dev.get('device')} ({dev.get('dtype')}): {dev.get('seconds', 0):.2f} s; allocated "
              f"{gib(dev.get('memory_allocated'))}, peak {gib(dev.get('max_memory_allocated'))}, "
              f"GPU total {gib(dev.get('total_memory'))}; zero-filled tensors (not in the file): {dev.get('zero_filled')}")
    for part, data in (smoke.get("parts") or {}).items():
        print(f"  smoke {part}: {data.get('shape')} finite={data.get('finite')} {data.get('seconds', 0):.2f} s"
              + (f" ERROR {data['error']['type']}: {data['error']['message'][:200]}" if data.get("error") else ""))
    if smoke:
        print(f"smoke peak GPU memory: {gib(smoke.get('max_memory_allocated'))}; process peak RSS "
              f"{gib(smoke.get('rss_peak_bytes'))}")
    if facts.get("error"):
        print(f"ERROR in {facts['error'].get('stage')}: {facts['error'].get('type')}: "
              f"{str(facts['error'].get('message'))[:500]}")
    print("\n== findings")
    findings = []
    for code in CODES:
        for f in run_check(get_check(code), ctx).findings:
            findings.append(f.to_dict())
            print(f"[{f.status.value}] {f.code}: {f.summary}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device, "where": where, "manifest": manifest,
                                               "wall": wall, "facts": facts, "findings": findings}, indent=2,
                                              default=str), encoding="utf-8")
    ran = bool(smoke) and all(not p.get("error") for p in (smoke.get("parts") or {}).values())
    return 0 if ran else 1


if __name__ == "__main__":
    sys.exit(main())
