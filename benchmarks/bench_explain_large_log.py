"""Benchmark for `explain` on a large log: its time against a plain read of the same file.

Writes a log of about `--mb` MB (default 50) the way a long-running web UI or training job leaves
one: startup lines (an xformers notice, a deprecation warning, checkpoint loading), then hour after
hour of generation records (timestamped INFO lines, tqdm progress bars redrawn with carriage
returns, a warning now and then, one earlier traceback that was handled), and at the end the seed
failure (tests/logs/seed_clip_tokenizer.log). Then it times, each in a fresh child process:

    read      open the file and read it (bytes, then UTF-8 decode): the obvious alternative
    explain   `python -m diagnostics explain LOG --no-confirm --json` work in-process:
              read_log + explain_text (parse, redact, match), no checks run
    explain-seed-only  the same on the seed failure alone: explain's fixed cost (reading the
              frames' source files for class names, the installed versions)
    parse-whole   the parser on all that read_log returns, without explain's window: what the
              window saves

and prints the ratio explain / read (the lower the better). Best of `--repeat` runs.

Usage: python benchmarks/bench_explain_large_log.py [--mb 50] [--out DIR] [--repeat 3] [--json FILE]
Standard library only (plus this checkout's `diagnostics`).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "tests" / "logs" / "seed_clip_tokenizer.log"

_STARTUP = """Python 3.10.12 (main, Nov 20 2023, 15:14:05) [GCC 11.4.0]
Version: v1.7.0
Launching Web UI with arguments: --listen --api
No module 'xformers'. Proceeding without it.
/opt/venv/lib/python3.10/site-packages/torchvision/transforms/functional_tensor.py:5: UserWarning: The torchvision.transforms.functional_tensor module is deprecated in 0.15 and will be **removed in 0.17**.
Loading weights [cc6cb27103] from /models/Stable-diffusion/v1-5-pruned-emaonly.ckpt
Creating model from config: /app/configs/v1-inference.yaml
LatentDiffusion: Running in eps-prediction mode
DiffusionWrapper has 859.52 M params.
Applying attention optimization: Doggettx... done.
Model loaded in 4.2s (load weights from disk: 1.1s, create model: 0.6s, apply weights to model: 2.1s).
"""

_HANDLED = """2024-03-01 10:12:03,120 - ERROR - API error: POST: http://127.0.0.1:7860/sdapi/v1/txt2img {'error': 'HTTPException', 'detail': 'Sampler not found'}
Traceback (most recent call last):
  File "/app/modules/api/api.py", line 186, in exception_handling
    return await call_next(request)
  File "/app/modules/api/api.py", line 344, in text2imgapi
    raise HTTPException(status_code=404, detail="Sampler not found")
fastapi.exceptions.HTTPException: 404: Sampler not found
"""


def _generation_block(rng: random.Random, index: int) -> str:
    steps = rng.choice((20, 25, 30, 50))
    bar = "".join(f"\r{int(100 * s / steps):3d}%|{'#' * (s * 10 // steps):<10}| {s}/{steps} "
                  f"[00:{s // 2:02d}<00:{(steps - s) // 2:02d}, {rng.uniform(1.5, 9.5):.2f}it/s]"
                  for s in range(steps + 1))
    seconds = index % 60
    lines = [f"2024-03-01 11:{index // 60 % 60:02d}:{seconds:02d},{rng.randint(0, 999):03d} - INFO - "
             f"txt2img: prompt='a photo of an astronaut riding a horse, {rng.randint(0, 10**6)}' "
             f"seed={rng.randint(0, 2**32)} steps={steps} cfg=7.5 size=512x512",
             bar,
             f"Total progress: 100%|##########| {steps}/{steps} [00:{steps // 2:02d}<00:00, 2.11it/s]"]
    if index % 97 == 0:
        lines.append("/app/modules/sd_samplers_common.py:68: UserWarning: The default value of the antialias "
                     "parameter of all the resizing transforms will change from None to True in v0.17")
    return "\n".join(lines) + "\n"


def write_log(path: Path, megabytes: float, seed: int = 0) -> Dict[str, int]:
    rng = random.Random(seed)
    target = int(megabytes * 1024 * 1024)
    tail = SEED.read_text()
    blocks = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(_STARTUP)
        written = len(_STARTUP)
        while written < target - len(tail):
            block = _generation_block(rng, blocks)
            if blocks == 5000:
                block += _HANDLED
            out.write(block)
            written += len(block.encode())
            blocks += 1
        out.write(tail)
    return {"bytes": path.stat().st_size, "generation_records": blocks}


_CHILD = {
    "read": "data = open(LOG, 'rb').read(); text = data.decode('utf-8', errors='replace')",
    "explain": ("from diagnostics.context import Context\n"
                "from diagnostics.knowledge.explain import explain_text, read_log\n"
                "e = explain_text(read_log(LOG), Context(environ={}), confirm_causes=False)\n"
                "assert e.matches and e.matches[0].signature.id == 'K01', [m.signature.id for m in e.matches]"),
    "explain-seed-only": ("from diagnostics.context import Context\n"
                          "from diagnostics.knowledge.explain import explain_text, read_log\n"
                          f"explain_text(read_log({str(SEED)!r}), Context(environ={{}}), confirm_causes=False)"),
    "parse-whole": ("from diagnostics.knowledge.explain import read_log\n"
              "from diagnostics.knowledge.traceback import parse_log\n"
              "text = read_log(LOG)\nparse_log(text)"),
}


def time_child(kind: str, log: Path) -> float:
    code = (f"import sys, time\nsys.path.insert(0, {str(ROOT)!r})\nLOG = {str(log)!r}\n"
            "start = time.perf_counter()\n" + _CHILD[kind] + "\nprint(time.perf_counter() - start)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{done.stderr[-3000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--mb", type=float, default=50.0)
    parser.add_argument("--out", help="folder for the log (default: a temporary one)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args(argv)
    folder = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-explain-"))
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"webui_{int(args.mb)}mb.log"
    facts = write_log(log, args.mb)
    best = {kind: min(time_child(kind, log) for _ in range(max(1, args.repeat))) for kind in _CHILD}
    ratio = best["explain"] / max(best["read"], 1e-9)
    print(f"log: {log} ({facts['bytes'] / 1e6:.1f} MB, {facts['generation_records']} generation records, "
          "the seed failure at the end)")
    print("| measurement | seconds |")
    print("|---|---|")
    for kind in _CHILD:
        print(f"| {kind} | {best[kind]:.3f} |")
    print(f"| explain / read | {ratio:.1f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(facts, seconds=best, ratio=ratio), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
