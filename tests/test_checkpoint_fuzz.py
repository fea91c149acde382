"""Fuzzing the checkpoint readers with mutated real files: no crash, no hang, bounded memory (issue 8).

The seeds are real checkpoints written by `tests/ckpt_factory.py`: a subset of the tiny SD 1.x state
dict of the real `ldm` classes (every component, `position_ids`, the EMA scalars) wrapped the way
Lightning saves it (ModelCheckpoint callback, numpy scalars), saved as a torch zip, a legacy torch file
and a safetensors file of 13 to 20 KB. Hypothesis mutates them where the formats are fragile:

- zip: truncation at every section boundary (each local header, each member's data, each central
  directory entry, the end record), length fields set to extremes (sizes, name and extra lengths,
  offsets, entry counts), duplicated members (identical or altered copies), bit flips;
- safetensors: the 8-byte header length set to 0, 2^31-1, 2^63-1, 2^64-1 or off by one, truncation
  inside the length, the header and at every tensor boundary, numbers in the JSON header set to
  extremes, bit flips;
- pickle: data.pkl cut at every opcode boundary, opcodes replaced, length and memo operands set to
  extremes, streams appended; the legacy format cut at every pickle and storage boundary, its
  storage element counts set to extremes.

Properties, for every example: neither the reader nor `inspect_checkpoint(..., deep=True)` raises;
the facts are JSON and every checkpoint rule turns them into a finding; the outcome is either
problems (each with its finding code) or an analysed facts dict; where no file with the change can be
intact (an absurd safetensors length, a data.pkl that does not replay to its STOP) a problem is
reported and the file is never called safe; the Python heap allocated during one inspection stays
under `MEMORY_BOUND` (tracemalloc peak); the pickle replay is bounded by its opcode limit, and a
generous Hypothesis deadline guards against a hang (no wall-clock asserts).

`LDM_DIAG_FUZZ_EXAMPLES` raises the examples per property (default 250); with
`LDM_DIAG_FUZZ_SUMMARY=FILE` the module writes how many examples ran and the longest single case per
property as JSON. `benchmarks/bench_fuzz.py` runs the same strategies with more examples.
"""

from __future__ import annotations

import io
import json
import os
import pickletools
import re
import struct
import tempfile
import time
import tracemalloc
import warnings
import zipfile
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diagnostics.probes.checkpoint import inspect_checkpoint
from diagnostics.probes.checkpoint.pickle_vm import read_pickle
from diagnostics.probes.checkpoint.safetensors_fmt import read_safetensors
from diagnostics.probes.checkpoint.torchfile import read_torch_pickle_file, read_torch_zip
from diagnostics.rules.checkpoint import all_rules
from tests import ckpt_factory as f

