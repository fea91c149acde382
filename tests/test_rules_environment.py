"""Environment probes and rules on hand-made facts and on this interpreter."""

import sys

import pytest

from diagnostics.findings import Status
from diagnostics.probes import environment as probe

from .rules_helpers import evaluate


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
    assert (build["kind"], build["cuda"]) == (kind, cuda)


def test_python_facts_tell_conda_venv_and_system(tmp_path, monkeypatch):
    facts = probe.python_facts({})
    assert facts["version_info"] == list(sys.version_info[:3])
    assert facts["env_kind"] in ("venv", "system", "conda")
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "envs" / "pytorch-legacy"))
    (tmp_path / "envs" / "pytorch-legacy" / "conda-meta").mkdir(parents=True)
    conda = probe.python_facts({"CONDA_DEFAULT_ENV": "pytorch-legacy"})
    assert (conda["env_kind"], conda["env_name"]) == ("conda", "pytorch-legacy")


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
    facts = {"version": "3.8.18", "version_info": [3, 8, 18], "implementation": "CPython",
             "executable": "/opt/conda/envs/pytorch-legacy/bin/python", "env_kind": "conda",
             "env_name": "pytorch-legacy", "prefix": "/opt/conda/envs/pytorch-legacy"}
    f = evaluate("env.python", python=facts)
    assert f.status is Status.OK and "conda env 'pytorch-legacy'" in f.summary
    old = dict(facts, version="3.7.16", version_info=[3, 7, 16])
    assert evaluate("env.python", python=old).status is Status.FAIL


def test_resources_warn_when_ram_cannot_hold_the_checkpoint():
    gib = 2 ** 30
    low = evaluate("env.resources", memory={"total": 8 * gib, "available": 6 * gib}, disk={"cwd_free": 50 * gib},
                   checkpoint_size=4 * gib)
    assert low.status is Status.WARN and "8.0 GiB" in low.summary
    fine = evaluate("env.resources", memory={"total": 64 * gib, "available": 60 * gib}, disk={"cwd_free": 50 * gib},
                    checkpoint_size=4 * gib)
    assert fine.status is Status.OK
    unknown = evaluate("env.resources", memory={"total": None, "available": None}, disk={"cwd_free": None},
                       checkpoint_size=None)
    assert unknown.status is Status.OK and "unknown" in unknown.summary


def test_packages_rule_lists_absent_packages():
    f = evaluate("env.packages", versions={"torch": "2.13.0", "xformers": None},
                 torch_build={"installed": True, "kind": "cpu", "cuda": None})
    assert f.evidence["not_installed"] == ["xformers"]
    assert "cpu build" in f.summary
