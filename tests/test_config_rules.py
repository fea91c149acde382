"""Config vs checkpoint rules, on hand-made config facts and key -> shape maps (no model, no torch)."""

from __future__ import annotations

from dataclasses import replace

from diagnostics.context import Options
from diagnostics.findings import Status
from diagnostics.probes.checkpoint.shapes import CheckpointShapes
from diagnostics.probes.ldm_config import LdmConfigFacts
from diagnostics.registry import get_check
from diagnostics.rules.config import load

from .rules_helpers import evaluate


# Each rule runs through its declared check (preconditions, then the rule; code and title stamped).

def _compared(code, config, shapes, layout=None, transformers_version=None):
    """A config-vs-checkpoint check on `shapes` (`layout`, when given, is the checkpoint's CheckpointShapes:
    a failed read)."""
    layout = layout if layout is not None else CheckpointShapes(ok=True, shapes=dict(shapes))
    return evaluate(code, ldm_config=config, checkpoint_layout=layout, versions={"transformers": transformers_version})


def rule_config_load(config):
    return evaluate("config.load", ldm_config=config)


def rule_config_targets(config, resolved, code_root=None):
    """config.targets with the targets resolved by hand (instead of looked up on this interpreter's path)."""
    check = replace(get_check("config.targets"),
                    rule=lambda ldm_config, options: load.rule_config_targets(ldm_config, resolved, options.code_root))
    [finding] = check.evaluate(ldm_config=config, options=Options(code_root=code_root))
    return finding


def rule_in_channels(config, shapes, layout=None):
    return _compared("config.in-channels", config, shapes, layout)


def rule_context_dim(config, shapes, layout=None):
    return _compared("config.context-dim", config, shapes, layout)


def rule_use_ema(config, shapes, layout=None):
    return _compared("config.use-ema", config, shapes, layout)


def rule_cond_stage(config, shapes, layout=None, transformers_version=None):
    return _compared("config.cond-stage", config, shapes, layout, transformers_version)


UNET = "model.diffusion_model."
IN = UNET + "input_blocks.0.0.weight"
TO_K = UNET + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
PROJ_IN = UNET + "input_blocks.1.1.proj_in.weight"
CLIP = "cond_stage_model.transformer.text_model."


def config(unet=None, target="ldm.models.diffusion.ddpm.LatentDiffusion", use_ema=None, cond=None, **params):
    summary = {
        "target": target,
        "params": dict({"channels": 4, "conditioning_key": "crossattn"}, **params),
        "use_ema": {"value": use_ema, "explicit": use_ema is not None,
                    "effective": use_ema if use_ema is not None else True},
        "unet_config": {"target": "ldm.modules.diffusionmodules.openaimodel.UNetModel",
                        "params": unet if unet is not None else {"in_channels": 4, "out_channels": 4, "context_dim": 768}},
        "cond_stage_config": cond or {"target": "ldm.modules.encoders.modules.FrozenCLIPEmbedder", "params": {}},
    }
    return LdmConfigFacts(given=True, loaded=True, path="v1-inference.yaml", summary=summary,
                          lines={"model.params.unet_config.params.in_channels": 35, "model.params": 3})


def sd1(in_ch=4, ctx=768, ema=False, clip=True, n_unet=686):
    shapes = {IN: [320, in_ch, 3, 3], UNET + "out.2.weight": [4, 320, 3, 3], TO_K: [320, ctx],
              PROJ_IN: [320, 320, 1, 1] if ctx == 768 else [320, 320]}
    for i in range(n_unet - len(shapes)):
        shapes[f"{UNET}filler.{i}.weight"] = [1]
    if clip:
        shapes[CLIP + "final_layer_norm.weight"] = [768]
        shapes[CLIP + "embeddings.token_embedding.weight"] = [49408, 768]
    if ema:
        for key in [k for k in shapes if k.startswith(UNET)]:
            shapes["model_ema." + ("diffusion_model." + key[len(UNET):]).replace(".", "")] = [1]
        shapes["model_ema.decay"] = []
        shapes["model_ema.num_updates"] = []
    return shapes


# ------------------------------------------------------------------ config.load

def test_config_load_quotes_the_failing_line():
    facts = LdmConfigFacts(given=True, loaded=False, path="v1.yaml",
                           error={"kind": "syntax", "message": "found a tab character that violates indentation", "line": 12,
                                  "column": 1, "source_line": "\tcontext_dim: 768"})
    f = rule_config_load(facts)
    assert f.status is Status.FAIL and f.blocking
    assert "(line 12, column 1)" in f.summary and "`context_dim: 768`" in f.summary
    assert "at line 12" in f.fix and f.evidence["line"] == 12