EXAMPLES = int(os.environ.get("LDM_DIAG_FUZZ_EXAMPLES", "250"))
MEMORY_BOUND = 64 * 1024 * 1024  # the seeds are < 20 KB; the deep scan's buffers take ~6 MB of this
PICKLE_OP_LIMIT = 100_000  # a replay of a mutated 3 KB data.pkl stops here at the latest
VERSIONS = {"torch": "2.6.0", "transformers": "4.30.2"}
EXTREMES_8 = (0, 2**31 - 1, 2**63 - 1, 2**64 - 1)
EXTREMES_4 = (0, 1, 2**31 - 1, 2**32 - 1)
EXTREMES_2 = (0, 1, 2**15 - 1, 2**16 - 1)
FUZZ = settings(max_examples=EXAMPLES, deadline=timedelta(seconds=20),  # a hang guard, not a timing assert
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class Case:
    """A mutated file: its bytes, and a label that says what was done (what Hypothesis prints)."""

    def __init__(self, label: str, data: bytes, broken: bool = False) -> None:
        self.label, self.data = label, data
        self.broken = broken  # no file with this change can be intact: a problem must be reported

    def __repr__(self) -> str:
        return f"Case({self.label!r}, {len(self.data)} bytes)"


# property -> {"examples", "longest_seconds", "longest_case", "peak_bytes"}
STATS: Dict[str, Dict[str, Any]] = {}


# ---------------------------------------------------------------- seeds: real files, tiny

@lru_cache(maxsize=None)
def seeds() -> Dict[str, bytes]:
    """The seed files' bytes: {"zip", "legacy", "safetensors"}."""
    sd = f.ldm_state_dict()
    keep: Dict[str, Any] = {}
    for prefix in ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.", "model_ema."):
        names = sorted((k for k in sd if k.startswith(prefix)), key=lambda k: (sd[k].numel(), k))[:8]
        keep.update({k: sd[k] for k in names})
    for key in (f.SD1_CLIP_PREFIX + "embeddings.position_ids", "model.diffusion_model.input_blocks.0.0.weight",
                "model_ema.num_updates", "model_ema.decay", "betas"):
        keep[key] = sd[key]
    keep = {k: v.half() if v.is_floating_point() and k != "model_ema.decay" else v for k, v in keep.items()}
    with tempfile.TemporaryDirectory() as d:
        ckpt = f.lightning_checkpoint(keep)
        out = {"zip": f.save_zip(ckpt, Path(d) / "a.ckpt").read_bytes(),
               "legacy": f.save_legacy(ckpt, Path(d) / "b.ckpt").read_bytes(),
               "safetensors": f.save_safetensors(keep, Path(d) / "c.safetensors").read_bytes()}
    return out


@lru_cache(maxsize=None)
def seed_members() -> Tuple[Tuple[str, bytes], ...]:
    """(name, bytes) of the seed zip's members, in file order."""
    with zipfile.ZipFile(io.BytesIO(seeds()["zip"])) as z:
        return tuple((info.filename, z.read(info.filename)) for info in z.infolist())


@lru_cache(maxsize=None)
def seed_layout(kind: str) -> Tuple[List[int], List[Tuple[int, int]]]:
    """The layout of a seed ("zip", "safetensors" or "data.pkl"): the seeds never change, so once per run."""
    if kind == "zip":
        return zip_layout(seeds()["zip"])
    if kind == "safetensors":
        return safetensors_layout(seeds()["safetensors"])
    return opcode_layout(seed_data_pkl())


@lru_cache(maxsize=None)
def seed_data_pkl() -> bytes:
    return _data_pkl(seeds()["zip"])


# ---------------------------------------------------------------- where the formats are fragile

def zip_layout(data: bytes) -> Tuple[List[int], List[Tuple[int, int]]]:
    """(section boundaries, (position, width) of length and offset fields) of a zip."""
    zf = zipfile.ZipFile(io.BytesIO(data))
    bounds, fields = {0, len(data)}, []
    for info in zf.infolist():
        at = info.header_offset
        n, m = struct.unpack_from("<HH", data, at + 26)
        start = at + 30 + n + m
        bounds |= {at, at + 30, at + 30 + n, start, start + info.compress_size}
        fields += [(at + 18, 4), (at + 22, 4), (at + 26, 2), (at + 28, 2)]
    pos = zf.start_dir
    bounds.add(pos)
    while data[pos:pos + 4] == b"PK\x01\x02":
        n, m, k = struct.unpack_from("<HHH", data, pos + 28)
        fields += [(pos + 20, 4), (pos + 24, 4), (pos + 28, 2), (pos + 30, 2), (pos + 32, 2), (pos + 42, 4)]
        pos += 46 + n + m + k
        bounds.add(pos)
    end = data.rfind(b"PK\x05\x06")
    bounds |= {end, end + 22}
    fields += [(end + 8, 2), (end + 10, 2), (end + 12, 4), (end + 16, 4), (end + 20, 2)]
    return sorted(bounds), fields


def opcode_layout(data: bytes, start: int = 0) -> Tuple[List[int], List[Tuple[int, int]]]:
    """(opcode boundaries, (position, width) of length / memo / integer operands) of one pickle."""
    widths = {"BINUNICODE": 4, "BINSTRING": 4, "BINBYTES": 4, "SHORT_BINUNICODE": 1, "SHORT_BINSTRING": 1,
              "SHORT_BINBYTES": 1, "BINUNICODE8": 8, "BINBYTES8": 8, "FRAME": 8, "BINPUT": 1, "BINGET": 1,
              "LONG_BINPUT": 4, "LONG_BINGET": 4, "BININT": 4, "BININT1": 1, "BININT2": 2, "LONG1": 1, "LONG4": 4}
    bounds, fields = [], []
    for op, _, pos in pickletools.genops(io.BytesIO(data[start:])):
        bounds.append(start + pos)
        if op.name in widths:
            fields.append((start + pos + 1, widths[op.name]))
        if op.name == "STOP":
            bounds.append(start + pos + 1)
            break
    return bounds, fields


def pickle_ends(data: bytes, count: int) -> List[int]:
    ends, pos = [], 0
    for _ in range(count):
        pos = opcode_layout(data, pos)[0][-1]
        ends.append(pos)
    return ends


def safetensors_layout(data: bytes) -> Tuple[List[int], List[Tuple[int, int]]]:
    n = struct.unpack_from("<Q", data)[0]
    header = json.loads(data[8:8 + n])
    bounds = {0, 4, 7, 8, 9, 8 + n // 2, 8 + n - 1, 8 + n, len(data) - 1, len(data)}
    for key, entry in header.items():
        if key != "__metadata__":
            bounds |= {8 + n + entry["data_offsets"][0], 8 + n + entry["data_offsets"][1]}
    return sorted(bounds), [(0, 8)]


def _put(data: bytearray, pos: int, width: int, value: int) -> None:
    fmt = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}[width]
    struct.pack_into(fmt, data, pos, value % (1 << (8 * width)))


@st.composite
def bit_flips(draw, size: int) -> List[Tuple[int, int]]:
    return draw(st.lists(st.tuples(st.integers(0, size - 1), st.integers(0, 7)), min_size=1, max_size=6))


def flip(data: bytearray, flips: List[Tuple[int, int]]) -> None:
    for pos, bit in flips:
        data[pos] ^= 1 << bit


@st.composite
def zip_cases(draw) -> Case:
    base = seeds()["zip"]
    bounds, fields = seed_layout("zip")
    data = bytearray(base)
    how = draw(st.sampled_from(["truncate", "extreme", "duplicate", "flip", "extreme+truncate"]))
    if how == "duplicate":
        return duplicate_member(draw)
    label = how
    if "extreme" in how:
        pos, width = draw(st.sampled_from(fields))
        value = draw(st.sampled_from({2: EXTREMES_2, 4: EXTREMES_4}[width]))
        _put(data, pos, width, value)
        label += f" field@{pos}:{width}={value}"
    if how == "flip":
        flips = draw(bit_flips(len(data)))
        flip(data, flips)
        label += f" {flips}"
    if "truncate" in how:
        cut = max(0, min(len(data), draw(st.sampled_from(bounds)) + draw(st.integers(-2, 2))))
        data = data[:cut]
        label += f" at {cut}"
    return Case(label, bytes(data))


def duplicate_member(draw) -> Case:
    """A copy of the seed zip with one member written twice: the copy identical, or altered, or renamed in case."""
    members = seed_members()
    which = draw(st.integers(0, len(members) - 1))
    variant = draw(st.sampled_from(["same", "altered", "upper-case", "first"]))
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name: that is the point
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zout:
            for i, (filename, body) in enumerate(members):
                if variant == "first" and i == which:
                    zout.writestr(filename, body)
                zout.writestr(filename, body)
                if i == which and variant != "first":
                    copy = bytearray(body)
                    if variant == "altered" and copy:
                        flip(copy, draw(bit_flips(len(copy))))
                    name = filename.upper() if variant == "upper-case" else filename
                    zout.writestr(name, bytes(copy))
    return Case(f"duplicate {members[which][0]} ({variant})", out.getvalue())


@st.composite
def safetensors_cases(draw) -> Case:
    base = seeds()["safetensors"]
    n = struct.unpack_from("<Q", base)[0]
    bounds, _ = seed_layout("safetensors")
    data = bytearray(base)
    how = draw(st.sampled_from(["length", "truncate", "json-number", "flip", "length+truncate"]))
    label = how
    broken = False
    if "length" in how:
        # n - 1 can still be a valid file (the header loses a padding space, the data starts a byte early)
        value = draw(st.sampled_from(EXTREMES_8 + (n - 1, n + 1, len(base))))
        _put(data, 0, 8, value)
        label += f" N={value}"
        broken = value in EXTREMES_8
    if how == "json-number":
        header = bytes(data[8:8 + n]).decode()
        numbers = [m.span() for m in re.finditer(r"\d+", header)]
        a, b = draw(st.sampled_from(numbers))
        value = draw(st.sampled_from(("0", "-1", str(2**31 - 1), str(2**63 - 1), str(2**64 - 1), "1e400", "9" * 400)))
        new = (header[:a] + value + header[b:]).encode()
        data = bytearray(struct.pack("<Q", len(new)) + new + bytes(data[8 + n:]))
        label += f" {header[a:b]}->{value[:24]}"
    if how == "flip":
        flips = draw(bit_flips(len(data)))
        flip(data, flips)
        label += f" {flips}"
    if "truncate" in how:
        cut = max(0, min(len(data), draw(st.sampled_from(bounds)) + draw(st.integers(-1, 1))))
        data = data[:cut]
        label += f" at {cut}"
    return Case(label, bytes(data), broken)


@st.composite
def data_pkl_cases(draw) -> Case:
    """A mutated data.pkl of the seed zip."""
    base = seed_data_pkl()
    bounds, fields = seed_layout("data.pkl")
    data = bytearray(base)
    how = draw(st.sampled_from(["truncate", "operand", "opcode", "append", "flip"]))
    label = how
    if how == "truncate":
        cut = draw(st.sampled_from(bounds))
        data = data[:cut]
        label += f" at {cut}"
    elif how == "operand":
        pos, width = draw(st.sampled_from(fields))
        extremes = {1: (0, 0x7F, 0xFF), 2: EXTREMES_2, 4: EXTREMES_4, 8: EXTREMES_8}[width]
        value = draw(st.sampled_from(extremes))
        _put(data, pos, width, value)
        label += f" @{pos}:{width}={value}"
    elif how == "opcode":
        pos = draw(st.sampled_from(bounds[:-1]))
        data[pos] = draw(st.integers(0, 255))
        label += f" @{pos}={data[pos]:#04x}"
    elif how == "append":
        tail = draw(st.sampled_from([bytes(base), b"\x80\x02N.", b"\x80\x04\x95" + b"\xff" * 8, b"(" * 64, b"."]))
        data += tail
        label += f" {len(tail)} bytes"
    else:
        flips = draw(bit_flips(len(data)))
        flip(data, flips)
        label += f" {flips}"
    return Case(label, bytes(data))


def _data_pkl(zip_bytes: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as z:
        return z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))


