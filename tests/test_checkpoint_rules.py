"""ckpt.* rules on hand-made facts: tensor lists written here, run through the (pure) layout analysis.

No file and no ML library is involved; each test reads as the situation it covers.
"""

import pytest

from diagnostics.findings import Status
from diagnostics.probes.checkpoint.facts import CheckpointFacts
from diagnostics.probes.checkpoint.layout import analyse, ema_twin
from diagnostics.probes.checkpoint.records import TensorRecord, problem
from diagnostics.rules import checkpoint as rules

U = "model.diffusion_model."
CLIP = "cond_stage_model.transformer.text_model."


def sd1_tensors(in_ch=9, ctx=768, clip=True, ema=True, dtype="float32", proj_in=(320, 320, 1, 1), extra=()):
    unet = {
        U + "input_blocks.0.0.weight": (320, in_ch, 3, 3),
        U + "input_blocks.0.0.bias": (320,),
        U + "input_blocks.1.1.proj_in.weight": proj_in,
        U + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, ctx),
        U + "out.2.weight": (4, 320, 3, 3),
    }
    out = [TensorRecord(k, dtype, s) for k, s in unet.items()]
    out.append(TensorRecord("first_stage_model.encoder.conv_in.weight", dtype, (128, 3, 3, 3)))
    if clip:
        out.append(TensorRecord(CLIP + "embeddings.token_embedding.weight", dtype, (49408, 768)))
        out.append(TensorRecord(CLIP + "embeddings.position_ids", "int64", (1, 77)))
    if ema:
        out += [TensorRecord(ema_twin(k), dtype, s) for k, s in unet.items()]
        out += [TensorRecord("model_ema.decay", "float32", ()), TensorRecord("model_ema.num_updates", "int32", ())]
    out += [TensorRecord(n, dtype, s) for n, s in extra]
    return out


def facts_for(tensors, fmt="torch-zip", **overrides):
    facts = CheckpointFacts(path="model.ckpt", format=fmt, analysed=True, size_bytes=123)
    facts.apply_layout(analyse(tensors))
    facts.training.update(top_level_keys=["state_dict", "global_step"], state_dict_path=["state_dict"],
                             other_tensors={}, optimizer_states={"present": False, "tensors": 0, "bytes": 0})
    if fmt != "safetensors":
        facts.pickle = {"globals": ["collections.OrderedDict"], "unsafe_globals": [], "dangerous_globals": [],
                           "unsafe_called": [], "where": {}, "anomalies": [], "verified": True, "protocol": 2}
        facts.weights_only = {"refused": False, "reasons": [], "globals": [], "opcodes": [],
                                 "add_safe_globals_enough": False}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(getattr(facts, key), dict):
            setattr(facts, key, dict(getattr(facts, key), **value))
        else:
            setattr(facts, key, value)
    return facts


def test_every_rule_skips_without_a_checkpoint():
    for finding in rules.all_rules(CheckpointFacts.not_given(), {}, {}):
        assert finding.status is Status.SKIP
        assert "--checkpoint" in finding.summary


def test_rules_that_need_the_content_skip_when_it_could_not_be_read():
    facts = CheckpointFacts(path="model.ckpt")
    facts.problems = [problem("truncated-zip", "cut short")]
    findings = {f.code: f for f in rules.all_rules(facts, {}, {})}
    assert findings["ckpt.corrupt"].status is Status.FAIL
    for code in ("ckpt.components", "ckpt.family", "ckpt.clip-missing", "ckpt.ema-absent", "ckpt.nonfinite"):
        assert findings[code].status is Status.SKIP and "ckpt.corrupt" in findings[code].summary


@pytest.mark.parametrize("in_ch, variant, config", [(9, "inpainting", "v1-inpainting-inference.yaml"),
                                                    (4, "txt2img", "v1-inference.yaml"), (8, "pix2pix", "pix2pix")])
def test_sd1_variants_name_their_config(in_ch, variant, config):
    f = rules.rule_family(facts_for(sd1_tensors(in_ch=in_ch)))
    assert f.status is Status.OK and f.evidence["family"] == "sd1" and f.evidence["variant"] == variant
    assert config in f.summary


def test_sd2_is_told_by_width_and_linear_proj_in():
    facts = facts_for(sd1_tensors(in_ch=4, ctx=1024, clip=False, proj_in=(320, 320)))
    f = rules.rule_family(facts)
    assert f.evidence["family"] == "sd2" and "linear proj_in" in f.summary and "v2-inference" in f.summary


