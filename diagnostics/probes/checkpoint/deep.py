"""`--deep`: stream every tensor's bytes once, in file order, with bounded memory.

Two questions need the data itself: are there NaN/Inf weights (the "A tensor with all NaNs was
produced" class of failures), and is the EMA any different from the live UNet (an EMA copied from the
model at step 0 is no EMA at all). Tensors are read in file order through a fixed 2 MiB buffer
(unbuffered `readinto`, no mmap: resident memory stays at a few buffers whatever the file size, and the
buffer stays in the CPU cache); each UNet tensor is read side by side with its EMA twin through a second
handle, so both regions are still read sequentially.

- NaN/Inf: float32/float64 through `numpy.isfinite`; float16, bfloat16 and float8 from the bits (a value
  is non-finite when its exponent bits are all ones), which needs no conversion.
- EMA vs model: "identical" is decided exactly, on all the bytes; the difference statistics (max and
  mean |ema - model|, relative L2) are estimated from a sample (every `SAMPLE`-th element of every
  `STATS_EVERY`-th chunk), which keeps the pass I/O-bound.

numpy is imported here, lazily; without it the scan reports that it did not run.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from .layout import UNET, component_of, ema_twin
from .records import TensorRecord, itemsize

CHUNK = 2 * 1024 * 1024
SAMPLE = 8  # difference statistics use every 8th element ...
STATS_EVERY = 4  # ... of every 4th chunk of a tensor (always its first)
# dtype -> (unsigned view, mask of the bits without the sign, exponent-all-ones threshold, NaN-only)
_NONFINITE = {
    "float64": ("<u8", 0x7FFFFFFFFFFFFFFF, 0x7FF0000000000000, False),
    "float32": ("<u4", 0x7FFFFFFF, 0x7F800000, False),
    "float16": ("<u2", 0x7FFF, 0x7C00, False),
    "bfloat16": ("<u2", 0x7FFF, 0x7F80, False),
    "float8_e5m2": ("u1", 0x7F, 0x7C, False),
    "float8_e4m3fn": ("u1", 0x7F, 0x7F, True),  # no infinities; 0x7F/0xFF are NaN
}
_FLOAT_VIEWS = {"float64": "<f8", "float32": "<f4", "float16": "<f2"}
_INTEGER = ("int64", "int32", "int16", "int8", "uint8", "bool", "uint16", "uint32", "uint64")


def _open(path: str):
    fh = open(path, "rb", buffering=0)
    if hasattr(os, "posix_fadvise"):
        try:
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        except OSError:
            pass
    return fh


def plan(tensors: List[TensorRecord]) -> Tuple[List[Tuple[TensorRecord, Optional[TensorRecord]]], List[str]]:
    """(jobs in file order, tensors that cannot be located); a job pairs a UNet tensor with its EMA twin."""
    by_name = {t.name: t for t in tensors}
    jobs: List[Tuple[TensorRecord, Optional[TensorRecord]]] = []
    paired = set()
    unlocated: List[str] = []
    for t in tensors:
        if t.offset is None:
            unlocated.append(t.name)
            continue
        if t.name.startswith(UNET):
            twin = by_name.get(ema_twin(t.name))
            if twin is not None and twin.offset is not None and twin.shape == t.shape and twin.dtype == t.dtype:
                jobs.append((t, twin))
                paired.add(twin.name)
                continue
        jobs.append((t, None))
    jobs = [(a, b) for a, b in jobs if a.name not in paired]
    jobs.sort(key=lambda job: job[0].offset)
    return jobs, unlocated


def _within_file(path: str, jobs, skipped: List[str]):
    """Jobs whose bytes lie inside the file; the others (a cut file, a header that claims too much) are skipped."""
    try:
        size = os.path.getsize(path)
    except OSError:
        return jobs
    kept = []
    for a, b in jobs:
        if a.offset < 0 or a.offset + a.nbytes > size:
            skipped.append(a.name)
            if b is not None:
                skipped.append(b.name)
            continue
        if b is not None and (b.offset < 0 or b.offset + b.nbytes > size):
            skipped.append(b.name)
            b = None
        kept.append((a, b))
    return kept


def deep_scan(path: str, tensors: List[TensorRecord], progress: Optional[Callable[[int, int, str], None]] = None,
              chunk: int = CHUNK) -> Dict[str, Any]:
    try:
        import numpy as np
    except ImportError:
        return {"ran": False, "reason": "numpy is not installed; --deep needs it to scan tensor data"}
    start = time.perf_counter()
    jobs, skipped = plan(tensors)
    jobs = _within_file(path, jobs, skipped)
    total = sum(a.nbytes + (b.nbytes if b is not None else 0) for a, b in jobs)
    scan = _Scan(np, max(chunk - chunk % 8, 8), skipped, total, progress)
    with _open(path) as fa, _open(path) as fb:
        for a, b in jobs:
            scan.job(fa, fb, a, b)
    seconds = time.perf_counter() - start
    done = scan.done
    return {
        "ran": True,
        "seconds": round(seconds, 3),
        "bytes_read": done,
        "read_rate_mb_s": round(done / seconds / 1e6, 1) if seconds > 0 else None,
        "tensors_scanned": scan.scanned,
        "skipped": skipped[:50],
        "skipped_count": len(skipped),
        "nonfinite": scan.nonfinite[:200],
        "nonfinite_count": len(scan.nonfinite),
        "ema": scan.ema_summary(),
        "buffer_bytes": scan.chunk,
    }


class _Scan:
    """One pass over a file's tensors: the read buffers, the NaN/Inf found, the EMA-vs-model statistics."""

    def __init__(self, np, chunk: int, skipped: List[str], total: int,
                 progress: Optional[Callable[[int, int, str], None]]) -> None:
        self.np, self.chunk, self.skipped, self.total, self.progress = np, chunk, skipped, total, progress
        self.buf_a, self.buf_b = bytearray(chunk), bytearray(chunk)
        self.view_a, self.view_b = memoryview(self.buf_a), memoryview(self.buf_b)
        self.scratch = np.empty(chunk // 8 + 1, dtype=np.uint64)  # bit tests, sized for the widest view
        self.nonfinite: List[Dict[str, Any]] = []
        self.stats = {"pairs": 0, "identical_pairs": 0, "max_abs_diff": 0.0, "sum_abs_diff": 0.0, "elements": 0,
                      "sum_sq_diff": 0.0, "sum_sq_model": 0.0}
        self.per_pair: List[Tuple[float, str]] = []
        self.done = 0
        self.scanned = 0

    def job(self, fa, fb, a: TensorRecord, b: Optional[TensorRecord]) -> None:
        """Scan tensor `a` (through `fa`) and, side by side, its EMA twin `b` (through `fb`)."""
        if a.dtype not in _NONFINITE:
            # Integer tensors cannot hold NaN/Inf; exotic float formats are listed as not scanned.
            if a.dtype not in _INTEGER:
                self.skipped.append(a.name)
            self.done += a.nbytes * (2 if b is not None else 1)
            return
        counts = {a.name: [0, 0]}
        if b is not None:
            counts[b.name] = [0, 0]
        pair = [0.0, 0.0, 0.0, 0.0, 0]  # sum |d|, max |d|, sum d^2, sum model^2, sampled elements
        b, identical = self._read_chunks(fa, fb, a, b, counts, pair)
        self.scanned += 1 + (1 if b is not None else 0)
        for name, (nan, inf) in counts.items():
            if nan or inf:
                self.nonfinite.append({"name": name, "nan": nan, "inf": inf, "component": component_of(name)[0]})
        if b is not None:
            self._add_pair(a, identical, pair)

    def _read_chunks(self, fa, fb, a: TensorRecord, b: Optional[TensorRecord], counts: Dict[str, List[int]],
                     pair: List[Any]) -> Tuple[Optional[TensorRecord], bool]:
        """Read `a` (and `b`) chunk by chunk; returns (`b`, None when it could not be read; whether they are equal)."""
        np, chunk, buf_a, buf_b, view_a, view_b = self.np, self.chunk, self.buf_a, self.buf_b, self.view_a, self.view_b
        nbytes = a.nbytes
        size = itemsize(a.dtype)
        step = max(chunk - chunk % size, size)
        identical = b is not None
        fa.seek(a.offset)
        if b is not None:
            fb.seek(b.offset)
        pos = 0
        index = 0
        while pos < nbytes:
            n = min(step, nbytes - pos)
            if _read_exact(fa, view_a, n) != n:
                self.skipped.append(a.name)
                break
            _count_nonfinite(np, buf_a, n, a.dtype, self.scratch, counts[a.name])
            if b is not None:
                if _read_exact(fb, view_b, n) != n:
                    self.skipped.append(b.name)
                    b, identical = None, False
                else:
                    _count_nonfinite(np, buf_b, n, a.dtype, self.scratch, counts[b.name])
                    same = (buf_a == buf_b) if n == chunk else (view_a[:n].tobytes() == view_b[:n].tobytes())
                    identical = identical and same
                    if index % STATS_EVERY == 0:
                        _diff_stats(np, buf_a, buf_b, n, a.dtype, pair)
            index += 1
            pos += n
            self.done += n * (2 if b is not None else 1)
            if self.progress is not None:
                self.progress(self.done, self.total, "deep")
        return b, identical

    def _add_pair(self, a: TensorRecord, identical: bool, pair: List[Any]) -> None:
        stats = self.stats
        stats["pairs"] += 1
        stats["identical_pairs"] += 1 if identical else 0
        stats["sum_abs_diff"] += pair[0]
        stats["max_abs_diff"] = max(stats["max_abs_diff"], pair[1])
        stats["sum_sq_diff"] += pair[2]
        stats["sum_sq_model"] += pair[3]
        stats["elements"] += pair[4]
        self.per_pair.append((pair[1], a.name))

    def ema_summary(self) -> Optional[Dict[str, Any]]:
        """How the EMA differs from the live UNet; None when no tensor had a twin."""
        stats = self.stats
        if not stats["pairs"]:
            return None
        self.per_pair.sort(reverse=True)
        return {
            "pairs": stats["pairs"],
            "identical_pairs": stats["identical_pairs"],
            "identical_to_model": stats["identical_pairs"] == stats["pairs"],
            "max_abs_diff": stats["max_abs_diff"],
            "mean_abs_diff": stats["sum_abs_diff"] / stats["elements"] if stats["elements"] else 0.0,
            "relative_l2": (stats["sum_sq_diff"] ** 0.5) / (stats["sum_sq_model"] ** 0.5)
            if stats["sum_sq_model"] else (0.0 if stats["identical_pairs"] == stats["pairs"] else None),
            "sampled": f"every {SAMPLE}th element of every {STATS_EVERY}th {self.chunk // 1024} KiB chunk",
            "most_different": [{"key": k, "max_abs_diff": v} for v, k in self.per_pair[:5]],
        }


def _read_exact(fh, view, n: int) -> int:
    got = 0
    while got < n:
        k = fh.readinto(view[got:n])
        if not k:
            break
        got += k
    return got


def _count_nonfinite(np, buf, n, dtype, scratch, counts) -> None:
    if dtype in ("float32", "float64"):
        x = np.frombuffer(buf, dtype=_FLOAT_VIEWS[dtype], count=n // itemsize(dtype))
        if not x.size:
            return
        # Fast path, no temporary array: max() propagates NaN, and an Inf is the max or the min.
        high, low = x.max(), x.min()
        if high == high and abs(high) != np.inf and abs(low) != np.inf:
            return
        counts[0] += int(np.count_nonzero(np.isnan(x)))
        counts[1] += int(np.count_nonzero(np.isinf(x)))
        return
    view, mask, threshold, nan_only = _NONFINITE[dtype]
    u = np.frombuffer(buf, dtype=view, count=n // np.dtype(view).itemsize)
    bits = scratch.view(u.dtype)[: u.size]
    np.bitwise_and(u, u.dtype.type(mask), out=bits)
    if not bits.size or bits.max() < threshold:
        return
    if nan_only:
        counts[0] += int(np.count_nonzero(bits == threshold))
        return
    counts[0] += int(np.count_nonzero(bits > threshold))
    counts[1] += int(np.count_nonzero(bits == threshold))


def _as_float32(np, buf, n, dtype):
    """Every SAMPLE-th element as float32 (a small copy), or None for dtypes without a float view."""
    if dtype in _FLOAT_VIEWS:
        return np.frombuffer(buf, dtype=_FLOAT_VIEWS[dtype], count=n // itemsize(dtype))[::SAMPLE].astype(np.float32)
    if dtype == "bfloat16":
        u = np.frombuffer(buf, dtype="<u2", count=n // 2)[::SAMPLE].astype(np.uint32)
        return np.left_shift(u, 16).view(np.float32)
    return None


def _diff_stats(np, buf_a, buf_b, n, dtype, pair) -> None:
    xa = _as_float32(np, buf_a, n, dtype)
    xb = _as_float32(np, buf_b, n, dtype)
    if xa is None or xb is None or not xa.size:
        return
    with np.errstate(all="ignore"):
        d = np.abs(xb - xa)
        finite = np.isfinite(d) & np.isfinite(xa)
        if not finite.all():
            d, xa = d[finite], xa[finite]
        if not d.size:
            return
        pair[0] += float(d.sum(dtype=np.float64))
        pair[1] = max(pair[1], float(d.max()))
        pair[2] += float(np.dot(d, d))
        pair[3] += float(np.dot(xa, xa))
        pair[4] += int(d.size)