def test_config_load_without_a_config_skips_and_ok_summarises_it():
    assert rule_config_load(LdmConfigFacts(given=False)).status is Status.SKIP
    f = rule_config_load(replace(config(), reader="omegaconf"))
    assert f.status is Status.OK
    assert "in_channels 4, context_dim 768" in f.summary and "use_ema True (default)" in f.summary


def test_config_load_missing_reader_says_what_to_install():
    f = rule_config_load(LdmConfigFacts(given=True, loaded=False, path="c.yaml",
                                        error={"kind": "missing-reader", "message": "neither omegaconf nor PyYAML is installed"}))
    assert f.status is Status.FAIL and "`pip install omegaconf`" in f.fix and f.fix.startswith("Install omegaconf")


# ------------------------------------------------------------------ config.in-channels

def test_inpainting_checkpoint_with_txt2img_config_fails_with_the_config_to_use():
    f = rule_in_channels(config(), sd1(in_ch=9))
    assert f.status is Status.FAIL
    assert "9 input channels" in f.summary and "in_channels: 4 (v1-inference.yaml:35)" in f.summary
    assert f.fix.startswith("Use v1-inpainting-inference.yaml")
    assert f.evidence["checkpoint"][IN] == [320, 9, 3, 3]


def test_txt2img_checkpoint_with_inpainting_config_fails_the_other_way():
    f = rule_in_channels(config(unet={"in_channels": 9, "out_channels": 4, "context_dim": 768},
                                conditioning_key="hybrid"), sd1(in_ch=4))
    assert f.status is Status.FAIL and "txt2img checkpoint paired with an inpainting config" in f.cause
    assert f.fix.startswith("Use v1-inference.yaml")


def test_sd2_inpainting_checkpoint_gets_the_sd2_config():
    f = rule_in_channels(config(unet={"in_channels": 4, "context_dim": 1024}), sd1(in_ch=9, ctx=1024))
    assert f.fix.startswith("Use v2-inpainting-inference.yaml")


def test_matching_channels_but_crossattn_conditioning_cannot_feed_nine_channels():
    f = rule_in_channels(config(unet={"in_channels": 9, "context_dim": 768}), sd1(in_ch=9))
    assert f.status is Status.FAIL and "conditioning_key: crossattn" in f.summary


def test_matching_inpainting_config_is_ok():
    f = rule_in_channels(config(unet={"in_channels": 9, "out_channels": 4, "context_dim": 768},
                                conditioning_key="hybrid"), sd1(in_ch=9))
    assert f.status is Status.OK and "inpainting" in f.summary


def test_in_channels_skips_without_checkpoint_or_unet():
    no_ckpt = CheckpointShapes(ok=False, error={"kind": "no-checkpoint", "message": "no --checkpoint was given"})
    assert rule_in_channels(config(), {}, no_ckpt).status is Status.SKIP
    assert rule_in_channels(config(), {"first_stage_model.x": [1]}).status is Status.SKIP
    refused = CheckpointShapes(ok=False, error={"kind": "weights-only-refused", "message": "Weights only load failed"})
    assert "ckpt.weights-only-refused" in rule_in_channels(config(), {}, refused).summary


# ------------------------------------------------------------------ config.context-dim

def test_sd2_checkpoint_with_sd1_config_is_a_family_mismatch():
    f = rule_context_dim(config(), sd1(ctx=1024, clip=False))
    assert f.status is Status.FAIL
    assert "1024-wide context" in f.summary and "SD 2.x" in f.summary
    assert "use_linear_in_transformer: False" in f.summary  # proj_in [320, 320] is linear
    assert f.fix.startswith("Use v2-inference.yaml")


def test_text_encoder_width_must_match_context_dim():
    shapes = sd1()
    shapes[CLIP + "final_layer_norm.weight"] = [1024]
    f = rule_context_dim(config(), shapes)
    assert f.status is Status.FAIL and "1024-wide embeddings" in f.summary


def test_matching_context_dim_is_ok():
    f = rule_context_dim(config(), sd1())
    assert f.status is Status.OK and "SD 1.x" in f.summary


# ------------------------------------------------------------------ config.use-ema

def test_pruned_file_with_default_use_ema_predicts_the_missing_ema_keys():
    f = rule_use_ema(config(), sd1(ema=False, n_unet=686))
    assert f.status is Status.FAIL and f.blocking
    assert f.evidence["expected_missing_keys"] == 688
    assert "LatentDiffusion defaults use_ema to True" in f.summary
    assert "`use_ema: False`" in f.fix


def test_full_ema_file_with_use_ema_false_warns_that_ema_weights_are_ignored():
    f = rule_use_ema(config(use_ema=False), sd1(ema=True, n_unet=10))
    assert f.status is Status.WARN and not f.blocking and "10 EMA weights" in f.summary


