"""Checkpoints of the real `ldm` classes (real configs, tiny widths) saved as torch zip, legacy and
safetensors, and their faulty derivatives: the facts and findings match what the files hold.

Every expected number is computed from the torch state dict that was saved, never typed in.
"""

import zipfile

import pytest

from diagnostics.findings import Status
from diagnostics.probes.checkpoint import inspect_checkpoint
from diagnostics.probes.checkpoint.safetensors_fmt import read_safetensors
from diagnostics.probes.checkpoint.torchfile import read_torch_pickle_file, read_torch_zip
from diagnostics.rules import checkpoint as rules
from tests import ckpt_factory as f

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"), pytest.mark.filterwarnings("ignore:.*rank_zero_only")]

INPAINT, TXT2IMG = "v1-inpainting-inference.yaml", "v1-inference.yaml"
U = "model.diffusion_model."


@pytest.fixture(scope="module")
def sd():
    f.require_ldm()
    return f.ldm_state_dict(INPAINT)


@pytest.fixture(scope="module")
def files(sd, tmp_path_factory):
    d = tmp_path_factory.mktemp("ldm")
    ckpt = f.lightning_checkpoint(sd, optimizer=True)
    pruned16 = {k: (v.half() if v.is_floating_point() else v) for k, v in f.without_prefix(sd, "model_ema.").items()}
    return {
        "zip": f.save_zip(ckpt, d / "sd-inpaint.ckpt"),
        "legacy": f.save_legacy(f.lightning_checkpoint(sd), d / "sd-inpaint-legacy.ckpt"),
        "safetensors": f.save_safetensors(sd, d / "sd-inpaint.safetensors", metadata={"format": "pt"}),
        "pruned16": f.save_safetensors(pruned16, d / "sd-inpaint-pruned-fp16.safetensors"),
        "bare": f.save_zip(sd, d / "bare-state-dict.pt"),
    }


@pytest.fixture(scope="module")
def inpaint_model(sd):
    """The real inpainting model (use_ema), built once: the tests below only load state dicts into it,
    and what they assert (the keys it drops, the shapes it refuses) does not depend on its weights."""
    return f.build_model(INPAINT, use_ema=True)


def count(sd, prefix, params=False):
    keys = [k for k in sd if k.startswith(prefix)]
    if not params:
        return len(keys)
    skip = ("embeddings.position_ids", "model_ema.decay", "model_ema.num_updates")
    return sum(sd[k].numel() for k in keys if not k.endswith(skip))


@pytest.mark.parametrize("kind", ["zip", "legacy", "safetensors"])
def test_layout_matches_the_saved_state_dict(files, sd, kind):
    facts = inspect_checkpoint(str(files[kind]))
    assert facts["analysed"] and not facts["problems"], facts["problems"]
    comps = facts["components"]
    for name, prefix in (("unet", U), ("vae", "first_stage_model."), ("text_encoder", "cond_stage_model."),
                         ("ema", "model_ema.")):
        assert comps[name]["tensors"] == count(sd, prefix), name
        assert comps[name]["parameters"] == count(sd, prefix, params=True), name
    # The key structure of the full model survives the tiny widths.
    assert (comps["unet"]["tensors"], comps["vae"]["tensors"], comps["text_encoder"]["tensors"],
            comps["ema"]["tensors"]) == (686, 248, 197, 688)
    assert facts["family"] == "sd1" and facts["variant"] == "inpainting" and facts["unet_in_channels"] == 9
    assert facts["text_encoder"]["kind"] == "clip-l" and facts["text_encoder"]["key_style"] == "text_model"
    assert facts["position_ids"] == "ok"
    assert facts["ema"]["missing"] == [] and facts["ema"]["shape_mismatches"] == []
    assert facts["ema"]["num_updates"] == int(sd["model_ema.num_updates"])
    assert facts["ema"]["decay"] == pytest.approx(float(sd["model_ema.decay"]))
    assert facts["unknown_keys_count"] == 0
    if kind != "safetensors":
        assert facts["training"]["global_step"] == 440000 and facts["training"]["lightning_version"] == "1.4.2"
        assert facts["training"]["state_dict_path"] == ["state_dict"]
        assert facts["safe"] is True and facts["unsafe_globals"] == []


