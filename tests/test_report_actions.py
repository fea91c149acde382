"""The report's action list: one step per cause, deduplicated, in dependency order."""

import socket

import pytest

from diagnostics.context import Context, Options
from diagnostics.findings import Finding, Status
from diagnostics.registry import Check, CheckResult, run_checks
from diagnostics.report.actions import CAUSE_ORDER, build_actions
from diagnostics.report.build import build_report
from diagnostics.report.render import render_markdown

CLIP = "openai/clip-vit-large-patch14"


def fail(code, summary="", fix="", **evidence):
    return Finding(code, Status.FAIL, code, summary or code, evidence=evidence, fix=fix)


def warn(code, summary="", fix=""):
    return Finding(code, Status.WARN, code, summary or code, fix=fix)


def fresh_venv_findings():
    """What a virtualenv with only the harness's dependencies reports (see test_without_ml_stack)."""
    return [
        warn("env.packages", "none of the LDM stack is installed", "Activate the environment the model runs in."),
        fail("env.torch-missing", "torch is not installed", "`pip install torch --index-url https://download.pytorch.org/whl/cu121`"),
        fail("env.transformers-missing", "transformers is not installed", "`pip install transformers==4.19.2`"),
        fail("cache.offline-flag", "offline, not cached", "Download the files first"),
        fail("cache.model-missing", "vocab.json missing", "1. hf download openai/clip-vit-large-patch14 ...", model=CLIP),
        fail("hub.dns", "huggingface.co does not resolve", "provision the files instead"),
    ]


def test_order_rows_are_data_with_a_reason_each():
    keys = [row.key for row in CAUSE_ORDER]
    assert len(keys) == len(set(keys)) and all(row.why for row in CAUSE_ORDER)
    assert keys.index("torch") < keys.index("cuda") < keys.index("model")
    assert keys.index("cache-place") < keys.index("model-files") < keys.index("network")


def test_fresh_venv_first_says_this_is_not_the_serving_environment():
    facts = {"ldm": {"found": False}, "environment": {"python": {"prefix": "/tmp/bare"}}}
    actions = build_actions(fresh_venv_findings(), Options(), facts)
    assert [a.key for a in actions] == ["not-serving-env", "model-files"]
    first = actions[0]
    assert first.title == "Run the checks in the environment that serves the model"
    assert first.codes == ["env.torch-missing", "env.transformers-missing", "env.packages"]
    assert "/tmp/bare has none of torch, transformers and ldm" in first.steps[0].text
    assert "conda activate" in first.steps[0].code and "docker exec" in first.steps[0].code
    # the install hints are secondary, after the environment step
    assert "pip install torch" in " ".join(s.text for s in first.secondary)
    assert "pip install torch" not in " ".join(s.text + (s.code or "") for s in first.steps)
    # the Hub failure is part of the missing-files cause, not a step of its own
    assert actions[1].codes == ["cache.model-missing", "cache.offline-flag", "hub.dns"]


def test_with_ldm_present_a_missing_torch_comes_before_cuda():
    findings = [fail("cuda.available", "CUDA not available", "reinstall torch with CUDA"),
                fail("env.torch-missing", "torch is not installed", "pip install torch")]
    actions = build_actions(findings, Options(), {"ldm": {"found": True}})
    assert [a.key for a in actions] == ["torch", "cuda"]
    assert actions[0].title == "Install torch"


def test_seed_case_without_a_checkpoint_offers_provision_clip_before_any_download():
    findings = [fail("hub.connect", "port closed", "provision the files instead"),
                fail("cache.offline-flag", "offline, not cached", "Download the files first"),
                fail("cache.model-missing", "vocab.json missing", "1. hf download x\n2. start with `HF_HUB_OFFLINE=1`",
                     model=CLIP),
                fail("tokenizer.functional", "vocabulary 2", "1. hf download x"),
                fail("model.instantiate", f"FrozenCLIPEmbedder cannot load '{CLIP}'", "hf download x"),
                warn("compat.torch-weights-only-default", "weights_only default", "convert the checkpoint")]
    actions = build_actions(findings, Options(), {"ldm": {"found": True}})
    assert [a.key for a in actions] == ["model-files", "packages"]
    assert actions[0].blocking and not actions[1].blocking
    assert actions[0].title == f"Make {CLIP} loadable on this machine"
    assert actions[0].codes == ["cache.model-missing", "cache.offline-flag", "tokenizer.functional",
                                "hub.connect", "model.instantiate"]
    first, otherwise, download = actions[0].steps[:3]
    assert first.text.startswith("If you have the SD 1.x checkpoint")
    assert first.code == "python -m diagnostics provision-clip --checkpoint MODEL.ckpt --hf-cache"
    assert otherwise.text == "Otherwise:" and download.text == "hf download x"


