"""model.* and cuda.memory rules on hand-made facts of a model run (what probes/model.py returns)."""

from __future__ import annotations

from diagnostics.findings import Status
from diagnostics.probes.model import group_keys
from diagnostics.registry import get_check
from diagnostics.rules.model import degenerate_tokenizer, diagnose
from tests.rules_helpers import evaluate

IMPORT = {"target": "ldm.models.diffusion.ddpm.LatentDiffusion", "ldm_file": "/app/ldm/__init__.py", "torch": "2.1.0",
          "targets": [{"path": "model.params.unet_config", "target": "x.UNet", "ok": True}], "seconds": 3.0}
INSTANTIATE = {"class": "ldm.models.diffusion.ddpm.LatentDiffusion", "seconds": 1.5, "meta": True, "use_ema": True,
               "components": {"model": {"parameters": 859520964}, "first_stage_model": {"parameters": 83653863},
                              "cond_stage_model": {"parameters": 123060480},
                              "model_ema": {"tensors": 688, "elements": 859520966}},
               "parameters": 1066235307,
               "tokenizer": {"size": 49408, "prompt": "a photo of a dog", "ids": [49406, 320, 1125, 539, 320, 1929, 49407]}}


def run(stages=None, error=None, skipped=None, notable=None, **extra):
    facts = {"ran": True, "stages": stages or {}, "error": error, "skipped": skipped or {},
             "notable": notable or {"xformers_missing": True, "params_lines": ["DiffusionWrapper has 859.52 M params."]},
             "output": [], "request": {"device": "auto"}}
    facts.update(extra)
    return facts


def load_stage(missing=(), unexpected=(), mismatched=(), shift=None):
    data = {"format": "safetensors", "checkpoint_tensors": 1131, "model_keys": 1819, "loaded": 1131, "seconds": 2.0,
            "clip_key_shift": shift}
    data["missing"] = {"count": len(missing), "groups": group_keys(list(missing))}
    data["unexpected"] = {"count": len(unexpected), "groups": group_keys(list(unexpected))}
    data["mismatched"] = {"count": len(mismatched), "groups": group_keys(list(mismatched), key_of=lambda m: m["key"])}
    return data


def check(code, model, **facts):
    """The finding of check `code` for the model run `model` (the ldm code and the versions unknown
    unless given), through its declaration."""
    return evaluate(code, **dict({"ldm": None, "versions": None}, **facts, model=model))


EMA_KEYS = ["model_ema.decay", "model_ema.num_updates"] + [f"model_ema.diffusion_modelblock{i}weight" for i in range(686)]


# ------------------------------------------------------------------ diagnose

def test_rank_zero_only_import_error_links_the_compat_check_and_the_version_that_was_imported():
    err = {"stage": "import", "type": "ModuleNotFoundError",
           "message": "No module named 'pytorch_lightning.utilities.distributed'",
           "where": {"file": "/app/ldm/models/diffusion/ddpm.py", "line": 20}, "versions": {"pytorch_lightning": "2.6.6"}}
    d = diagnose(err, versions={"pytorch_lightning": "1.9.5"})
    assert d.related == ["compat.pl-rank-zero-only"] and "2.6.6" in d.summary and "ddpm.py:20" in d.summary
    assert "pytorch-lightning<2" in d.fix


def test_ldm_not_importable_points_at_code_root():
    d = diagnose({"stage": "import", "type": "ModuleNotFoundError", "message": "No module named 'ldm'"}, {"found": False})
    assert d.kind == "ldm-missing" and "--code-root" in d.fix


def test_missing_dependency_gets_its_pip_name():
    d = diagnose({"stage": "import", "type": "ModuleNotFoundError", "message": "No module named 'open_clip'"})
    assert d.fix == "pip install open-clip-torch"