@pytest.mark.parametrize("kind", ["zip", "legacy", "safetensors"])
def test_every_record_points_at_the_tensor_bytes(files, sd, kind):
    """Names, dtypes, shapes and file offsets of every tensor agree with torch's own view."""
    path = files[kind]
    size = path.stat().st_size
    with open(str(path), "rb") as fh:
        reader = {"zip": read_torch_zip, "legacy": read_torch_pickle_file, "safetensors": read_safetensors}[kind]
        result = reader(fh, size)
        if result.resolve is not None:  # torch zip: storage offsets are located on demand
            result.resolve(fh, result.tensors)
        records = {t.name: t for t in result.tensors}
        assert set(records) == set(sd)
        for name, tensor in sd.items():
            rec = records[name]
            assert rec.shape == tuple(tensor.shape) and rec.dtype == str(tensor.dtype).replace("torch.", "")
            fh.seek(rec.offset)
            assert fh.read(rec.nbytes) == tensor.contiguous().numpy().tobytes(), name


def test_optimizer_state_is_counted_as_dead_weight(files):
    import torch

    facts = inspect_checkpoint(str(files["zip"]))
    opt = f.lightning_checkpoint({}, optimizer=True)["optimizer_states"]
    expected = sum(v.numel() * v.element_size() for s in opt for st in s["state"].values()
                   for v in st.values() if isinstance(v, torch.Tensor))
    assert facts["training"]["optimizer_states"] == {"present": True, "tensors": 6, "bytes": expected}
    assert "optimizer state" in rules.rule_components(facts).summary


def test_txt2img_config_gives_a_4_channel_variant(tmp_path):
    f.require_ldm()
    path = f.save_safetensors(f.ldm_state_dict(TXT2IMG), tmp_path / "t2i.safetensors")
    facts = inspect_checkpoint(str(path))
    assert (facts["family"], facts["variant"], facts["unet_in_channels"]) == ("sd1", "txt2img", 4)
    assert "v1-inference.yaml" in rules.rule_family(facts).summary


def _torch_refuses(path) -> bool:
    import torch

    try:
        torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:
        return True
    return False


@pytest.mark.parametrize("kind", ["zip", "legacy", "bare"])
def test_weights_only_prediction_matches_real_torch(files, kind):
    """These files were written by this test, so loading them with torch is safe."""
    facts = inspect_checkpoint(str(files[kind]))
    assert facts["weights_only"]["refused"] == _torch_refuses(files[kind])
    if facts["weights_only"]["refused"]:
        assert "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint" in facts["weights_only"]["globals"]


def test_allowlisting_the_reported_globals_is_enough(files):
    import importlib

    import torch

    facts = inspect_checkpoint(str(files["zip"]))
    objs = []
    for name in facts["weights_only"]["globals"]:
        module, _, attr = name.rpartition(".")
        objs.append(getattr(importlib.import_module(module), attr))
    with torch.serialization.safe_globals(objs):
        torch.load(str(files["zip"]), map_location="cpu", weights_only=True)


def test_bare_state_dict_warns_about_ldm_loader(files):
    facts = inspect_checkpoint(str(files["bare"]))
    assert facts["training"]["state_dict_path"] == []
    f_ = rules.rule_format(facts)
    assert f_.status is Status.WARN and "KeyError: 'state_dict'" in f_.summary


def test_clip_key_claim_holds_for_the_installed_transformers(sd, inpaint_model):
    """ckpt.clip-missing says whether ldm's load_state_dict(strict=False) picks up the file's CLIP keys."""
    from importlib.metadata import version

    result = inpaint_model.load_state_dict(sd, strict=False)
    dropped = [k for k in result.unexpected_keys if k.startswith("cond_stage_model.")]
    picked_up = rules.text_encoder_loaded_by("text_model", version("transformers"))
    assert picked_up == (len(dropped) == 0)
    if not picked_up:
        assert len(dropped) == 197  # 196 weights + position_ids


def derived(tmp_path, name, state_dict, fmt="safetensors"):
    path = tmp_path / name
    if fmt == "safetensors":
        return inspect_checkpoint(str(f.save_safetensors(state_dict, path)))
    return inspect_checkpoint(str(f.save_zip({"state_dict": state_dict}, path)), deep=True)