def test_sdxl_needs_label_emb_and_2048_context():
    tensors = sd1_tensors(in_ch=4, ctx=2048, clip=False, ema=False, proj_in=(320, 320),
                          extra=[(U + "label_emb.0.0.weight", (1280, 2816))])
    f = rules.rule_family(facts_for(tensors))
    assert f.evidence["family"] == "sdxl" and "sgm" in f.summary


def test_depth_variant_and_unknown_channels():
    assert rules.rule_family(facts_for(sd1_tensors(in_ch=5, ctx=1024, proj_in=(320, 320)))).evidence["variant"] == "depth"
    odd = rules.rule_family(facts_for(sd1_tensors(in_ch=7)))
    assert odd.status is Status.WARN and "7-channel" in odd.summary


def test_unknown_family_is_a_warning_with_the_shapes():
    f = rules.rule_family(facts_for(sd1_tensors(ctx=512)))
    assert f.status is Status.WARN and "512" in f.summary


def test_components_summary_and_missing_parts():
    ok = rules.rule_components(facts_for(sd1_tensors()))
    assert ok.status is Status.OK and "UNet 5 tensors" in ok.summary and "CLIP ViT-L/14" in ok.summary
    no_vae = [t for t in sd1_tensors() if not t.name.startswith("first_stage_model.")]
    f = rules.rule_components(facts_for(no_vae))
    assert f.status is Status.FAIL and f.blocking and "first_stage_model" in f.fix
    vae_only = [t for t in sd1_tensors() if t.name.startswith("first_stage_model.")]
    assert rules.rule_components(facts_for(vae_only)).status is Status.FAIL
    assert rules.rule_components(facts_for([])).status is Status.FAIL


def test_optimizer_state_is_called_dead_weight():
    facts = facts_for(sd1_tensors(), training={"optimizer_states": {"present": True, "tensors": 6, "bytes": 3 * 2**30}})
    f = rules.rule_components(facts)
    assert f.status is Status.INFO and "3.0 GiB of optimizer state" in f.summary


@pytest.mark.parametrize("style, tv, status", [
    ("text_model", "4.19.2", Status.OK), ("text_model", "5.24.0", Status.WARN),
    ("flat", "4.30.2", Status.WARN), ("flat", "5.0.0", Status.OK), ("text_model", None, Status.OK),
])
def test_clip_key_style_against_transformers(style, tv, status):
    tensors = sd1_tensors()
    if style == "flat":
        for t in tensors:
            t.name = t.name.replace("text_model.", "")
    facts = facts_for(tensors)
    assert facts["text_encoder"]["key_style"] == style
    f = rules.rule_clip_missing(facts, tv)
    assert f.status is status
    if status is Status.OK:
        assert "from_pretrained('openai/clip-vit-large-patch14')" in f.summary  # the seed's trap, said plainly
    else:
        assert "Rename" in f.fix


def test_clip_missing_needs_the_hub():
    f = rules.rule_clip_missing(facts_for(sd1_tensors(clip=False)), "4.19.2")
    assert f.status is Status.WARN and "openai/clip-vit-large-patch14" in f.summary and "HF_HUB_OFFLINE" in f.fix
    assert rules.rule_clip_position_ids(facts_for(sd1_tensors(clip=False)), "4.19.2").status is Status.SKIP


def broken_ids():
    return {"status": "broken", "key": CLIP + "embeddings.position_ids", "dtype": "float32", "shape": [1, 77],
            "problems": ["dtype is float32, not int64", "1 ids differ from 0..76"],
            "bad_values": [{"index": 76, "value": 75.9975, "as_int": 75}], "bad_indices": [76],
            "wrong_after_cast": [76]}


@pytest.mark.parametrize("tv, status", [("4.30.2", Status.WARN), ("4.31.0", Status.INFO), (None, Status.WARN)])
def test_broken_position_ids_matter_before_transformers_4_31(tv, status):
    facts = facts_for(sd1_tensors(), position_ids="broken", position_ids_detail=broken_ids())
    f = rules.rule_clip_position_ids(facts, tv)
    assert f.status is status and "[76] = 75.9975" in f.summary and "torch.arange(77" in f.fix


