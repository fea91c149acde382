"""Fuzzing the checkpoint readers at scale (issue 8): how many examples ran, and the worst single case.

Runs the strategies and properties of `tests/test_checkpoint_fuzz.py` (mutated real checkpoints: zip,
safetensors, data.pkl inside a zip, legacy torch) with more examples than the test suite does, and
prints per property the examples run, the longest single case (with what the mutation was), the
peak Python heap traced during one inspection against the tests' bound, and the total time.

    python benchmarks/bench_fuzz.py [--examples 5000] [--only zip,pickle] [--json OUT]

A failing property stops the run with Hypothesis' minimal failing case, as in the tests. Needs torch
and the `ldm` stack (the seed files are built with the real classes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=5000, help="examples per property (default 5000)")
    parser.add_argument("--only", default="", help="comma-separated properties: zip, safetensors, pickle, legacy")
    parser.add_argument("--json", dest="json_out", help="also write the figures to this file")
    args = parser.parse_args(argv)

    from hypothesis import given, settings

    from tests import test_checkpoint_fuzz as fuzz

    wanted = [p for p in (args.only.split(",") if args.only else fuzz.PROPERTIES) if p]
    fuzz.seeds()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        fuzz.check_file(None, "warm-up", fuzz.seeds()["safetensors"], ".safetensors", None, work)
        for name in wanted:
            strategy, prop = fuzz.PROPERTIES[name]

            @settings(fuzz.FUZZ, max_examples=args.examples, database=None)
            @given(case=strategy())
            def run(case):
                prop(case, work)

            start = time.perf_counter()
            run()
            total = time.perf_counter() - start
            stats = fuzz.STATS[name]
            rows.append({"property": name, "examples": stats["examples"],
                         "longest_ms": round(stats["longest_seconds"] * 1000, 1), "longest_case": stats["longest_case"],
                         "peak_heap_mib": round(stats["peak_bytes"] / 2**20, 1),
                         "bound_mib": fuzz.MEMORY_BOUND // 2**20, "total_s": round(total, 1)})
    head = f"{'property':<12} {'examples':>8} {'longest ms':>10} {'peak MiB':>8} {'bound':>5} {'total s':>7}"
    print(head + "  longest case")
    for r in rows:
        print(f"{r['property']:<12} {r['examples']:>8} {r['longest_ms']:>10} {r['peak_heap_mib']:>8} "
              f"{r['bound_mib']:>5} {r['total_s']:>7}  {r['longest_case']}")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
