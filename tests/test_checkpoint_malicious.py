"""Malicious pickles, assembled from opcode bytes at test time: flagged, and never run.

Each payload would create a marker file if it were unpickled; a control test unpickles a few of them in
a child process to prove they are live, then every other test asserts that inspecting them (library
and CLI, with --deep and --hash) leaves no marker behind.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from diagnostics.probes.checkpoint import inspect_checkpoint
from diagnostics.rules.checkpoint import rule_unsafe_pickle, rule_weights_only
from diagnostics.findings import Status
from tests import ckpt_factory as f

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = {
    "os.system-p0": "os.system",
    "posix.system-p2": "posix.system",
    "builtins.eval-p2": "builtins.eval",
    "builtins.exec-p4-stack-global": "builtins.exec",
    "builtins.exec-p4-memo": "builtins.exec",
    "subprocess.getoutput-p2": "subprocess.getoutput",
    "runpy._run_code-p2": "runpy._run_code",
    "__builtin__.eval-p0": "builtins.eval",
}


def _assert_flagged(facts, name):
    assert facts["safe"] is False
    assert name in facts["unsafe_globals"], facts["unsafe_globals"]
    finding = rule_unsafe_pickle(facts)
    assert finding.status is Status.FAIL and finding.blocking
    assert name in finding.summary
    assert name in finding.evidence["dangerous_globals"]
    assert "Do not load" in finding.fix


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_payload_is_flagged_and_never_runs(tmp_path, kind):
    marker = tmp_path / "marker"
    path = f.write_bytes(tmp_path / "model.ckpt", f.payloads(marker)[kind])
    facts = inspect_checkpoint(str(path), deep=True, want_hash=True, environ={"LDM_DIAG_CACHE_DIR": str(tmp_path)})
    assert facts["format"] == "pickle"
    _assert_flagged(facts, EXPECTED[kind])
    wo = rule_weights_only(facts, "2.6.0", {})
    assert wo.status is Status.FAIL and "add_safe_globals" not in wo.fix  # never advise allowlisting code
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["os.system-p0", "builtins.exec-p4-memo", "runpy._run_code-p2"])
def test_control_the_payloads_are_live_when_unpickled(tmp_path, kind):
    """Unpickling (what torch.load(weights_only=False) does) in a child process creates the marker."""
    marker = tmp_path / "marker"
    path = f.write_bytes(tmp_path / "payload.pkl", f.payloads(marker)[kind])
    subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.loads(open(sys.argv[1], 'rb').read())",
                    str(path)], capture_output=True, timeout=60)
    assert marker.exists()


@pytest.fixture(scope="module")
def tiny_zip(tmp_path_factory):
    torch = pytest.importorskip("torch")
    path = tmp_path_factory.mktemp("zip") / "real.ckpt"
    sd = {"model.diffusion_model.input_blocks.0.0.weight": torch.randn(32, 4, 3, 3),
          "first_stage_model.encoder.conv_in.weight": torch.randn(32, 3, 3, 3), "placeholder": "PLACEHOLDER"}
    torch.save({"state_dict": sd, "global_step": 1}, str(path))
    return path


def _with_payload(src: Path, dst: Path, ops: bytes, nested: bool) -> Path:
    pkl = f.data_pkl_of(src)
    placeholder = f._unicode("PLACEHOLDER")
    if nested:
        assert pkl.count(placeholder) == 1
        pkl = pkl.replace(placeholder, ops)  # the value of state_dict["placeholder"]
    else:
        pkl = f.inject_into_data_pkl(pkl, ops)  # a top-level entry next to state_dict
    return f.rewrite_zip(src, dst, {"/data.pkl": pkl})


@pytest.mark.parametrize("nested", [False, True], ids=["top-level", "inside-state-dict"])
def test_payload_inside_a_real_torch_zip_next_to_real_tensors(tmp_path, tiny_zip, nested):
    marker = tmp_path / "marker"
    ops = f.call_p2("os", "system", f.marker_shell(marker))
    path = _with_payload(tiny_zip, tmp_path / "evil.ckpt", ops, nested)
    facts = inspect_checkpoint(str(path), deep=True)
    assert facts["format"] == "torch-zip"
    assert facts["components"]["unet"]["tensors"] == 1 and facts["components"]["vae"]["tensors"] == 1
    _assert_flagged(facts, "os.system")
    where = facts["pickle"]["where"]["os.system"]
    assert where["member"].endswith("/data.pkl") and where["opcode"] == "GLOBAL"
    if nested:
        assert facts["training"]["state_dict_path"] == ["state_dict"]
    assert not marker.exists()


def test_control_the_zip_payload_is_live_under_an_unsafe_torch_load(tmp_path, tiny_zip):
    marker = tmp_path / "marker"
    path = _with_payload(tiny_zip, tmp_path / "evil.ckpt", f.call_p2("os", "system", f.marker_shell(marker)), True)
    subprocess.run([sys.executable, "-c", "import sys, torch; torch.load(sys.argv[1], weights_only=False)", str(path)],
                   capture_output=True, timeout=120)
    assert marker.exists()


def test_payload_in_a_legacy_torch_file(tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "marker"
    src = tmp_path / "legacy.pt"
    torch.save({"state_dict": {"first_stage_model.w": torch.ones(3), "placeholder": "PLACEHOLDER"}}, str(src),
               _use_new_zipfile_serialization=False)
    data = src.read_bytes().replace(f._unicode("PLACEHOLDER"), f.call_p2("subprocess", "getoutput",
                                                                          f.marker_shell(marker)))
    path = f.write_bytes(tmp_path / "evil.pt", data)
    facts = inspect_checkpoint(str(path), deep=True)
    assert facts["format"] == "torch-legacy"
    _assert_flagged(facts, "subprocess.getoutput")
    assert facts["components"]["vae"]["tensors"] == 1
    assert not marker.exists()


def test_zip_with_a_second_data_pkl_is_scanned_too(tmp_path, tiny_zip):
    """A scanner that reads only the first data.pkl misses a payload in another root."""
    import zipfile

    marker = tmp_path / "marker"
    dst = tmp_path / "two-roots.ckpt"
    f.rewrite_zip(tiny_zip, dst, {})
    with zipfile.ZipFile(str(dst), "a") as z:
        z.writestr("other/data.pkl", f.pickle_p2("os", "system", f.marker_shell(marker)))
    facts = inspect_checkpoint(str(dst))
    assert "os.system" in facts["unsafe_globals"]
    assert any(a["kind"] == "multiple-data-pkl" for a in facts["container"]["anomalies"])
    assert not marker.exists()


def test_cli_flags_and_never_runs_it(tmp_path):
    marker = tmp_path / "marker"
    path = f.write_bytes(tmp_path / "model.safetensors", f.payloads(marker)["builtins.eval-p2"])  # lying extension
    env = dict(os.environ, PYTHONPATH=str(ROOT), LDM_DIAG_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-m", "diagnostics", "inspect", str(path), "--deep", "--hash"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "ckpt.unsafe-pickle" in proc.stdout and "builtins.eval" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not marker.exists()