def test_clip_offline_error_names_missing_files_and_links_hub_and_cache_checks():
    err = {"stage": "instantiate", "type": "OSError",
           "message": "We couldn't connect to 'https://huggingface.co' to load the files, and couldn't find them in "
                      "the cached files.\nCheck your internet connection.",
           "traceback": 'File "ldm/modules/encoders/modules.py", line 100, in __init__\n'
                        '    self.transformer = CLIPTextModel.from_pretrained(version)'}
    files = {"version": "openai/clip-vit-large-patch14", "kind": "hub-id", "cache_dir": "/root/.cache/huggingface/hub",
             "missing": ["vocab.json", "merges.txt", "config.json"], "offline": True,
             "offline_vars": {"HF_HUB_OFFLINE": "1"}}
    d = diagnose(err, clip_files=files)
    assert d.kind == "clip-files"
    assert d.related == ["cache.model-missing", "tokenizer.functional", "hub.dns"]
    assert "3 required file(s) missing" in d.summary and "vocab.json, merges.txt, config.json" in d.summary
    assert "hf download openai/clip-vit-large-patch14" in d.fix and "HF_HUB_OFFLINE=1" in d.fix


def test_legacy_tokenizer_error_with_a_local_directory_lists_its_missing_files():
    err = {"type": "OSError", "message": "Can't load tokenizer for '/models/clip'. If you were trying to load it ...",
           "traceback": "FrozenCLIPEmbedder"}
    files = {"version": "/models/clip", "kind": "local-dir", "path": "/models/clip", "missing": ["merges.txt"]}
    d = diagnose(err, clip_files=files)
    assert "the directory /models/clip" in d.summary and "merges.txt" in d.fix


def test_timeout_and_kill_are_named_findings():
    assert diagnose({"kind": "timeout", "stage": "instantiate", "message": "stopped after 60 s"}).kind == "timeout"
    killed = diagnose({"kind": "killed", "stage": "load", "returncode": -9, "message": "exited with -9"})
    assert killed.kind == "oom" and "out-of-memory killer" in killed.cause


# ------------------------------------------------------------------ model.import / model.instantiate

def test_import_ok_mentions_xformers_line():
    f = check("model.import", run({"import": IMPORT}))
    assert f.status is Status.OK and "compat.xformers-missing" in f.summary


def test_import_of_a_secondary_target_failing_is_reported():
    data = dict(IMPORT, targets=[{"path": "model.params.cond_stage_config", "target": "ldm.x.Enc", "ok": False,
                                  "error": {"type": "ModuleNotFoundError", "message": "No module named 'open_clip'"}}])
    f = check("model.import", run({"import": data}))
    assert f.status is Status.FAIL and f.fix == "pip install open-clip-torch"


def test_code_root_that_does_not_exist_is_a_finding_and_the_rest_skip():
    facts = {"ran": False, "reason": "code-root-missing", "code_root": "/nope", "message": "--code-root /nope ..."}
    assert check("model.import", facts).status is Status.FAIL
    assert check("model.instantiate", facts).status is Status.SKIP


def test_instantiate_reports_params_per_component_and_the_params_line():
    f = check("model.instantiate", run({"import": IMPORT, "instantiate": INSTANTIATE}))
    assert f.status is Status.OK
    assert "UNet (DiffusionWrapper) 859.52 M" in f.summary and "VAE 83.65 M" in f.summary
    assert "EMA 688 buffers" in f.summary and "DiffusionWrapper has 859.52 M params." in f.summary


def test_every_model_finding_carries_the_code_and_title_of_its_declaration():
    facts = {"ran": False, "reason": "code-root-missing", "code_root": "/nope", "message": "--code-root /nope ..."}
    for code in ("model.import", "model.instantiate", "model.load-keys", "model.smoke-forward", "cuda.memory"):
        f = check(code, facts)
        assert (f.code, f.title) == (code, get_check(code).title)
    ok = check("model.instantiate", run({"import": IMPORT, "instantiate": INSTANTIATE}))
    assert (ok.code, ok.title) == ("model.instantiate", "Model instantiation from the config")


CLIP_OFFLINE = {"stage": "instantiate", "type": "OSError",
                "message": "We couldn't connect to 'https://huggingface.co' to load the files, and couldn't find them "
                           "in the cached files.\nCheck your internet connection.",
                "traceback": 'File "ldm/modules/encoders/modules.py", line 100, in __init__\n'
                             '    self.transformer = CLIPTextModel.from_pretrained(version)'}
CLIP_FILES = {"version": "openai/clip-vit-large-patch14", "kind": "hub-id", "cache_dir": "/cache/hub",
              "missing": ["vocab.json", "merges.txt", "config.json"], "offline": True,
              "offline_vars": {"HF_HUB_OFFLINE": "1"}}