def test_ema_scalars_only_with_use_ema_false_is_fine():
    shapes = sd1(n_unet=10)
    shapes["model_ema.decay"] = []
    shapes["model_ema.num_updates"] = []
    f = rule_use_ema(config(use_ema=False), shapes)
    assert f.status is Status.OK and "model_ema.decay" in f.summary


def test_incomplete_ema_with_use_ema_fails_and_complete_is_ok():
    shapes = sd1(ema=True, n_unet=10)
    assert rule_use_ema(config(), shapes).status is Status.OK
    del shapes[next(k for k in shapes if k.startswith("model_ema.diffusion_model"))]
    f = rule_use_ema(config(), shapes)
    assert f.status is Status.FAIL and "9 of 10" in f.summary


def test_use_ema_unknown_for_foreign_targets():
    cfg = config(target="my.Model")
    cfg.summary["use_ema"] = {"value": None, "explicit": False, "effective": None}
    assert rule_use_ema(cfg, sd1()).status is Status.SKIP


# ------------------------------------------------------------------ config.cond-stage

def test_openclip_checkpoint_with_frozen_clip_config_fails():
    shapes = sd1(ctx=1024, clip=False)
    shapes["cond_stage_model.model.ln_final.weight"] = [1024]
    f = rule_cond_stage(config(), shapes, transformers_version="4.30.2")
    assert f.status is Status.FAIL and "SD 2.x" in f.summary and "v2-inference.yaml" in f.fix


def test_checkpoint_without_text_encoder_depends_on_the_version_files():
    f = rule_cond_stage(config(), sd1(clip=False), transformers_version="4.30.2")
    assert f.status is Status.INFO
    assert "openai/clip-vit-large-patch14" in f.summary and "cache.model-missing" in f.fix


def test_sd1_keys_with_transformers_5_are_ignored_by_a_non_strict_load():
    f = rule_cond_stage(config(), sd1(), transformers_version="5.24.0")
    assert f.status is Status.WARN and not f.blocking
    assert "without the `text_model.` level" in f.summary and "transformers<5" in f.fix


def test_flat_keys_with_transformers_4_need_text_model_inserted():
    shapes = {k.replace(CLIP, "cond_stage_model.transformer."): v for k, v in sd1().items()}
    f = rule_cond_stage(config(), shapes, transformers_version="4.30.2")
    assert f.status is Status.WARN and "Insert `text_model.`" in f.fix
    assert rule_cond_stage(config(), shapes, transformers_version="5.0.0").status is Status.OK


def test_sd1_keys_with_transformers_4_match():
    f = rule_cond_stage(config(), sd1(), transformers_version="4.30.2")
    assert f.status is Status.OK and "tokenizer.functional" in f.summary


# ------------------------------------------------------------------ config.targets

def test_missing_ldm_class_fails_and_training_only_targets_do_not():
    cfg = config()
    resolved = [
        {"target": "ldm.models.diffusion.ddpm.LatentInpaintDiffusion", "path": "model", "found": True,
         "module_file": "ldm/models/diffusion/ddpm.py", "defined": False},
        {"target": "ldm.lr_scheduler.LambdaLinearScheduler", "path": "model.params.scheduler_config", "found": False},
    ]
    f = rule_config_targets(cfg, resolved, "/srv/app")
    assert f.status is Status.FAIL and "defines no `LatentInpaintDiffusion`" in f.summary
    assert "--code-root" in f.fix
    only_training = rule_config_targets(cfg, resolved[1:])
    assert only_training.status is Status.OK and "the training-only ldm.lr_scheduler.LambdaLinearScheduler is not in " \
        "the code; inference does not build it" in only_training.summary
    assert "not found" not in only_training.summary  # an OK finding does not read like a failure


# ------------------------------------------------------------------ titles: written once, in the declarations

def test_rules_leave_code_and_title_to_the_declaration():
    from diagnostics.rules.config import compare

    assert (compare.rule_in_channels(config(), sd1()).code, compare.rule_in_channels(config(), sd1()).title) == ("", "")
    findings = {"config.load": rule_config_load(config()), "config.in-channels": rule_in_channels(config(), sd1()),
                "config.context-dim": rule_context_dim(config(), sd1()), "config.use-ema": rule_use_ema(config(), sd1()),
                "config.cond-stage": rule_cond_stage(config(), sd1(), transformers_version="4.30.2"),
                "config.targets": rule_config_targets(config(), [])}
    for code, finding in findings.items():
        assert (finding.code, finding.title) == (code, get_check(code).title)
    assert findings["config.in-channels"].title == "UNet input channels: config vs checkpoint"
    skipped = rule_in_channels(config(), {}, CheckpointShapes(ok=False, error={"kind": "no-checkpoint", "message": "-"}))
    assert (skipped.code, skipped.title) == ("config.in-channels", "UNet input channels: config vs checkpoint")