def test_a_known_checkpoint_is_named_in_the_provision_step_once():
    from diagnostics.rules.cache import PROVISION_TEXT

    rule_fix = (f"{PROVISION_TEXT}\n```bash\npython -m diagnostics provision-clip --checkpoint /m/sd15.ckpt "
                "--hf-cache\n```\nOtherwise:\n1. hf download x")
    findings = [fail("cache.model-missing", "vocab.json missing", rule_fix, model=CLIP)]
    facts = {"checkpoint": {"text_encoder": {"present": True, "kind": "clip-l"}}}
    steps = build_actions(findings, Options(checkpoint="/m/sd15.ckpt"), facts)[0].steps
    assert steps[0].code == "python -m diagnostics provision-clip --checkpoint /m/sd15.ckpt --hf-cache"
    assert steps[0].text == PROVISION_TEXT
    assert [s.text for s in steps[1:]] == ["Otherwise:", "hf download x"]  # the rule's own hint is not repeated
    from_config = {"ldm_config": {"data": {"model": {"params": {"ckpt_path": "/m/from-config.ckpt"}}}}}
    steps = build_actions(findings, Options(), from_config)[0].steps
    assert "--checkpoint /m/from-config.ckpt" in steps[0].code


def test_no_provision_step_when_the_checkpoint_has_no_text_encoder():
    findings = [fail("cache.model-missing", "vocab.json missing", "1. hf download x", model=CLIP)]
    facts = {"checkpoint": {"text_encoder": {"present": False}}}
    steps = build_actions(findings, Options(checkpoint="/m/no-clip.ckpt"), facts)[0].steps
    assert "provision-clip" not in " ".join(s.text + (s.code or "") for s in steps)


def test_headline_counts_causes_and_markdown_opens_with_the_list():
    findings = fresh_venv_findings()
    ctx = Context(Options(), environ={})
    ctx.set_fact("ldm", {"found": False})
    report = build_report([CheckResult(Check(f.code, f.title, lambda c: []), [f]) for f in findings], ctx)
    assert report.issue == ("2 blocking causes (5 failing checks); first: "
                            "Run the checks in the environment that serves the model")
    md = render_markdown(report)
    head = md[:md.index("## 🚨 Original Problem")]
    assert head.index("## 👉 What to Do") < head.index("## 📊 Summary by Area")
    assert "1. **Run the checks in the environment that serves the model**" in head
    assert "2. **Make openai/clip-vit-large-patch14 loadable on this machine**" in head
    assert "## ✅ Verification" not in md  # nothing was fixed, so nothing to verify


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_seed_scenario_for_real_has_one_blocking_cause_first(tmp_path):
    """Empty cache, offline, no network, the real checks: one CLIP step, provision-clip before downloads."""
    environ = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "HF_HOME": str(tmp_path / "hf"),
               "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"}
    ctx = Context(Options(timeout=60), environ=environ, cwd=tmp_path)
    results = run_checks(ctx)
    report = build_report(results, ctx)
    blocking = [a for a in report.actions if a.blocking]
    needed = {f.code for f in report.findings if f.blocking}
    if "cache.model-missing" not in needed:
        pytest.skip("the cache checks do not report the missing CLIP files in this environment")
    if blocking[0].key == "not-serving-env":  # no torch, transformers or ldm here (e.g. the Python 3.8 job)
        blocking = blocking[1:]
    assert blocking[0].key == "model-files"
    assert {"cache.model-missing", "cache.offline-flag"} <= set(blocking[0].codes)
    assert "provision-clip" in (blocking[0].steps[0].code or "")
    md = render_markdown(report)
    assert md.index("provision-clip --checkpoint MODEL.ckpt") < md.index("hf download")
    remaining = md[md.index("### ⚠️ Remaining Issues"):md.index("## 🔄 Recommendations")]
    for code in needed:
        assert f"(`{code}`)" in remaining  # every blocking failure, not only the warnings
