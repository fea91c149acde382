"""Bad input is a named finding with cause and fix, never a traceback, in bounded time and memory.

Most inputs are written byte by byte here; the torch-zip and legacy truncations use `torch.save` of a
few tensors (skipped without torch).
"""

import json
import os
import struct
import tempfile
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diagnostics import cli
from diagnostics.findings import Status
from diagnostics.probes.checkpoint import inspect_checkpoint
from diagnostics.probes.checkpoint import sniff as sniff_module
from diagnostics.rules.checkpoint import all_rules, rule_corrupt, rule_format
from tests import ckpt_factory as f

VERSIONS = {"torch": "2.6.0", "transformers": "4.30.2"}


def verdict(path, code):
    facts = inspect_checkpoint(str(path))
    finding = {"ckpt.format": rule_format, "ckpt.corrupt": rule_corrupt}[code](facts)
    return facts, finding


def assert_named(path, code, kind, status=Status.FAIL):
    facts, finding = verdict(path, code)
    assert finding.code == code
    assert finding.status is status, (finding.summary, facts["problems"])
    assert finding.evidence.get("problem") == kind, facts["problems"]
    assert finding.cause and finding.fix
    assert "Traceback" not in finding.summary + finding.cause + finding.fix
    # Every other rule copes with the same facts (skips), so `inspect` never crashes on it.
    for other in all_rules(facts, VERSIONS, {}):
        assert other.status in (Status.SKIP, Status.FAIL, Status.OK, Status.INFO, Status.WARN)
    return facts, finding


def st_header(entries, data=b"", **kw):
    return f.safetensors_bytes(entries, data, **kw)


F32 = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}


# ---------------------------------------------------------------- not a checkpoint (ckpt.format)