def test_no_clip(tmp_path, sd):
    facts = derived(tmp_path, "noclip.safetensors", f.without_prefix(sd, "cond_stage_model."))
    assert not facts["text_encoder"]["present"] and facts["family"] == "sd1"
    assert rules.rule_clip_missing(facts, "4.19.2").status is Status.WARN


def test_nai_style_keys(tmp_path, sd):
    facts = derived(tmp_path, "nai.safetensors", f.nai_style(sd))
    assert facts["text_encoder"]["key_style"] == "flat" and facts["text_encoder"]["kind"] == "clip-l"
    assert facts["components"]["text_encoder"]["tensors"] == 197
    assert rules.rule_clip_missing(facts, "4.30.2").status is Status.WARN


def test_merged_position_ids(tmp_path, sd):
    facts = derived(tmp_path, "merged.safetensors", f.merged_position_ids(sd))
    detail = facts["position_ids_detail"]
    assert facts["position_ids"] == "broken" and detail["dtype"] == "float32"
    assert detail["bad_indices"] == [40, 76] and detail["wrong_after_cast"] == [40, 76]
    assert rules.rule_clip_position_ids(facts, "4.30.2").status is Status.WARN


def test_position_ids_absent(tmp_path, sd):
    no_ids = {k: v for k, v in sd.items() if not k.endswith("position_ids")}
    facts = derived(tmp_path, "noids.safetensors", no_ids)
    assert facts["position_ids"] == "absent" and facts["components"]["text_encoder"]["tensors"] == 196


def test_pruned_ema(files):
    facts = inspect_checkpoint(str(files["pruned16"]))
    assert not facts["ema"]["present"]
    f_ = rules.rule_ema_absent(facts)
    assert f_.status is Status.INFO and "688 missing" in f_.summary
    assert set(facts["components"]["unet"]["dtypes"]) == {"float16"}


def test_incomplete_ema(tmp_path, sd):
    dropped = [U + "out.2.weight", U + "input_blocks.0.0.bias", U + "middle_block.1.proj_in.weight"]
    facts = derived(tmp_path, "ema-gap.safetensors", f.drop_ema_twins(sd, dropped))
    assert sorted(facts["ema"]["missing"]) == sorted(dropped)
    assert rules.rule_ema_incomplete(facts).status is Status.WARN


def test_txt2img_ema_in_an_inpainting_file(tmp_path, sd, inpaint_model):
    other = f.ldm_state_dict(TXT2IMG)
    facts = derived(tmp_path, "mixed.safetensors", f.ema_from(sd, other))
    mm = facts["ema"]["shape_mismatches"]
    assert [m["key"] for m in mm] == [U + "input_blocks.0.0.weight"]
    assert mm[0]["ema_shape"][1] == 4 and mm[0]["model_shape"][1] == 9
    finding = rules.rule_ema_shape_mismatch(facts)
    assert finding.status is Status.FAIL
    # The claim in the message: with use_ema the real model refuses to load it, strict=False or not.
    with pytest.raises(RuntimeError, match="size mismatch for model_ema.diffusion_modelinput_blocks00weight"):
        inpaint_model.load_state_dict(f.ema_from(sd, other), strict=False)


def test_untrained_ema_by_counter_and_by_data(tmp_path, sd):
    facts = derived(tmp_path, "untrained.ckpt", f.untrained_ema(sd), fmt="zip")
    assert facts["ema"]["num_updates"] == 0 and facts["ema"]["identical_to_model"] is True
    assert facts["deep"]["ema"]["identical_pairs"] == facts["deep"]["ema"]["pairs"] == 686
    assert rules.rule_ema_untrained(facts).status is Status.WARN


def test_deep_scan_of_a_healthy_file(files, sd):
    facts = inspect_checkpoint(str(files["zip"]), deep=True)
    deep = facts["deep"]
    assert deep["ran"] and deep["nonfinite"] == [] and facts["nonfinite_tensors"] == []
    assert deep["bytes_read"] == sum(v.numel() * v.element_size() for v in sd.values())
    assert facts["ema"]["identical_to_model"] is False
    assert 0 < deep["ema"]["max_abs_diff"] < 1e-2  # the factory moved the EMA by 1e-3 * N(0, 1)
    assert rules.rule_nonfinite(facts).status is Status.OK
    assert rules.rule_ema_untrained(facts).status is Status.OK


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_nan_and_inf_are_found_in_every_float_dtype(tmp_path, sd, dtype):
    import torch

    key = U + "output_blocks.2.1.conv.weight"
    cast = {k: (v.to(getattr(torch, dtype)) if v.is_floating_point() else v) for k, v in sd.items()}
    bad = f.with_nonfinite(cast, key, nan=3, inf=2)
    facts = inspect_checkpoint(str(f.save_safetensors(bad, tmp_path / "nan.safetensors")), deep=True)
    assert facts["deep"]["nonfinite"] == [{"name": key, "nan": 3, "inf": 2, "component": "unet"}]
    finding = rules.rule_nonfinite(facts)
    assert finding.status is Status.FAIL and key in finding.summary