def test_position_ids_ok_and_absent_are_fine():
    ok = facts_for(sd1_tensors(), position_ids="ok", position_ids_detail={"status": "ok", "key": "k"})
    assert rules.rule_clip_position_ids(ok, "4.19.2").status is Status.OK
    absent = facts_for(sd1_tensors(), position_ids="absent", position_ids_detail={"status": "absent"})
    assert "absent" in rules.rule_clip_position_ids(absent, "4.19.2").summary


def test_ema_rules_on_a_complete_ema():
    facts = facts_for(sd1_tensors(), ema={"num_updates": 470000, "decay": 0.9999})
    assert rules.rule_ema_absent(facts).status is Status.OK
    assert rules.rule_ema_incomplete(facts).status is Status.OK
    assert rules.rule_ema_shape_mismatch(facts).status is Status.OK
    f = rules.rule_ema_untrained(facts)
    assert f.status is Status.OK and "--deep" in f.summary


def test_pruned_file_explains_the_missing_ema_keys():
    f = rules.rule_ema_absent(facts_for(sd1_tensors(ema=False)))
    assert f.status is Status.INFO and "7 missing model_ema.* keys" in f.summary and "use_ema: False" in f.fix
    for rule in (rules.rule_ema_incomplete, rules.rule_ema_shape_mismatch, rules.rule_ema_untrained):
        assert rule(facts_for(sd1_tensors(ema=False))).status is Status.SKIP


def test_incomplete_ema_lists_the_uncovered_tensors():
    tensors = [t for t in sd1_tensors() if t.name != ema_twin(U + "out.2.weight")]
    f = rules.rule_ema_incomplete(facts_for(tensors))
    assert f.status is Status.WARN and U + "out.2.weight" in f.summary and "1 of 5" in f.summary


def test_ema_from_a_txt2img_model_in_an_inpainting_file_blocks():
    tensors = sd1_tensors(in_ch=9)
    for t in tensors:
        if t.name == ema_twin(U + "input_blocks.0.0.weight"):
            t.shape = (320, 4, 3, 3)
    f = rules.rule_ema_shape_mismatch(facts_for(tensors))
    assert f.status is Status.FAIL and f.blocking
    assert "size mismatch for model_ema.diffusion_modelinput_blocks00weight" in f.summary
    assert "[320, 4, 3, 3]" in f.summary and "[320, 9, 3, 3]" in f.summary


def test_untrained_ema_by_counter_or_by_data():
    assert rules.rule_ema_untrained(facts_for(sd1_tensors(), ema={"num_updates": 0})).status is Status.WARN
    same = facts_for(sd1_tensors(), ema={"num_updates": 10, "identical_to_model": True, "difference": {"pairs": 5}})
    assert rules.rule_ema_untrained(same).status is Status.WARN
    differs = facts_for(sd1_tensors(), ema={"num_updates": 10, "identical_to_model": False,
                                           "difference": {"relative_l2": 0.01, "max_abs_diff": 0.2}})
    assert rules.rule_ema_untrained(differs).status is Status.OK


def test_ema_only_file():
    tensors = [t for t in sd1_tensors() if not t.name.startswith(U)]
    facts = facts_for(tensors)
    assert rules.rule_ema_incomplete(facts).status is Status.WARN
    assert rules.rule_components(facts).status is Status.FAIL


def deep(nonfinite=(), ran=True):
    return {"ran": ran, "reason": "numpy is not installed", "nonfinite": list(nonfinite),
            "nonfinite_count": len(nonfinite), "tensors_scanned": 10, "bytes_read": 1000, "read_rate_mb_s": 1.0,
            "seconds": 0.1, "skipped": []}


def test_nonfinite_rules():
    assert rules.rule_nonfinite(facts_for(sd1_tensors())).status is Status.SKIP  # no --deep
    assert rules.rule_nonfinite(facts_for(sd1_tensors(), deep=deep(ran=False))).status is Status.SKIP
    assert rules.rule_nonfinite(facts_for(sd1_tensors(), deep=deep())).status is Status.OK
    bad = {"name": U + "out.2.weight", "nan": 3, "inf": 1, "component": "unet"}
    f = rules.rule_nonfinite(facts_for(sd1_tensors(), deep=deep([bad])))
    assert f.status is Status.FAIL and f.blocking and "out.2.weight (3 NaN, 1 Inf)" in f.summary
    ema_only = {"name": "model_ema.x", "nan": 1, "inf": 0, "component": "ema"}
    assert rules.rule_nonfinite(facts_for(sd1_tensors(), deep=deep([ema_only]))).status is Status.WARN