def test_lfs_pointer(tmp_path):
    oid = "a" * 64
    path = f.write_bytes(tmp_path / "v1-5-pruned.ckpt",
                         f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize 7703807346\n".encode())
    facts, finding = assert_named(path, "ckpt.format", "lfs-pointer")
    assert "git lfs pull" in finding.fix and "7703807346" in finding.cause and oid in finding.cause


def test_html_error_page(tmp_path):
    page = b"<!DOCTYPE html>\n<html><head><title>Access to model runwayml/x is restricted</title></head></html>"
    facts, finding = assert_named(f.write_bytes(tmp_path / "model.ckpt", page), "ckpt.format", "html")
    assert "restricted" in finding.summary and "token" in finding.fix


def test_random_bytes(tmp_path):
    data = bytes((i * 131 + 7) % 251 for i in range(4096))
    facts, finding = assert_named(f.write_bytes(tmp_path / "model.ckpt", data), "ckpt.format", "unknown")
    assert facts["format"] == "unknown" and facts["safe"] is None


def test_text_file(tmp_path):
    assert_named(f.write_bytes(tmp_path / "model.ckpt", b"Entry not found\n"), "ckpt.format", "text")


def test_gzip_archive(tmp_path):
    import gzip

    assert_named(f.write_bytes(tmp_path / "model.ckpt", gzip.compress(b"x" * 100)), "ckpt.format", "archive")


def test_zip_that_is_not_a_torch_checkpoint(tmp_path):
    path = tmp_path / "bundle.ckpt"
    with zipfile.ZipFile(str(path), "w") as z:
        z.writestr("readme.txt", "hello")
    facts, finding = assert_named(path, "ckpt.format", "zip-not-torch")
    assert "readme.txt" in str(finding.evidence["problems"])


def test_plain_directory_lists_candidates(tmp_path):
    (tmp_path / "models").mkdir()
    f.write_bytes(tmp_path / "models" / "sd-v1-5-inpainting.ckpt", b"x")
    facts, finding = assert_named(tmp_path / "models", "ckpt.format", "directory")
    assert "sd-v1-5-inpainting.ckpt" in finding.fix


def test_symlink_loop(tmp_path):
    a, b = tmp_path / "a.ckpt", tmp_path / "b.ckpt"
    os.symlink(str(b), str(a))
    os.symlink(str(a), str(b))
    facts, finding = assert_named(a, "ckpt.format", "symlink-loop")
    assert "ln -sfn" in finding.fix


def test_dangling_symlink(tmp_path):
    link = tmp_path / "model.ckpt"
    os.symlink(str(tmp_path / "gone.ckpt"), str(link))
    facts, finding = assert_named(link, "ckpt.format", "dangling-symlink")
    assert "gone.ckpt" in finding.cause


def test_permission_denied_is_a_finding(tmp_path, monkeypatch):
    path = f.write_bytes(tmp_path / "model.ckpt", b"PK\x03\x04")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(sniff_module, "open", refuse, raising=False)
    facts, finding = assert_named(path, "ckpt.format", "permission-denied")
    assert "chmod a+r" in finding.fix


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads files whatever their mode")
def test_permission_denied_for_real(tmp_path):
    path = f.write_bytes(tmp_path / "model.ckpt", b"PK\x03\x04")
    path.chmod(0)
    try:
        assert_named(path, "ckpt.format", "permission-denied")
    finally:
        path.chmod(0o644)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_is_not_opened(tmp_path):
    fifo = tmp_path / "model.ckpt"
    os.mkfifo(str(fifo))  # opening it for reading would block forever
    assert_named(fifo, "ckpt.format", "not-regular-file")


# ---------------------------------------------------------------- broken checkpoints (ckpt.corrupt)

def test_zero_byte_file(tmp_path):
    path = f.write_bytes(tmp_path / "model.ckpt", b"")
    facts, finding = assert_named(path, "ckpt.corrupt", "empty")
    assert "0 bytes" in finding.cause
    fmt = rule_format(facts)
    assert fmt.status is Status.SKIP and "ckpt.corrupt" in fmt.summary


@pytest.mark.parametrize("length", [1 << 63, 100_000_001])
def test_absurd_safetensors_header_length_in_bounded_memory(tmp_path, length):
    path = f.write_bytes(tmp_path / "model.safetensors", struct.pack("<Q", length) + b"{}" + b" " * 6)
    tracemalloc.start()
    try:
        facts, finding = assert_named(path, "ckpt.corrupt", "header-too-large")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000  # the claimed length was never allocated
    assert "HeaderTooLarge" in finding.cause


def test_header_length_beyond_the_file(tmp_path):
    path = f.write_bytes(tmp_path / "model.safetensors", struct.pack("<Q", 50_000_000) + b'{"a": 1}')
    assert_named(path, "ckpt.corrupt", "header-beyond-file")


def test_shorter_than_the_length_field(tmp_path):
    assert_named(f.write_bytes(tmp_path / "model.safetensors", b"\x08\x00\x00"), "ckpt.corrupt", "safetensors-too-short")


def test_invalid_header_json(tmp_path):
    path = f.write_bytes(tmp_path / "model.safetensors", st_header({}, raw_header=b'{"w": {"dtype": "F32",'))
    facts, finding = assert_named(path, "ckpt.corrupt", "header-not-json")
    assert "InvalidHeaderDeserialization" in finding.cause


def test_duplicate_header_keys(tmp_path):
    raw = b'{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "w": {"dtype": "F32", "shape": [2], ' \
          b'"data_offsets": [0, 8]}}'
    path = f.write_bytes(tmp_path / "model.safetensors", st_header({}, b"\x00" * 8, raw_header=raw))
    facts, finding = assert_named(path, "ckpt.corrupt", "duplicate-keys")
    assert "'w'" in finding.cause


@pytest.mark.parametrize("entries, data, kind", [
    ({"w": {"dtype": "F33", "shape": [2], "data_offsets": [0, 8]}}, b"\x00" * 8, "bad-entry"),
    ({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\x00" * 8, "bad-entry"),
    ({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\x00" * 8, "size-mismatch"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
      "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\x00" * 12, "offsets-not-contiguous"),
    (F32, b"\x00" * 6, "data-truncated"),
    (F32, b"\x00" * 12, "trailing-bytes"),
])
def test_invalid_safetensors_entries(tmp_path, entries, data, kind):
    assert_named(f.write_bytes(tmp_path / "model.safetensors", st_header(entries, data)), "ckpt.corrupt", kind)


def test_safetensors_library_agrees_with_the_verdicts(tmp_path):
    """What we call corrupt, the reference implementation refuses too (and the valid file opens)."""
    safetensors = pytest.importorskip("safetensors")
    from safetensors import safe_open

    cases = {
        "ok": st_header(F32, b"\x00" * 8),
        "data-truncated": st_header(F32, b"\x00" * 6),
        "size-mismatch": st_header({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\x00" * 8),
        "header-too-large": struct.pack("<Q", 1 << 40) + b"{}      ",
        "header-not-json": st_header({}, raw_header=b'{"w": '),
    }
    for kind, data in cases.items():
        path = f.write_bytes(tmp_path / f"{kind}.safetensors", data)
        facts = inspect_checkpoint(str(path))
        kinds = [p["kind"] for p in facts["problems"]]
        try:
            with safe_open(str(path), framework="numpy") as fh:
                list(fh.keys())
            opened = True
        except Exception:
            opened = False
        assert opened == (kind == "ok"), kind
        assert (kinds == []) == (kind == "ok") and (kind == "ok" or kind in kinds), (kind, kinds)
    assert safetensors.__version__


def test_bad_metadata_is_reported(tmp_path):
    path = f.write_bytes(tmp_path / "model.safetensors", st_header(F32, b"\x00" * 8, metadata={"n": 1}))
    facts = inspect_checkpoint(str(path))
    assert [p["kind"] for p in facts["problems"]] == ["bad-metadata"]
    assert rule_corrupt(facts).status is Status.WARN


@pytest.fixture(scope="module")
def small_torch_files(tmp_path_factory):
    torch = pytest.importorskip("torch")
    d = tmp_path_factory.mktemp("small")
    sd = {f"model.diffusion_model.b{i}.weight": torch.randn(64, 64) for i in range(8)}
    return f.save_zip({"state_dict": sd}, d / "z.ckpt"), f.save_legacy({"state_dict": sd}, d / "l.ckpt")


@pytest.mark.parametrize("fraction", [0.999, 0.5, 0.01])
def test_truncated_torch_zip(tmp_path, small_torch_files, fraction):
    data = small_torch_files[0].read_bytes()
    path = f.write_bytes(tmp_path / "model.ckpt", data[: max(int(len(data) * fraction), 8)])
    facts, finding = assert_named(path, "ckpt.corrupt", "truncated-zip")
    assert "ls -l" in finding.fix and facts["format"] == "torch-zip"


@pytest.mark.parametrize("fraction", [0.9, 0.3, 0.001])
def test_truncated_legacy_file(tmp_path, small_torch_files, fraction):
    data = small_torch_files[1].read_bytes()
    path = f.write_bytes(tmp_path / "model.ckpt", data[: max(int(len(data) * fraction), 4)])
    facts = inspect_checkpoint(str(path))
    kinds = [p["kind"] for p in facts["problems"]]
    assert set(kinds) & {"legacy-truncated", "pickle-error"}, kinds
    finding = rule_corrupt(facts)
    assert finding.status is Status.FAIL and finding.fix


def test_missing_storage_record(tmp_path, small_torch_files):
    src = small_torch_files[0]
    dst = tmp_path / "model.ckpt"
    with zipfile.ZipFile(str(src)) as zin, zipfile.ZipFile(str(dst), "w") as zout:
        for info in zin.infolist():
            if not info.filename.endswith("/data/3"):
                zout.writestr(info.filename, zin.read(info.filename))
    facts, finding = assert_named(dst, "ckpt.corrupt", "missing-storage")
    assert facts["problems"][0]["storages"] == ["3"]


def test_garbage_data_pkl(tmp_path, small_torch_files):
    path = f.rewrite_zip(small_torch_files[0], tmp_path / "model.ckpt", {"/data.pkl": b"\x80\x02\xfe\xfe"})
    facts, finding = assert_named(path, "ckpt.corrupt", "pickle-error")
    assert facts["pickle"]["verified"] is False


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_torchscript_archive(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    facts, finding = assert_named(path, "ckpt.format", "torchscript")
    assert facts["weights_only"]["refused"]


# ---------------------------------------------------------------- the CLI never shows a traceback

def test_cli_bad_inputs_exit_1_without_traceback(tmp_path, capsys):
    inputs = {
        "empty.ckpt": b"",
        "pointer.ckpt": b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 5\n",
        "page.safetensors": b"<html><title>404</title></html>",
        "huge.safetensors": struct.pack("<Q", 1 << 62) + b"{}",
        "random.bin": bytes(range(256)) * 4,
    }
    for name, data in inputs.items():
        path = f.write_bytes(tmp_path / name, data)
        code = cli.main(["inspect", str(path), "--deep", "--hash"])
        out = capsys.readouterr()
        assert code == 1, (name, out.out)
        assert "Traceback" not in out.out + out.err and "[FAIL]" in out.out
        code = cli.main(["inspect", str(path), "--json"])
        data = json.loads(capsys.readouterr().out)
        assert code == 1 and data["blocking"] and data["problems"]


def test_cli_missing_path_is_a_usage_error(tmp_path, capsys):
    assert cli.main(["inspect", str(tmp_path / "nope.ckpt")]) == 2
    assert "does not exist" in capsys.readouterr().err


# ---------------------------------------------------------------- fuzz: nothing raises

@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=600), st.sampled_from([".ckpt", ".safetensors", ".pt", ""]))
def test_arbitrary_bytes_never_raise(data, ext):
    with tempfile.TemporaryDirectory() as d:
        path = f.write_bytes(Path(d) / f"x{ext}", data)
        facts = inspect_checkpoint(str(path), deep=True)
        json.dumps(facts.to_dict())
        assert facts["problems"] or facts["analysed"]
        for finding in all_rules(facts, VERSIONS, {}):
            assert finding.summary


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_damaged_real_files_never_raise(data):
    torch = pytest.importorskip("torch")
    sd = {"model.diffusion_model.input_blocks.0.0.weight": torch.ones(4, 4, 3, 3), "b": torch.zeros(3)}
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "src.ckpt"
        kind = data.draw(st.sampled_from(["zip", "legacy", "safetensors"]))
        if kind == "zip":
            f.save_zip({"state_dict": sd}, src)
        elif kind == "legacy":
            f.save_legacy({"state_dict": sd}, src)
        else:
            f.save_safetensors(sd, src)
        raw = bytearray(src.read_bytes())
        cut = data.draw(st.integers(0, len(raw)))
        flips = data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)), max_size=4))
        for pos, value in flips:
            raw[pos] = value
        path = f.write_bytes(Path(d) / "x.ckpt", bytes(raw[:cut]))
        facts = inspect_checkpoint(str(path), deep=True)
        json.dumps(facts.to_dict())
        for finding in all_rules(facts, VERSIONS, {}):
            assert finding.summary