def test_nan_only_in_the_ema(tmp_path, sd):
    bad = f.with_nonfinite(sd, "model_ema.diffusion_modelout2weight", nan=1, inf=0)
    facts = derived(tmp_path, "ema-nan.ckpt", bad, fmt="zip")
    assert facts["nonfinite_tensors"] == ["model_ema.diffusion_modelout2weight"]
    assert rules.rule_nonfinite(facts).status is Status.WARN


def test_deep_scan_memory_is_bounded_by_its_buffers(files):
    import tracemalloc

    tracemalloc.start()
    try:
        facts = inspect_checkpoint(str(files["zip"]), deep=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    largest = max(c["bytes"] for c in facts["components"].values()) // 686
    assert peak < 8 * facts["deep"]["buffer_bytes"] + 64 * 2**20, (peak, largest)


def test_zip_root_name_is_read_not_assumed(files, tmp_path):
    with zipfile.ZipFile(str(files["zip"])) as z:
        root = z.namelist()[0].split("/")[0]
    assert root == "sd-inpaint"  # torch names the root after the file stem
    facts = inspect_checkpoint(str(files["zip"]))
    assert facts["container"]["root"] == root


def test_diffusers_folder(tmp_path, sd):
    import json

    root = tmp_path / "sd-inpaint-diffusers"
    for folder in ("unet", "vae", "text_encoder"):
        (root / folder).mkdir(parents=True)
    (root / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionInpaintPipeline",
                                                       "unet": ["diffusers", "UNet2DConditionModel"]}))
    (root / "unet" / "config.json").write_text(json.dumps({"cross_attention_dim": 768, "in_channels": 9}))
    (root / "text_encoder" / "config.json").write_text(json.dumps({"hidden_size": 768}))
    unet = {k[len(U):]: v for k, v in sd.items() if k.startswith(U)}
    vae = {k[len("first_stage_model."):]: v for k, v in sd.items() if k.startswith("first_stage_model.")}
    te = {k[len("cond_stage_model.transformer."):]: v for k, v in sd.items() if k.startswith("cond_stage_model.")}
    f.save_safetensors(unet, root / "unet" / "diffusion_pytorch_model.safetensors")
    f.save_safetensors(vae, root / "vae" / "diffusion_pytorch_model.safetensors")
    f.save_safetensors(te, root / "text_encoder" / "model.safetensors")
    facts = inspect_checkpoint(str(root), deep=True)
    assert facts["format"] == "diffusers-dir" and facts["safe"] is True
    assert (facts["family"], facts["variant"], facts["unet_in_channels"]) == ("sd1", "inpainting", 9)
    assert facts["components"]["unet"]["tensors"] == 686 and facts["components"]["vae"]["tensors"] == 248
    assert facts["text_encoder"]["kind"] == "clip-l" and facts["position_ids"] == "ok"
    assert facts["deep"]["ran"] and facts["deep"]["nonfinite"] == []
    assert rules.rule_format(facts).status is Status.INFO


def test_big_endian_storages_are_not_misread(files, tmp_path):
    """torch >= 2.1 records the storages' byte order; values are only decoded when little-endian."""
    path = f.rewrite_zip(files["zip"], tmp_path / "big.ckpt", {"/byteorder": b"big"})
    facts = inspect_checkpoint(str(path), deep=True)
    assert facts["container"]["byteorder"] == "big"
    assert facts["position_ids"] == "unreadable" and facts["deep"]["ran"] is False
    assert rules.rule_nonfinite(facts).status is Status.SKIP
    assert inspect_checkpoint(str(files["zip"]))["container"]["byteorder"] == "little"
