"""End to end on the real `ldm` code and the real configs (shrunk), each case in the harness's child process.

The expectations come from the fixtures' manifest (what the installed ldm and transformers actually
produce), so the same tests hold on transformers 4.x and 5.x and on pytorch-lightning 1.x and 2.x.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Dict

import pytest

from diagnostics.context import Context, Options
from diagnostics.findings import Finding, Status
from diagnostics.registry import get_check, run_check
from tests.ldm_factory import child_env, fixtures, pl2_layout, pl_has_distributed_rank_zero_only, seed_report

CODES = ("config.load", "config.targets", "config.in-channels", "config.context-dim", "config.use-ema",
         "config.cond-stage", "model.import", "model.instantiate", "model.load-keys", "model.smoke-forward",
         "cuda.memory")
PROBLEMS = (Status.FAIL, Status.WARN, Status.ERROR)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return fixtures(tmp_path_factory)


def check_all(config: str, checkpoint=None, device: str = "auto", environ=None, tmp_path=None, codes=CODES,
              code_root=None):
    environ = environ if environ is not None else {}
    if tmp_path is not None:
        environ.setdefault("HF_HOME", str(tmp_path / "hf-home"))
    opts = Options(config=config, checkpoint=checkpoint, device=device, timeout=300, code_root=code_root)
    ctx = Context(opts, environ=environ, cwd=tmp_path)
    found: Dict[str, Finding] = {}
    for code in codes:
        for f in run_check(get_check(code), ctx).findings:
            found[f.code] = f
    return found, ctx


def env(tiny, **extra):
    return child_env([tiny["shim"]], **extra)


def problems(found):
    return {code: f"{f.status.value}: {f.summary}" for code, f in found.items() if f.status in PROBLEMS}


def test_clean_load_has_no_findings_and_the_cpu_smoke_forward_runs(tiny, tmp_path):
    found, ctx = check_all(tiny["configs"]["v1-inference.yaml"], tiny["checkpoints"]["txt2img.safetensors"],
                           device="cpu", environ=env(tiny), tmp_path=tmp_path)
    assert problems(found) == {}
    assert found["model.load-keys"].status is Status.OK
    assert f"{tiny['txt2img_tensors']} of {tiny['txt2img_tensors']} checkpoint tensors" in found["model.load-keys"].summary
    smoke = found["model.smoke-forward"]
    assert smoke.status is Status.OK and smoke.evidence["device"] == "cpu"
    assert smoke.evidence["parts"]["unet"]["shape"] == [1, 4, 16, 16]
    assert smoke.evidence["parts"]["text"]["shape"] == [1, 77, 768]
    assert found["cuda.memory"].status is Status.SKIP
    # the report's Model Instantiation section reads these facts
    facts = ctx.facts["model"]
    assert set(facts["stages"]) == {"import", "instantiate", "load", "device", "smoke"}
    assert facts["stages"]["instantiate"]["meta"] is True
    components = facts["stages"]["instantiate"]["components"]
    assert set(components) == {"model", "first_stage_model", "cond_stage_model"}
    # UNet and VAE are built without memory; the CLIP weights that from_pretrained(version) loads stay real
    assert components["model"]["on_meta"] == components["model"]["tensors"] > 0
    assert components["cond_stage_model"]["on_meta"] == 0
    assert any("DiffusionWrapper has" in line for line in facts["notable"]["params_lines"])
    json.dumps(ctx.facts)  # the report writes every fact as JSON


def user_repo(tmp_path) -> Path:
    """A copy of the installed ldm package as the user's own repository (what --code-root points at)."""
    import importlib.util

    spec = importlib.util.find_spec("ldm")
    repo = tmp_path / "app"
    shutil.copytree(list(spec.submodule_search_locations)[0], str(repo / "ldm"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    return repo


def test_pruned_file_with_the_default_use_ema_reports_the_missing_ema_keys(tiny, tmp_path):
    repo = user_repo(tmp_path)
    found, _ = check_all(tiny["configs"]["v1-inpainting-inference.yaml"],
                         tiny["checkpoints"]["inpainting-pruned.safetensors"], environ=env(tiny), tmp_path=tmp_path,
                         code_root=str(repo))
    imp = found["model.import"]
    assert imp.status is Status.OK and imp.evidence["ldm"] == str(repo / "ldm" / "__init__.py")  # --code-root first
    ema = found["config.use-ema"]
    assert ema.status is Status.FAIL and ema.evidence["expected_missing_keys"] == tiny["inpainting_ema_keys"] == 688
    load = found["model.load-keys"]
    assert load.status is Status.FAIL
    assert [(g["kind"], g["component"], g["count"], g["related"]) for g in load.evidence["groups"]] == [
        ("missing", "ema", tiny["inpainting_ema_keys"], "config.use-ema")]
    assert found["config.in-channels"].status is Status.OK  # 9 channels and hybrid conditioning agree


def test_inpainting_checkpoint_with_the_txt2img_config(tiny, tmp_path):
    found, _ = check_all(tiny["configs"]["v1-inference.yaml"], tiny["checkpoints"]["inpainting-pruned.safetensors"],
                         device="cpu", environ=env(tiny), tmp_path=tmp_path)
    static = found["config.in-channels"]
    assert static.status is Status.FAIL and static.fix.startswith("Use v1-inpainting-inference.yaml")
    load = found["model.load-keys"]
    mismatch = [g for g in load.evidence["groups"] if g["kind"] == "mismatched"]
    assert mismatch == [dict(mismatch[0], component="unet", count=1, related="config.in-channels")]
    assert f"{tiny['inpainting_in_channels']} in the file but {tiny['txt2img_in_channels']}" in load.summary
    assert found["model.smoke-forward"].status is Status.SKIP and "size mismatch" in found["model.smoke-forward"].summary


def test_position_ids_on_the_installed_transformers(tiny, tmp_path):
    found, _ = check_all(tiny["configs"]["v1-inference.yaml"], tiny["checkpoints"]["txt2img-position-ids.ckpt"],
                         environ=env(tiny), tmp_path=tmp_path)
    load = found["model.load-keys"]
    if tiny["position_ids_saved"]:  # transformers <= 4.30 still saves the buffer
        assert load.status is Status.OK
    else:
        assert load.status is Status.INFO and not load.blocking
        assert [(g["kind"], g["count"], g["related"]) for g in load.evidence["groups"]] == [
            ("unexpected", 1, "compat.transformers-position-ids")]
        assert "fatal with strict=True" in load.summary
    assert found["model.load-keys"].evidence["format"] == "torch-zip"  # read with weights_only=True


def test_sd1_file_layout_on_the_installed_transformers(tiny, tmp_path):
    found, _ = check_all(tiny["configs"]["v1-inference.yaml"], tiny["checkpoints"]["txt2img-sd1-layout.safetensors"],
                         environ=env(tiny), tmp_path=tmp_path)
    load = found["model.load-keys"]
    if tiny["text_encoder_prefix"].endswith("text_model."):  # transformers 4: the names match
        assert found["config.cond-stage"].status is Status.OK
        assert load.status in (Status.OK, Status.INFO)
    else:  # transformers 5: CLIPTextModel lost its `text_model.` level
        assert found["config.cond-stage"].status is Status.WARN
        groups = {(g["kind"], g["component"]): g for g in load.evidence["groups"]}
        assert groups[("missing", "text_encoder")]["count"] == tiny["text_encoder_tensors"]
        assert groups[("unexpected", "text_encoder")]["count"] == tiny["text_encoder_tensors"] + 1  # + position_ids
        assert load.status is Status.WARN and "config.cond-stage" in load.fix


def test_rank_zero_only_import_error_from_the_real_ldm(tiny, tmp_path):
    path = []
    if pl_has_distributed_rank_zero_only():
        # pytorch-lightning 1.x is installed here: put 2.x's module layout in front of it (CI has the real 2.x).
        path.append(pl2_layout(tmp_path / "pl2"))
    found, _ = check_all(tiny["configs"]["v1-inference.yaml"], tiny["checkpoints"]["txt2img.safetensors"],
                         environ=child_env(path), tmp_path=tmp_path)
    imp = found["model.import"]
    assert imp.status is Status.FAIL and imp.evidence["related_checks"] == ["compat.pl-rank-zero-only"]
    assert "pytorch_lightning.utilities.distributed" in imp.summary
    assert imp.evidence["where"]["file"].replace("\\", "/").endswith("ldm/models/diffusion/ddpm.py")
    assert "Traceback" not in imp.summary and "pytorch-lightning<2" in imp.fix
    assert found["model.instantiate"].status is Status.SKIP


def test_seed_scenario_default_clip_id_offline_with_an_empty_cache(tmp_path_factory):
    # The command line's run, which tests/test_progress.py reads too: one model child for both.
    run = seed_report(tmp_path_factory)
    assert run["returncode"] == 1, run["stderr"][-3000:]
    report = json.loads(Path(run["report"]).read_text(encoding="utf-8"))
    found = {f["code"]: f for f in report["findings"]}
    inst = found["model.instantiate"]
    assert inst["status"] == "fail" and inst["blocking"]
    assert "'openai/clip-vit-large-patch14'" in inst["summary"] and "offline mode is on" in inst["summary"]
    for name in ("vocab.json", "merges.txt", "config.json"):
        assert name in inst["summary"]
    assert inst["evidence"]["text_encoder_files"]["cache_dir"] == str(Path(run["hf_home"]) / "hub")
    assert inst["evidence"]["related_checks"] == ["cache.model-missing", "tokenizer.functional", "hub.dns"]
    assert "hf download openai/clip-vit-large-patch14" in inst["fix"]
    assert "Traceback" not in inst["summary"] and "Traceback" in inst["evidence"]["traceback"]
    assert found["model.load-keys"]["status"] == "skip"
    assert report["facts"]["model"]["error"]["stage"] == "instantiate"


def test_a_misspelt_target_is_found_in_the_installed_ldm_sources_without_importing(tiny, tmp_path):
    config = Path(tiny["configs"]["v1-inference.yaml"]).read_text(encoding="utf-8")
    bad = tmp_path / "typo.yaml"
    bad.write_text(config.replace("ddpm.LatentDiffusion", "ddpm.LatentDifusion", 1), encoding="utf-8")
    found, ctx = check_all(str(bad), environ=env(tiny), tmp_path=tmp_path, codes=("config.load", "config.targets"))
    targets = found["config.targets"]
    assert targets.status is Status.FAIL and "LatentDifusion" in targets.summary
    assert found["config.load"].status is Status.OK and "model" not in ctx.facts  # nothing was built