def test_dtype_summary_and_mixed_precision():
    f = rules.rule_dtype(facts_for(sd1_tensors()))
    assert f.status is Status.INFO and "the EMA is" in f.summary
    assert set(f.evidence["unet"]["bytes_by_dtype"]) == {"float32"}
    mixed = sd1_tensors(ema=False)
    mixed[0].dtype = "float16"
    assert rules.rule_dtype(facts_for(mixed)).status is Status.WARN


@pytest.mark.parametrize("tv, env, status", [
    ("2.5.1", {}, Status.WARN), ("2.6.0", {}, Status.FAIL), ("2.14.1+cu128", {}, Status.FAIL),
    (None, {}, Status.WARN), ("2.6.0", {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}, Status.INFO),
])
def test_weights_only_refusal_by_torch_version(tv, env, status):
    refused = {"refused": True, "reasons": ["Unsupported global: GLOBAL pytorch_lightning.callbacks.model_checkpoint."
                                            "ModelCheckpoint was not an allowed global by default"],
               "globals": ["pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"], "opcodes": [],
               "add_safe_globals_enough": True}
    f = rules.rule_weights_only(facts_for(sd1_tensors(), weights_only=refused), tv, env)
    assert f.status is status
    assert "safetensors" in f.fix and "add_safe_globals" in f.fix


def test_weights_only_never_suggests_allowlisting_an_unsafe_file():
    refused = {"refused": True, "reasons": ["GLOBAL os.system: module os is blocked"], "globals": ["os.system"],
               "opcodes": [], "add_safe_globals_enough": False}
    f = rules.rule_weights_only(facts_for(sd1_tensors(), weights_only=refused, unsafe_globals=["os.system"]), "2.6.0", {})
    assert f.status is Status.FAIL and "add_safe_globals" not in f.fix and "Do not load" in f.fix


def test_weights_only_ok_and_safetensors():
    assert rules.rule_weights_only(facts_for(sd1_tensors()), "2.6.0", {}).status is Status.OK
    st = facts_for(sd1_tensors(), fmt="safetensors")
    assert rules.rule_weights_only(st, "2.6.0", {}).status is Status.OK
    assert rules.rule_unsafe_pickle(st).status is Status.OK


def test_unverified_pickle_is_a_warning():
    facts = facts_for(sd1_tensors(), pickle={"verified": False})
    assert rules.rule_unsafe_pickle(facts).status is Status.WARN


def test_format_notes_for_the_stock_ldm_loader():
    st = rules.rule_format(facts_for(sd1_tensors(), fmt="safetensors"))
    assert st.status is Status.INFO and "load_file" in st.fix
    bare = facts_for(sd1_tensors(), training={"state_dict_path": [], "top_level_keys": ["a"]})
    f = rules.rule_format(bare)
    assert f.status is Status.WARN and "KeyError: 'state_dict'" in f.summary


def test_zip_anomalies_fail_integrity():
    facts = facts_for(sd1_tensors(), container={"anomalies": [{"kind": "duplicate-members", "members": ["a"]}]})
    assert rules.rule_corrupt(facts).status is Status.FAIL
    extra = facts_for(sd1_tensors(), container={"anomalies": [{"kind": "extra-members", "members": ["x"]}]})
    assert rules.rule_corrupt(extra).status is Status.WARN


def test_hash_rule():
    assert rules.rule_hash(facts_for(sd1_tensors())).status is Status.SKIP
    h = {"sha256": "ab" * 32, "autov2": "ab" * 5, "legacy": "12345678", "cached": True}
    f = rules.rule_hash(facts_for(sd1_tensors(), hash=h))
    assert f.status is Status.INFO and "[cached]" in f.summary and "abababab" in f.summary


def test_rules_leave_code_and_title_to_the_declaration():
    from diagnostics.registry import get_check
    from diagnostics.rules.checkpoint import content

    facts = facts_for(sd1_tensors())
    assert (content.rule_family(facts).code, content.rule_family(facts).title) == ("", "")
    for finding in rules.all_rules(facts, {"transformers": "4.19.2", "torch": "2.6.0"}, {}):
        assert finding.title == get_check(finding.code).title and finding.code.startswith("ckpt.")
    assert rules.rule_family(facts).title == "Model family and variant"
    assert [c.code for c in rules.CHECKS][:2] == ["ckpt.format", "ckpt.corrupt"]
