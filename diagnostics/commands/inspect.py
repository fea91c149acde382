"""`python -m diagnostics inspect CKPT [--deep] [--hash] [--json]`: what is in a checkpoint, never running it.

A thin command: the probe (`probes/checkpoint`) gathers the facts, the `ckpt.*` checks judge them, and
this module prints them, as text for people or as JSON (`schema`, the facts, `findings`) for scripts.
Exit codes as everywhere: 0 nothing blocking, 1 a blocking finding, 2 the path does not exist.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Dict, List

from ..cli import EXIT_BLOCKING, EXIT_OK


def add_arguments(parser) -> None:
    parser.add_argument("checkpoint", metavar="CKPT", help=".ckpt / .safetensors / .pt file or diffusers folder")
    parser.add_argument("--deep", action="store_true",
                        help="also read all tensor data: NaN/Inf scan and EMA-vs-model statistics")
    parser.add_argument("--hash", action="store_true",
                        help="sha256, AutoV2 and legacy A1111 hashes (cached by path, size, mtime and inode)")
    parser.add_argument("--json", action="store_true", help="print the facts and findings as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


class ProgressBar:
    """A one-line progress bar on a terminal, redrawn at most ten times a second."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.last = 0.0
        self.start = time.perf_counter()
        self.label = ""

    def __call__(self, done: int, total: int, label: str) -> None:
        now = time.perf_counter()
        if label != self.label:
            self.label, self.start = label, now
        if now - self.last < 0.1 and done < total:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-6)
        pct = 100.0 * done / total if total else 100.0
        bar = "#" * int(pct / 5)
        self.stream.write(f"\r{label:6} [{bar:<20}] {pct:5.1f}% {done / 2**30:6.2f}/{total / 2**30:.2f} GiB "
                          f"{rate / 2**20:7.0f} MiB/s")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def run(args) -> int:
    from ..context import Context, Options
    from ..findings import SCHEMA
    from ..registry import run_check
    from ..rules.checkpoint import CHECKS  # only this area: no other rules module needs to import

    from .common import validate_checkpoint_argument

    path = args.checkpoint
    validate_checkpoint_argument(path)  # a missing path, a YAML or text file: exit 2 before any check
    environ = dict(os.environ)
    ctx = Context(Options(checkpoint=path, deep=args.deep, hash=args.hash), environ=environ)
    if not args.no_progress and not args.json and (args.deep or args.hash) and sys.stderr.isatty():
        ctx.progress = ProgressBar(sys.stderr)
    results = [run_check(check, ctx) for check in CHECKS]
    findings = [f for r in results for f in r.findings]
    facts = ctx.facts.get("checkpoint") or {}
    blocking = any(f.blocking for f in findings)
    if args.json:
        payload: Dict[str, Any] = {"schema": SCHEMA}
        payload.update(facts)
        payload["findings"] = [f.to_dict() for f in findings]
        payload["blocking"] = blocking
        print(json.dumps(payload, indent=2, default=str))
    else:
        print(render_text(facts, findings))
    return EXIT_BLOCKING if blocking else EXIT_OK


_MARKS = {"ok": "[ok]  ", "info": "[i]   ", "warn": "[!]   ", "fail": "[FAIL]", "skip": "[-]   ", "error": "[ERR] "}


def render_text(facts: Dict[str, Any], findings: List) -> str:
    from ..util import fmt_bytes

    lines = [f"Checkpoint: {facts.get('path')}"]
    if facts.get("analysed"):
        lines.append(f"  format      {facts.get('format')}, {fmt_bytes(facts.get('size_bytes'))}")
        lines.append(f"  model       {facts.get('family')} {facts.get('variant')} "
                     f"(UNet input {facts.get('unet_in_channels')} channels)")
        comps = facts.get("components") or {}
        for name in ("unet", "vae", "text_encoder", "ema"):
            c = comps.get(name) or {}
            if not c.get("present"):
                lines.append(f"  {name:<13}absent")
                continue
            dtypes = ", ".join(f"{d} {fmt_bytes(b)}" for d, b in sorted((c.get("bytes_by_dtype") or {}).items()))
            kind = f" {c.get('kind')}" if name == "text_encoder" and c.get("kind") else ""
            lines.append(f"  {name:<13}{c['tensors']} tensors, {c['parameters']:,} params ({dtypes}){kind}")
        training = facts.get("training") or {}
        if training.get("global_step") is not None or training.get("lightning_version"):
            lines.append(f"  training    global_step {training.get('global_step')}, epoch {training.get('epoch')}, "
                         f"pytorch-lightning {training.get('lightning_version')}")
        lines.append(f"  safe        {facts.get('safe')}"
                     + (f" (unsafe globals: {', '.join(facts.get('unsafe_globals') or [])})"
                        if facts.get("unsafe_globals") else ""))
    lines.append("")
    for f in findings:
        lines.append(f"{_MARKS.get(f.status.value, '[?]   ')} {f.code}: {f.summary}")
        if f.status.value in ("info", "warn", "fail", "error") and f.fix:
            lines.append(f"         fix: {f.fix}")
    seconds = (facts.get("seconds") or {}).get("total")
    if seconds is not None:
        lines.append(f"\n(inspected in {seconds:.3f} s; nothing in the file was executed)")
    return "\n".join(lines)