@lru_cache(maxsize=None)
def legacy_layout() -> Tuple[List[int], List[int]]:
    """(pickle and storage boundaries, positions of the 8-byte storage element counts) of the legacy seed."""
    from diagnostics.probes.checkpoint import read_tensor_records

    base = seeds()["legacy"]
    ends = pickle_ends(base, 5)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "seed.pt"
        path.write_bytes(base)
        starts = sorted({t.offset - t.within for t in read_tensor_records(str(path)).records})
    counts = [start - 8 for start in starts]  # each storage: int64 element count, then its bytes
    assert counts[0] == ends[-1], "the first storage follows the fifth pickle"
    return sorted(set(ends + counts + starts + [len(base)])), counts


@st.composite
def legacy_cases(draw) -> Case:
    base = seeds()["legacy"]
    bounds, counts = legacy_layout()
    data = bytearray(base)
    how = draw(st.sampled_from(["truncate", "count", "flip", "count+truncate"]))
    label = how
    if "count" in how:
        pos = draw(st.sampled_from(counts))
        value = draw(st.sampled_from(EXTREMES_8))
        _put(data, pos, 8, value)
        label += f" @{pos}={value}"
    if how == "flip":
        flips = draw(bit_flips(len(data)))
        flip(data, flips)
        label += f" {flips}"
    if "truncate" in how:
        cut = max(0, min(len(data), draw(st.sampled_from(bounds)) + draw(st.integers(-1, 1))))
        data = data[:cut]
        label += f" at {cut}"
    return Case(label, bytes(data))