def test_the_text_encoder_files_are_gathered_only_when_instantiate_failed():
    asked = []

    def text_encoder_files():
        asked.append(1)
        return CLIP_FILES

    assert check("model.instantiate", run({"import": IMPORT, "instantiate": INSTANTIATE}),
                 text_encoder_files=text_encoder_files).status is Status.OK
    assert asked == []
    f = check("model.instantiate", run({"import": IMPORT}, error=CLIP_OFFLINE), text_encoder_files=text_encoder_files)
    assert asked == [1]
    assert f.status is Status.FAIL and f.evidence["text_encoder_files"] == CLIP_FILES
    assert f.evidence["related_checks"] == ["cache.model-missing", "tokenizer.functional", "hub.dns"]
    assert (f.code, f.title) == ("model.instantiate", "Model instantiation from the config")


def test_instantiate_after_failed_import_skips():
    err = {"stage": "import", "type": "ImportError", "message": "x"}
    assert check("model.instantiate", run(error=err)).status is Status.SKIP


def test_the_two_token_tokenizer_of_transformers_5_fails():
    tok = {"size": 2, "prompt": "a photo of a dog", "ids": [0, 2, 2, 2, 2, 2, 1]}
    assert degenerate_tokenizer(tok) and not degenerate_tokenizer(INSTANTIATE["tokenizer"])
    f = check("model.instantiate", run({"import": IMPORT, "instantiate": dict(INSTANTIATE, tokenizer=tok)}))
    assert f.status is Status.FAIL and "tokenizer.functional" in f.fix


# ------------------------------------------------------------------ model.load-keys

def test_pruned_file_with_use_ema_groups_688_missing_ema_keys():
    stages = {"import": IMPORT, "instantiate": INSTANTIATE, "load": load_stage(missing=EMA_KEYS)}
    f = check("model.load-keys", run(stages))
    assert f.status is Status.FAIL and f.blocking
    group = f.evidence["groups"][0]
    assert (group["kind"], group["component"], group["count"], group["related"]) == ("missing", "ema", 688, "config.use-ema")
    assert len(group["first_keys"]) == 5 and "688 missing EMA (LitEma)" in f.summary
    assert "config.use-ema: set `use_ema: False`" in f.fix
    assert len(f.summary) < 1000  # counts and a few keys, not 688 lines


def test_size_mismatch_at_the_input_conv_points_at_in_channels():
    mism = [{"key": "model.diffusion_model.input_blocks.0.0.weight", "checkpoint": [320, 9, 3, 3], "model": [320, 4, 3, 3]}]
    f = check("model.load-keys",
              run({"import": IMPORT, "instantiate": INSTANTIATE, "load": load_stage(mismatched=mism)}))
    assert f.status is Status.FAIL and "[320, 9, 3, 3] in the file but [320, 4, 3, 3]" in f.summary
    assert f.evidence["groups"][0]["related"] == "config.in-channels"


def test_position_ids_alone_is_harmless_information():
    key = "cond_stage_model.transformer.text_model.embeddings.position_ids"
    f = check("model.load-keys",
              run({"import": IMPORT, "instantiate": INSTANTIATE, "load": load_stage(unexpected=[key])}))
    assert f.status is Status.INFO and not f.blocking
    assert "compat.transformers-position-ids" in f.summary and "strict load" in f.fix


def test_text_model_level_shift_is_a_warning_not_a_failure():
    nested = [f"cond_stage_model.transformer.text_model.encoder.layers.{i}.weight" for i in range(3)]
    flat = [k.replace("text_model.", "") for k in nested]
    data = load_stage(missing=flat, unexpected=nested, shift={"file": "text_model", "count": 3})
    f = check("model.load-keys", run({"import": IMPORT, "instantiate": INSTANTIATE, "load": data}))
    assert f.status is Status.WARN and "config.cond-stage" in f.fix


def test_clean_load_is_ok():
    f = check("model.load-keys", run({"import": IMPORT, "instantiate": INSTANTIATE, "load": load_stage()}))
    assert f.status is Status.OK and "every key matched" in f.summary


def test_weights_only_refusal_is_reported_without_loading():
    err = {"stage": "load", "kind": "weights-only-refused", "message": "Weights only load failed",
           "unsafe_globals": ["pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"]}
    f = check("model.load-keys", run({"import": IMPORT, "instantiate": INSTANTIATE}, error=err))
    assert f.status is Status.FAIL and "ModelCheckpoint" in f.summary and "ckpt.weights-only-refused" in f.cause


