"""Environment probes and rules on hand-made facts and on this interpreter."""

import sys
from dataclasses import replace

import pytest

from diagnostics.findings import Status
from diagnostics.probes import environment as probe
from diagnostics.probes.environment import DiskFacts, MemoryFacts, TorchBuild

from .rules_helpers import evaluate, python_facts


@pytest.mark.parametrize("version, version_py, kind, cuda", [
    ("2.13.0+cpu", None, "cpu", None),
    ("2.1.2+cu121", None, "cuda", "12.1"),
    ("1.12.1+cu113", None, "cuda", "11.3"),
    ("2.14.1", "__version__ = '2.14.1'\ncuda: Optional[str] = '13.0'\nhip: Optional[str] = None\n", "cuda", "13.0"),
    ("2.13.0", "__version__ = '2.13.0'\ncuda: Optional[str] = None\nhip: Optional[str] = None\n", "cpu", None),
    ("2.3.0", "cuda = None\nhip = '6.0.32830'\n", "rocm", None),
    ("2.3.0+rocm6.0", None, "rocm", None),
    ("2.3.0", None, "unknown", None),
    (None, None, None, None),
])
def test_torch_build_without_importing_torch(version, version_py, kind, cuda):
    build = probe.torch_build(version, version_py)
    assert (build.kind, build.cuda) == (kind, cuda)
    assert build.installed is (version is not None) and build.version == version


def test_python_facts_tell_conda_venv_and_system(tmp_path, monkeypatch):
    facts = probe.python_facts({})
    assert facts.version_info == tuple(sys.version_info[:3])
    assert facts.to_dict()["version_info"] == list(sys.version_info[:3])
    assert facts.env_kind in ("venv", "system", "conda")
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "envs" / "pytorch-legacy"))
    (tmp_path / "envs" / "pytorch-legacy" / "conda-meta").mkdir(parents=True)
    conda = probe.python_facts({"CONDA_DEFAULT_ENV": "pytorch-legacy"})
    assert (conda.env_kind, conda.env_name) == ("conda", "pytorch-legacy")


def test_package_versions_reads_metadata_of_this_environment():
    versions = probe.package_versions((("pytest", ("pytest",)), ("nope", ("surely-not-installed-dist",))))
    import pytest as real

    assert versions == {"pytest": real.__version__, "nope": None}


def test_torch_and_transformers_missing_are_blocking_with_a_fix():
    f = evaluate("env.torch-missing", versions={"torch": None})
    assert (f.code, f.status, f.blocking) == ("env.torch-missing", Status.FAIL, True)
    assert "pip install torch" in f.fix
    f = evaluate("env.transformers-missing", versions={"transformers": None})
    assert (f.code, f.status) == ("env.transformers-missing", Status.FAIL)
    assert "FrozenCLIPEmbedder" in f.cause
    assert evaluate("env.torch-missing", versions={"torch": "2.13.0"}).status is Status.OK


def test_python_rule_names_the_environment():
    facts = python_facts(version="3.8.18", version_info=(3, 8, 18), implementation="CPython",
                         executable="/opt/conda/envs/pytorch-legacy/bin/python", env_kind="conda",
                         env_name="pytorch-legacy", prefix="/opt/conda/envs/pytorch-legacy")
    f = evaluate("env.python", python=facts)
    assert f.status is Status.OK and "conda env 'pytorch-legacy'" in f.summary
    old = replace(facts, version="3.7.16", version_info=(3, 7, 16))
    assert evaluate("env.python", python=old).status is Status.FAIL


def test_resources_warn_when_ram_cannot_hold_the_checkpoint():
    gib = 2 ** 30
    disk = DiskFacts(cwd="/srv", cwd_free=50 * gib)
    low = evaluate("env.resources", memory=MemoryFacts(8 * gib, 6 * gib, "psutil"), disk=disk, checkpoint_size=4 * gib)
    assert low.status is Status.WARN and "8.0 GiB" in low.summary
    fine = evaluate("env.resources", memory=MemoryFacts(64 * gib, 60 * gib, "psutil"), disk=disk,
                    checkpoint_size=4 * gib)
    assert fine.status is Status.OK
    unknown = evaluate("env.resources", memory=MemoryFacts(None, None, "unavailable"),
                       disk=DiskFacts(cwd="/srv", cwd_free=None), checkpoint_size=None)
    assert unknown.status is Status.OK and "unknown" in unknown.summary


def test_packages_rule_lists_absent_packages():
    f = evaluate("env.packages", versions={"torch": "2.13.0", "xformers": None},
                 torch_build=TorchBuild(installed=True, version="2.13.0", kind="cpu"))
    assert f.evidence["not_installed"] == ["xformers"]
    assert "cpu build" in f.summary


def test_environment_facts_write_the_json_the_report_always_wrote(tmp_path):
    from diagnostics.context import Context, Options

    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"x" * 10)
    facts = probe.probe_environment(Context(Options(checkpoint=str(ckpt)), environ={}, cwd=tmp_path))
    data = facts.to_dict()
    assert list(data) == ["python", "packages", "torch", "memory", "disk", "checkpoint_size"]
    assert list(data["python"]) == ["version", "version_info", "implementation", "executable", "platform", "machine",
                                    "env_kind", "env_name", "prefix"]
    assert data["python"]["version_info"] == list(sys.version_info[:3]) and data["checkpoint_size"] == 10
    assert set(data["memory"]) == {"total", "available", "source"}
    assert list(data["disk"]) == ["cwd", "cwd_free"] and data["disk"]["cwd"] == str(tmp_path)
    assert data["packages"] == facts.packages
    torch = data["torch"]
    if torch["installed"]:
        assert list(torch) == ["installed", "version", "kind", "cuda", "source"]
    else:
        assert torch == {"installed": False, "version": None, "kind": None, "cuda": None}