# ---------------------------------------------------------------- the properties

def _record(name: str, label: str, seconds: float, peak: int) -> None:
    s = STATS.setdefault(name, {"examples": 0, "longest_seconds": 0.0, "longest_case": None, "peak_bytes": 0})
    s["examples"] += 1
    s["peak_bytes"] = max(s["peak_bytes"], peak)
    if seconds > s["longest_seconds"]:
        s["longest_seconds"], s["longest_case"] = seconds, label


def check_file(name: Optional[str], label: str, data: bytes, ext: str, reader: Optional[Callable[[Any, int], Any]],
               workdir: Path) -> Dict[str, Any]:
    """The properties for one mutated file (counted under `name` when given); returns the facts."""
    path = workdir / f"case{ext}"
    if path.exists():
        path.unlink()  # a new file: rewriting one in place waits for its old blocks on some file systems
    path.write_bytes(data)
    start = time.perf_counter()
    tracemalloc.start()
    try:
        if reader is not None:
            reader(io.BytesIO(data), len(data))  # the reader alone, on an in-memory stream
        facts = inspect_checkpoint(str(path), deep=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    seconds = time.perf_counter() - start
    if name is not None:
        _record(name, label, seconds, peak)
    assert peak < MEMORY_BOUND, (label, peak)
    json.dumps(facts.to_dict())
    assert facts["problems"] or facts["analysed"], label  # nothing read: then the reason is a finding
    findings = all_rules(facts, VERSIONS, {})
    assert findings and all(x.summary for x in findings)
    return facts


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    pytest.importorskip("torch")
    f.require_ldm()
    seeds()
    with tempfile.TemporaryDirectory() as d:  # warm imports (numpy for the deep scan) outside the memory bound
        path = Path(d) / "warm.safetensors"
        path.write_bytes(seeds()["safetensors"])
        inspect_checkpoint(str(path), deep=True)
    yield tmp_path_factory.mktemp("fuzz")
    summary = os.environ.get("LDM_DIAG_FUZZ_SUMMARY")
    if summary:
        Path(summary).write_text(json.dumps(STATS, indent=2) + "\n")


def zip_property(case: Case, workdir: Path) -> None:
    check_file("zip", case.label, case.data, ".ckpt", read_torch_zip, workdir)


def safetensors_property(case: Case, workdir: Path) -> None:
    facts = check_file("safetensors", case.label, case.data, ".safetensors", read_safetensors, workdir)
    if case.broken and facts["format"] == "safetensors":
        assert any(p["code"] == "ckpt.corrupt" for p in facts["problems"]), case.label  # an absurd length never passes


def pickle_property(case: Case, workdir: Path) -> None:
    res = read_pickle(case.data, max_ops=PICKLE_OP_LIMIT)  # never raises; bounded by the op limit
    assert res.opcodes <= PICKLE_OP_LIMIT + 1
    assert res.complete or res.error, case.label
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zout:
        for filename, body in seed_members():
            zout.writestr(filename, case.data if filename.endswith("/data.pkl") else body)
    facts = check_file("pickle", case.label, out.getvalue(), ".ckpt", None, workdir)
    if not res.complete:
        assert facts["safe"] is not True, case.label  # an unreadable data.pkl is never called safe


def legacy_property(case: Case, workdir: Path) -> None:
    check_file("legacy", case.label, case.data, ".pt", read_torch_pickle_file, workdir)


# name -> (strategy, property): what benchmarks/bench_fuzz.py runs with more examples
PROPERTIES = {"zip": (zip_cases, zip_property), "safetensors": (safetensors_cases, safetensors_property),
              "pickle": (data_pkl_cases, pickle_property), "legacy": (legacy_cases, legacy_property)}


@FUZZ
@given(case=zip_cases())
def test_zip_reader_survives_mutated_real_files(workdir, case):
    zip_property(case, workdir)


@FUZZ
@given(case=safetensors_cases())
def test_safetensors_header_parser_survives_mutated_real_files(workdir, case):
    safetensors_property(case, workdir)


@FUZZ
@given(case=data_pkl_cases())
def test_pickle_reader_survives_mutated_data_pkl(workdir, case):
    pickle_property(case, workdir)


@FUZZ
@given(case=legacy_cases())
def test_legacy_reader_survives_mutated_real_files(workdir, case):
    legacy_property(case, workdir)


def test_the_seeds_are_real_checkpoints_read_cleanly(workdir):
    """The mutations start from files the readers take as intact, with the layout of the real classes."""
    for kind, ext in (("zip", ".ckpt"), ("legacy", ".pt"), ("safetensors", ".safetensors")):
        facts = check_file(None, "seed", seeds()[kind], ext, None, workdir)
        assert facts["readable"] and not facts["problems"], (kind, facts["problems"])
        assert facts["family"] == "sd1" and facts["variant"] == "inpainting"
        assert facts["safe"] is True
        if kind != "safetensors":
            assert facts["training"]["global_step"] == 440000
            assert facts["position_ids"] == "ok"


# ---------------------------------------------------------------- what the fuzzer found, kept as plain tests

def _central_version_needed(data: bytes, value: int) -> bytes:
    out = bytearray(data)
    pos = zipfile.ZipFile(io.BytesIO(data)).start_dir
    struct.pack_into("<H", out, pos + 6, value)  # "version needed to extract" of the first central entry
    return bytes(out)


def test_zip_needing_a_newer_zip_version_is_a_finding(workdir):
    """zipfile raises NotImplementedError for a version above 6.3; that escaped the reader once."""
    facts = check_file(None, "version 6.4", _central_version_needed(seeds()["zip"], 64), ".ckpt", read_torch_zip,
                       workdir)
    assert [p["kind"] for p in facts["problems"]] == ["zip-error"]
    assert facts["safe"] is not True


def test_safetensors_shape_larger_than_any_file_is_a_finding(workdir):
    """A 400-digit dimension once overflowed float formatting in the rules and the --deep read rate."""
    n = struct.unpack_from("<Q", seeds()["safetensors"])[0]
    header = seeds()["safetensors"][8:8 + n].decode()
    header = header.replace('"shape":[1000]', '"shape":[' + "9" * 400 + "]", 1)
    data = struct.pack("<Q", len(header)) + header.encode() + seeds()["safetensors"][8 + n:]
    seed = check_file(None, "seed", seeds()["safetensors"], ".safetensors", None, workdir)
    facts = check_file(None, "huge shape", data, ".safetensors", read_safetensors, workdir)
    assert "impossible-shape" in [p["kind"] for p in facts["problems"]]
    assert facts["tensors_total"] == seed["tensors_total"] - 1  # that tensor is reported, not recorded
    assert facts["parameters_total"] < seed["parameters_total"]


def test_empty_data_pkl_is_unreadable_not_safe(workdir):
    with zipfile.ZipFile(io.BytesIO(seeds()["zip"])) as zin:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as zout:
            for info in zin.infolist():
                zout.writestr(info.filename, b"" if info.filename.endswith("/data.pkl") else zin.read(info.filename))
    facts = check_file(None, "empty data.pkl", out.getvalue(), ".ckpt", read_torch_zip, workdir)
    assert "pickle-error" in [p["kind"] for p in facts["problems"]]
    assert facts["safe"] is False and facts["pickle"]["verified"] is False
