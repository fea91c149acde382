"""`python -m diagnostics report` end to end in a child process, plus usage errors and --help."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SEED_HEADINGS = ("What to Do", "Summary by Area", "Original Problem", "Root Cause Analysis", "Investigation Process",
                 "Environment Analysis", "Checkpoint Analysis", "Model Instantiation", "Solution", "Current Status",
                 "Remaining Issues", "Recommendations", "Files Involved")  # Verification: only after a remedy


def run_cli(*args, cwd, env=None, python=sys.executable):
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([python, "-m", "diagnostics", *args], cwd=str(cwd), env=full_env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def report_run(tmp_path_factory):
    """One `report --out out` run, under the umask 022, read by the tests below: (process, its --out)."""
    cwd = tmp_path_factory.mktemp("report")
    old = os.umask(0o022)  # the child inherits it
    try:
        proc = run_cli("report", "--out", "out", cwd=cwd)
    finally:
        os.umask(old)
    return proc, cwd / "out"


def test_report_writes_md_html_json_with_the_seed_sections(report_run):
    proc, out = report_run
    assert proc.returncode in (0, 1), proc.stderr
    md = (out / "resolution-report.md").read_text(encoding="utf-8")
    page = (out / "resolution-report.html").read_text(encoding="utf-8")
    data = json.loads((out / "resolution-report.json").read_text(encoding="utf-8"))
    for heading in SEED_HEADINGS:
        assert heading in md, heading
        assert heading in page, heading
    assert data["schema"] == "ldm-diagnostics/1"
    assert data["status"] in ("RESOLVED", "UNRESOLVED", "DEGRADED")
    codes = {f["code"] for f in data["findings"]}
    assert {"env.python", "env.packages", "env.torch-missing", "compat.numpy2-abi", "cuda.available"} <= codes
    # the exit code is the contract: 1 exactly when a blocking finding exists
    assert proc.returncode == (1 if data["blocking"] else 0)
    assert f"Status: {data['status']}" in proc.stdout
    assert "<script" not in page


def test_report_format_selects_files(tmp_path):
    proc = run_cli("report", "--out", "o", "--format", "json", cwd=tmp_path)
    assert proc.returncode in (0, 1)
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["resolution-report.json"]


@pytest.mark.parametrize("args, message", [
    (["report", "--checkpoint", "missing.ckpt"], "checkpoint missing.ckpt does not exist"),
    (["report", "--format", "pdf"], "--format takes"),
    (["report", "--config", "."], "is a directory"),
    (["report", "--bogus"], "unrecognized arguments"),
    ([], "usage:"),
])
def test_usage_errors_exit_2_without_a_traceback(tmp_path, args, message):
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr


def test_a_subcommands_usage_error_prints_that_subcommands_usage(tmp_path):
    proc = run_cli("report", "--bogus", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: python -m diagnostics report ")
    assert "python -m diagnostics report: error: unrecognized arguments: --bogus" in proc.stderr


def _wrong_inputs(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "v1-inference.yaml").write_text("model:\n  target: ldm.models.diffusion.ddpm.LatentDiffusion\n")
    (tmp_path / "notes.txt").write_text("the checkpoint is on the NAS\n")
    (tmp_path / "sd15.ckpt").write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)  # zip magic: a checkpoint
    (tmp_path / "binary.cfg").write_bytes(bytes(range(256)) * 4)


WRONG_INPUTS = [
    (["--checkpoint", "models"], "--checkpoint models is a directory, not a checkpoint file (and not a diffusers "
                                 "folder: no model_index.json)"),
    (["--checkpoint", "v1-inference.yaml"], "--checkpoint v1-inference.yaml is a YAML config, not a checkpoint; "
                                            "did you mean --config v1-inference.yaml?"),
    (["--checkpoint", "notes.txt"], "--checkpoint notes.txt is a text file ('the checkpoint is on the NAS'...), not a "
                                    "checkpoint (.ckpt, .safetensors or a diffusers folder)"),
    (["--config", "sd15.ckpt"], "--config sd15.ckpt is a checkpoint, not a YAML config; did you mean --checkpoint "
                                "sd15.ckpt?"),
    (["--config", "binary.cfg"], "--config binary.cfg is a binary file, not YAML text (an LDM config is a .yaml file)"),
    (["--checkpoint", "v1-inference.yaml", "--config", "sd15.ckpt"],
     "--checkpoint and --config look swapped: v1-inference.yaml is a YAML config and sd15.ckpt a checkpoint; "
     "did you mean --checkpoint sd15.ckpt --config v1-inference.yaml?"),
]


@pytest.mark.parametrize("command", [["report"], ["explain", "-", "--no-confirm"], ["provision-clip", "--hf-cache"]],
                         ids=["report", "explain", "provision-clip"])
@pytest.mark.parametrize("args, message", WRONG_INPUTS, ids=[" ".join(a) for a, _ in WRONG_INPUTS])
def test_wrong_inputs_exit_2_with_one_line_in_every_command(tmp_path, command, args, message):
    _wrong_inputs(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "diagnostics", *command, *args], cwd=str(tmp_path),
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True,
                          timeout=120, input="")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr == f"error: {message}\n"  # one line, before any check ran
    assert proc.stdout == ""


@pytest.mark.parametrize("name, message", [
    ("models", "checkpoint models is a directory, not a checkpoint file"),
    ("v1-inference.yaml", "checkpoint v1-inference.yaml is a YAML config, not a checkpoint; did you mean --config"),
    ("notes.txt", "checkpoint notes.txt is a text file"),
])
def test_inspect_takes_the_same_checkpoint_rules(tmp_path, name, message):
    _wrong_inputs(tmp_path)
    proc = run_cli("inspect", name, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: {message}"), proc.stderr
    assert len(proc.stderr.splitlines()) == 1


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads every file")
@pytest.mark.parametrize("command", [["inspect", "locked.ckpt"], ["explain", "locked.ckpt"],
                                     ["report", "--checkpoint", "locked.ckpt"]])
def test_an_unreadable_file_is_exit_2_everywhere(tmp_path, command):
    locked = tmp_path / "locked.ckpt"
    locked.write_bytes(b"PK\x03\x04")
    locked.chmod(0)
    proc = run_cli(*command, cwd=tmp_path)
    assert proc.returncode == 2 and "not readable (permission denied)" in proc.stderr


def test_reports_keep_the_users_umask(report_run):
    proc, out = report_run  # written under the umask 022
    assert proc.returncode in (0, 1), proc.stderr
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in out.iterdir()}
    assert modes == {"resolution-report.md": "0o644", "resolution-report.html": "0o644",
                     "resolution-report.json": "0o644"}


def test_atomic_write_follows_a_stricter_umask(tmp_path):
    from diagnostics.report.write import atomic_write_text

    old = os.umask(0o077)
    try:
        atomic_write_text(tmp_path / "r.md", "x")
    finally:
        os.umask(old)
    assert oct((tmp_path / "r.md").stat().st_mode & 0o777) == "0o600"


def test_unwritable_out_is_a_usage_error_before_any_check(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    proc = run_cli("report", "--out", str(blocker / "sub"), cwd=tmp_path)
    assert proc.returncode == 2 and "--out:" in proc.stderr
    assert "Status:" not in proc.stdout  # no check ran


def test_help_does_not_import_torch_or_transformers(tmp_path):
    code = ("import sys\nfrom diagnostics.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('HEAVY', sorted(m for m in ('torch', 'transformers', 'huggingface_hub', 'numpy') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=60)
    assert "report" in proc.stdout
    assert "HEAVY []" in proc.stdout


def test_env_variables_fill_the_options(tmp_path):
    from diagnostics.context import Options

    opts = Options.from_values({"LDM_DIAG_CHECKPOINT": "a.ckpt", "LDM_DIAG_CONFIG": "c.yaml",
                                "LDM_DIAG_CODE_ROOT": "repo"}, config="given.yaml")
    assert (opts.checkpoint, opts.config, opts.code_root) == ("a.ckpt", "given.yaml", "repo")


def test_error_log_fills_original_problem_and_root_causes(tmp_path):
    log = ROOT / "tests" / "logs" / "seed_clip_tokenizer.log"
    proc = run_cli("report", "--out", "out", "--error-log", str(log), cwd=tmp_path,
                   env={"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 1, proc.stderr
    md = (tmp_path / "out" / "resolution-report.md").read_text(encoding="utf-8")
    assert "- **File**: `/app/ldm/modules/encoders/modules.py`" in md
    assert "- **Class**: `FrozenCLIPEmbedder.__init__()`" in md
    assert "- **Line**: 103 - `self.tokenizer = CLIPTokenizer.from_pretrained(version)`" in md
    assert "**Issue**: OSError: Can't load tokenizer for 'openai/clip-vit-large-patch14'." in md
    data = json.loads((tmp_path / "out" / "resolution-report.json").read_text(encoding="utf-8"))
    assert data["original_problem"]["line"] == 103
    k01 = [f for f in data["findings"] if f["code"] == "explain.signature" and f["evidence"]["signature"] == "K01"]
    assert k01 and k01[0]["status"] == "fail"  # confirmed on this machine: offline switch on, empty cache
    assert "explain.signature" in data["blocking"]