# ------------------------------------------------------------------ smoke forward and GPU memory

SMOKE_OK = {"latent_size": 8, "image_size": 64, "parts": {
    "text": {"shape": [1, 77, 768], "finite": True, "seconds": 0.1},
    "unet": {"shape": [1, 4, 8, 8], "finite": True, "seconds": 0.5},
    "vae": {"shape": [1, 3, 64, 64], "finite": True, "seconds": 0.2}}}


def test_smoke_forward_ok_and_nan_failure():
    device = {"device": "cpu", "dtype": "float32", "seconds": 0.1}
    ok = check("model.smoke-forward",
               run({"import": IMPORT, "instantiate": INSTANTIATE, "device": device, "smoke": SMOKE_OK}))
    assert ok.status is Status.OK and "VAE decode [1, 3, 64, 64]" in ok.summary and "all outputs finite" in ok.summary
    bad = dict(SMOKE_OK, parts=dict(SMOKE_OK["parts"], vae={"shape": [1, 3, 64, 64], "finite": False}))
    nan = check("model.smoke-forward",
                run({"import": IMPORT, "instantiate": INSTANTIATE, "device": device, "smoke": bad}))
    assert nan.status is Status.FAIL and "NaN/Inf" in nan.summary and "fp32" in nan.fix


def test_without_a_gpu_the_gpu_checks_skip_with_the_reason():
    reason = "no CUDA device (torch.cuda.is_available() is False); pass --device cpu to run the smoke forward on the CPU"
    facts = run({"import": IMPORT, "instantiate": INSTANTIATE}, skipped={"device": reason, "smoke": reason})
    for f in (check("model.smoke-forward", facts), check("cuda.memory", facts)):
        assert f.status is Status.SKIP and "--device cpu" in f.summary


def test_cuda_memory_reports_peak_and_warns_near_the_limit():
    device = {"device": "cuda", "dtype": "float16", "seconds": 1.2, "gpu": "NVIDIA H100", "total_memory": 80 * 2**30,
              "memory_allocated": 2 * 2**30, "max_memory_allocated": 2 * 2**30}
    smoke = dict(SMOKE_OK, image_size=512, max_memory_allocated=3 * 2**30)
    f = check("cuda.memory", run({"import": IMPORT, "instantiate": INSTANTIATE, "device": device, "smoke": smoke}))
    assert f.status is Status.OK and "peak 3.0 GiB" in f.summary and "of 80.0 GiB" in f.summary
    tight = dict(device, total_memory=int(3.2 * 2**30))
    assert check("cuda.memory", run({"device": tight, "smoke": smoke})).status is Status.WARN


def test_cuda_out_of_memory_is_a_blocking_finding_with_the_fix():
    err = {"stage": "device", "kind": "oom", "type": "OutOfMemoryError",
           "message": "CUDA out of memory. Tried to allocate 20.00 MiB"}
    f = check("cuda.memory", run({"import": IMPORT, "instantiate": INSTANTIATE, "load": load_stage()}, error=err))
    assert f.status is Status.FAIL and f.blocking and "fp16" in f.fix
    assert check("model.smoke-forward", run({"import": IMPORT}, error=err)).status is Status.FAIL


def test_misspelt_target_class_points_at_the_static_target_check():
    d = diagnose({"stage": "import", "type": "AttributeError",
                  "message": "module 'ldm.models.diffusion.ddpm' has no attribute 'LatentDifusion'"})
    assert d.kind == "target" and d.related == ["config.targets"] and "LatentDifusion" in d.summary


def test_ldm_imported_from_outside_the_code_root_is_a_warning(tmp_path):
    facts = run({"import": dict(IMPORT, ldm_file="/usr/lib/site-packages/ldm/__init__.py")},
                request={"code_root": str(tmp_path)})
    f = check("model.import", facts)
    assert f.status is Status.WARN and "not from --code-root" in f.summary
    inside = run({"import": dict(IMPORT, ldm_file=str(tmp_path / "ldm" / "__init__.py"))}, request={"code_root": str(tmp_path)})
    assert check("model.import", inside).status is Status.OK
