"""`python -m diagnostics inspect` and `pytest checks/test_checkpoint.py`: the two front-ends."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from diagnostics import cli
from tests import ckpt_factory as f

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def run_child(code: str, *args: str):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    f.require_ldm()
    d = tmp_path_factory.mktemp("cli")
    sd = f.ldm_state_dict("v1-inpainting-inference.yaml")
    pruned = {k: (v.half() if v.is_floating_point() else v) for k, v in f.without_prefix(sd, "model_ema.").items()}
    return {"ckpt": f.save_zip(f.lightning_checkpoint(sd), d / "sd-v1-5-inpainting.ckpt"),
            "pruned": f.save_safetensors(pruned, d / "pruned.safetensors")}


def test_json_has_the_design_fields(files, tmp_path, capsys):
    code = cli.main(["inspect", str(files["ckpt"]), "--json", "--deep", "--hash"])
    data = json.loads(capsys.readouterr().out)
    assert data["schema"] == "ldm-diagnostics/1"
    for key in ("path", "format", "size_bytes", "safe", "unsafe_globals", "family", "variant", "unet_in_channels",
                "components", "text_encoder", "position_ids", "ema", "training", "nonfinite_tensors", "sha256",
                "findings"):
        assert key in data, key
    assert data["format"] == "torch-zip" and data["family"] == "sd1" and data["variant"] == "inpainting"
    for comp in ("unet", "vae", "text_encoder", "ema"):
        assert {"present", "tensors", "parameters", "dtypes", "bytes_by_dtype"} <= set(data["components"][comp])
    assert data["text_encoder"]["kind"] == "clip-l" and data["components"]["text_encoder"]["kind"] == "clip-l"
    assert data["position_ids"] in ("ok", "absent", "broken")
    for key in ("present", "tensors", "missing", "shape_mismatches", "num_updates", "decay", "identical_to_model"):
        assert key in data["ema"], key
    for key in ("global_step", "epoch", "lightning_version"):
        assert key in data["training"]
    codes = [x["code"] for x in data["findings"]]
    assert len(codes) == 15 and all(c.startswith("ckpt.") for c in codes)
    blocking = [x["code"] for x in data["findings"] if x["blocking"]]
    assert code == (1 if blocking else 0)


def test_exit_codes_follow_the_blocking_findings(files, capsys):
    import importlib.metadata as md

    from diagnostics.util import version_at_least

    torch_26 = version_at_least(md.version("torch"), "2.6")
    assert cli.main(["inspect", str(files["ckpt"])]) == (1 if torch_26 else 0)  # ModelCheckpoint: weights_only
    out = capsys.readouterr().out
    assert "ckpt.weights-only-refused" in out and "sd1 inpainting" in out
    assert cli.main(["inspect", str(files["pruned"])]) == 0
    out = capsys.readouterr().out
    assert "[FAIL]" not in out and "688 missing model_ema.* keys" in out


def test_help_imports_no_ml_library():
    proc = run_child("import sys\nfrom diagnostics import cli\ntry:\n    cli.main(['inspect', '--help'])\n"
                     "except SystemExit:\n    pass\nprint('LOADED', sorted(m for m in ('torch', 'numpy', 'safetensors')"
                     " if m in sys.modules))")
    assert "--deep" in proc.stdout and "LOADED []" in proc.stdout, proc.stderr


def test_header_only_inspection_imports_no_ml_library(files):
    code = ("import sys\nfrom diagnostics.probes.checkpoint import inspect_checkpoint\n"
            "for p in sys.argv[1:]:\n    facts = inspect_checkpoint(p)\n    assert facts['analysed'], facts['problems']\n"
            "print('LOADED', sorted(m for m in ('torch', 'numpy', 'safetensors', 'pytorch_lightning') if m in sys.modules))")
    proc = run_child(code, str(files["ckpt"]), str(files["pruned"]))
    assert "LOADED []" in proc.stdout, proc.stdout + proc.stderr


def test_pytest_checks_front_end(files, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("LDM_DIAG_CHECKPOINT", None)
    base = [sys.executable, "-m", "pytest", str(ROOT / "checks" / "test_checkpoint.py"), "-q", "-p", "no:cacheprovider",
            "-o", "addopts=", "--rootdir", str(ROOT)]
    proc = subprocess.run(base + ["--checkpoint", str(files["pruned"]), "--html", str(tmp_path / "r") + "/"],
                          capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "skipped" in proc.stdout  # nonfinite / hash need inspect --deep / --hash
    findings = json.loads((tmp_path / "r" / "findings.json").read_text())
    assert {x["code"] for x in findings["findings"]} >= {"ckpt.format", "ckpt.family", "ckpt.ema-absent"}
    proc = subprocess.run(base, capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=300)
    assert proc.returncode == 0 and "15 skipped" in proc.stdout, proc.stdout[-2000:]


def test_progress_bar_draws_on_its_stream():
    import io

    from diagnostics.commands.inspect import ProgressBar

    out = io.StringIO()
    bar = ProgressBar(out)
    bar(0, 2_000_000_000, "deep")
    bar(2_000_000_000, 2_000_000_000, "deep")
    text = out.getvalue()
    assert "deep" in text and "100.0%" in text and text.endswith("\n") and "####################" in text
