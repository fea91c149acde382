"""The check runner and the report builder on hand-made results."""

import datetime as dt
import json
import re

import pytest

from diagnostics.context import Context, Options
from diagnostics.findings import Finding, Status
from diagnostics.registry import Check, CheckResult, all_checks, run_check
from diagnostics.report.build import build_report, report_status
from diagnostics.report.render import render_html, render_json, render_markdown
from diagnostics.report.terminal import ASCII_MARKS, render_terminal


def _result(code, status, summary="s", fix="", blocking=None, **evidence):
    check = Check(code, code.replace(".", " "), lambda ctx: [], reads=("ctx",))
    return CheckResult(check, [Finding(code, status, code + " title", summary, evidence=evidence, fix=fix,
                                       blocking=blocking)])


def test_a_crashing_check_becomes_an_error_finding():
    def boom(ctx):
        raise KeyError("nvml")
    result = run_check(Check("cuda.available", "CUDA", boom, reads=("ctx",)), Context(Options(), environ={}))
    (f,) = result.findings
    assert f.status is Status.ERROR and not f.blocking
    assert "KeyError" in f.summary and "Traceback" in f.evidence["traceback"]


def test_a_check_returning_nothing_is_an_error_not_a_pass():
    result = run_check(Check("env.x", "x", lambda ctx: [], reads=("ctx",)), Context(Options(), environ={}))
    assert result.status is Status.ERROR


def test_check_ids_are_unique_and_areas_known():
    ids = [c.id for c in all_checks()]
    assert len(ids) == len(set(ids))
    assert {c.area for c in all_checks()} >= {"env", "compat", "cuda"}


def test_report_status_is_derived_from_findings():
    ok = Finding("a.b", Status.OK, "t", "s")
    warn = Finding("a.c", Status.WARN, "t", "s")
    fail = Finding("a.d", Status.FAIL, "t", "s")
    assert report_status([ok]) == "RESOLVED"
    assert report_status([ok, warn]) == "DEGRADED"
    assert report_status([ok, warn, fail]) == "UNRESOLVED"
    assert report_status([Finding("a.e", Status.FAIL, "t", "s", blocking=False)]) == "RESOLVED"


def test_report_sections_are_filled_and_escaped():
    results = [
        _result("env.python", Status.OK, "CPython 3.8"),
        _result("cache.model-missing", Status.FAIL, "missing <script>alert(1)</script>", fix="hf download x",
                path="<img src=x onerror=alert(1)>"),
        _result("compat.xformers-missing", Status.INFO, "no xformers", fix="pip install xformers"),
        _result("compat.torch-weights-only-default", Status.WARN, "torch 2.6", fix="convert"),
        _result("cuda.available", Status.SKIP, "No NVIDIA GPU found; CUDA checks did not run."),
    ]
    ctx = Context(Options(checkpoint="model.ckpt"), environ={})
    report = build_report(results, ctx, written=["reports/resolution-report.md"], now=dt.datetime(2026, 1, 2, 3, 4))
    assert report.status == "UNRESOLVED"
    assert [f.code for f in report.root_causes] == ["cache.model-missing"]
    assert [s.code for s in report.solution] == ["cache.model-missing", "compat.torch-weights-only-default"]
    # every unresolved blocking failure, then the warnings
    assert [f.code for f in report.remaining] == ["cache.model-missing", "compat.torch-weights-only-default"]
    assert any("CUDA checks did not run" in r for r in report.recommendations)
    assert [(path, role) for path, role, _ in report.files] == [("model.ckpt", "checkpoint")]  # not the report itself
    md, page, js = render_markdown(report), render_html(report), render_json(report)
    assert "**Status**: ❌ UNRESOLVED" in md and "2026-01-02 03:04" in md
    # Markdown: a backslash before `<` (CommonMark shows it as text), never an HTML entity
    assert re.search(r"(?<!\\)<script", md) is None and "missing \\<script>alert(1)\\</script>" in md
    assert "&lt;" not in md
    assert "<script>" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    data = json.loads(js)
    assert data["schema"] == "ldm-diagnostics/1" and data["blocking"] == ["cache.model-missing"]
    assert data["findings"][1]["evidence"]["path"] == "<img src=x onerror=alert(1)>"  # JSON keeps data as data
    assert "Checkpoint Analysis" in md and "No checkpoint was checked" not in md  # a checkpoint was given
    assert "Nothing was checked here." in md  # ...but no checkpoint check produced a finding


def test_empty_sections_say_so_in_one_line():
    report = build_report([_result("env.python", Status.OK)], Context(Options(), environ={}))
    md = render_markdown(report)
    assert "No checkpoint was checked (pass --checkpoint or set LDM_DIAG_CHECKPOINT)." in md
    assert "The model was not instantiated" in md
    assert "No error log was given" in md and "Nothing to fix." in md
    assert report.status == "RESOLVED"


def test_original_problem_is_quoted_with_its_location():
    problem = {"error_message": "OSError: Can't load tokenizer for 'openai/clip-vit-large-patch14'.",
               "file": "/app/ldm/modules/encoders/modules.py", "qualname": "FrozenCLIPEmbedder.__init__",
               "line": 103, "code": "self.tokenizer = CLIPTokenizer.from_pretrained(version)"}
    report = build_report([_result("env.python", Status.OK)], Context(Options(), environ={}), original_problem=problem)
    md = render_markdown(report)
    assert "- **Class**: `FrozenCLIPEmbedder.__init__()`" in md
    assert "- **Line**: 103 - `self.tokenizer = CLIPTokenizer.from_pretrained(version)`" in md
    assert report.issue.startswith("OSError: Can't load tokenizer")


def test_markdown_fences_cannot_be_closed_by_content():
    from diagnostics.report.render import _fence

    text = "before\n```\nafter"
    fenced = _fence(text)
    assert fenced.startswith("````\n") and fenced.endswith("\n````")


def test_terminal_summary_is_one_line_per_area_with_hints():
    results = [_result("env.python", Status.OK), _result("env.torch-missing", Status.FAIL, "torch absent", fix="pip install torch"),
               _result("cuda.available", Status.SKIP, "No NVIDIA GPU.")]
    lines = render_terminal(results, ASCII_MARKS)
    assert lines[0] == "[x] Environment (1/2 passed)"
    assert lines[1] == "    x env.torch-missing: torch absent"
    assert lines[2] == "      fix: pip install torch"
    assert lines[3] == "[-] GPU / CUDA: No NVIDIA GPU."
    assert lines[-1] == "Found issues in 1 area."


def test_a_remedy_shows_before_and_after_in_solution_and_verification():
    from diagnostics.report.build import Remedy

    before = [Finding("tokenizer.functional", Status.FAIL, "t", "vocabulary 2"),
              Finding("cache.model-missing", Status.FAIL, "c", "vocab.json missing")]
    after = [Finding("tokenizer.functional", Status.OK, "t", "vocabulary 49408, 7 ids"),
             Finding("cache.model-missing", Status.OK, "c", "all files resolve offline")]
    remedy = Remedy("Provision CLIP offline", ["wrote vocab.json", "wrote model.safetensors"], before, after,
                    files=[("hf/hub/models--openai--clip-vit-large-patch14", "provisioned")],
                    transcript="tokenizer vocab 49408")
    results = [CheckResult(Check(f.code, f.title, lambda ctx: [], reads=("ctx",)), [f]) for f in after]
    report = build_report(results, Context(Options(), environ={}), remedies=[remedy])
    md, page = render_markdown(report), render_html(report)
    assert report.status == "RESOLVED"
    assert "### Done: Provision CLIP offline" in md and "1. wrote vocab.json" in md
    assert "| `tokenizer.functional` | ❌ fail | ✅ ok | vocabulary 49408, 7 ids |" in md
    assert "#### Test Script Output" in md and "Nothing to fix." not in md
    assert "Re-checked after: Provision CLIP offline" in page
    assert json.loads(render_json(report))["remedies"][0]["changes"][0] == {
        "code": "tokenizer.functional", "before": "fail", "after": "ok", "summary": "vocabulary 49408, 7 ids"}


def test_checkpoint_section_has_a_facts_table_and_an_inline_svg_chart():
    components = {
        "unet": {"bytes": 1_719_071_928, "bytes_by_dtype": {"float16": 1_719_071_928}},
        "text_encoder": {"bytes": 246_121_576, "bytes_by_dtype": {"float16": 246_120_960, "int64": 616}},
        "vae": {"bytes": 167_335_342, "bytes_by_dtype": {"float32": 167_335_342}},
    }
    ctx = Context(Options(checkpoint="m.ckpt"), environ={})
    ctx.set_fact("checkpoint", {
        "format": "torch-zip", "size_bytes": 4_265_000_000, "safe": True, "family": "sd1", "variant": "inpainting",
        "unet_in_channels": 9, "tensors_total": 1831, "parameters_total": 1_066_235_307,
        "text_encoder": {"present": True, "kind": "clip-l"}, "ema": {"present": True},
        "components": components})
    report = build_report([_result("ckpt.format", Status.OK)], ctx)
    assert ("Family / variant", "sd1 / inpainting") in report.checkpoint_table
    assert [b["component"] for b in report.checkpoint_chart] == ["unet", "text_encoder", "vae"]
    chart = report.checkpoint_chart
    widest = max(bar["end"] for bar in chart)
    assert chart[0]["end"] == widest
    # the largest bar spans the chart's full width whatever the checkpoint's size
    small = Context(Options(checkpoint="m.ckpt"), environ={})
    small.set_fact("checkpoint", {"components": {name: {"bytes": c["bytes"] // 1000, "bytes_by_dtype": {
        dtype: n // 1000 for dtype, n in c["bytes_by_dtype"].items()}} for name, c in components.items()}})
    assert build_report([_result("ckpt.format", Status.OK)], small).checkpoint_chart[0]["end"] == widest
    largest = max(c["bytes"] for c in components.values())
    for bar in chart:  # each bar is as long as its share of the largest component, and its segments abut
        assert abs(bar["end"] - widest * components[bar["component"]]["bytes"] / largest) <= 0.5
        ends = [seg["x"] + seg["w"] for seg in bar["segments"]]
        assert [seg["x"] for seg in bar["segments"][1:]] == pytest.approx(ends[:-1], abs=0.1)
    page = render_html(report)
    assert "<svg" in page and "<title>unet float16: 1.6 GiB</title>" in page
    svg_width = float(re.search(r'<svg[^>]* width="([\d.]+)"', page).group(1))
    right_edges = [float(x) + float(w) for x, w in re.findall(r'<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)"', page)]
    assert max(right_edges) <= svg_width  # the widest bar is drawn inside the figure
    segments = sum(len(bar["segments"]) for bar in chart)
    dtypes = {seg["dtype"] for bar in chart for seg in bar["segments"]}
    assert page.count("<rect") == segments + len(dtypes)  # one rect per segment, one legend swatch per dtype
    md = render_markdown(report)
    assert "| text_encoder | 234.7 MiB | float16 234.7 MiB, int64 616 B |" in md


def test_every_registered_check_is_in_the_code_catalog():
    from pathlib import Path

    catalog = (Path(__file__).resolve().parents[1] / "docs" / "finding-codes.md").read_text(encoding="utf-8")
    missing = [c.id for c in all_checks() if f"`{c.id}`" not in catalog]
    assert missing == []


def test_model_instantiation_section_shows_time_memory_params_keys_and_smoke():
    ctx = Context(Options(config="v1-inpainting-inference.yaml"), environ={})
    ctx.set_fact("model", {"stages": {
        "import": {"seconds": 5.05},
        "instantiate": {"seconds": 0.34, "meta": True, "class": "ldm.models.diffusion.ddpm.LatentInpaintDiffusion",
                        "components": {"model": {"parameters": 859_535_364, "tensors": 686}},
                        "rss_peak_bytes": 2 * 2**30},
        "load": {"seconds": 0.07, "loaded": 1143, "checkpoint_tensors": 1143, "missing": {"count": 688},
                 "unexpected": {"count": 1}, "mismatched": {"count": 0}},
        "device": {"seconds": 14.4, "device": "cuda", "dtype": "float16", "max_memory_allocated": 2_200_000_000},
        "smoke": {"parts": {"unet": {"shape": [1, 4, 64, 64], "finite": True, "seconds": 0.1},
                            "vae": {"shape": [1, 3, 512, 512], "finite": False}}},
    }})
    report = build_report([_result("model.instantiate", Status.OK)], ctx)
    rows = dict(report.model_table)
    assert rows["Parameters: model"] == "859.54 M (686 tensors)"  # the seed's "DiffusionWrapper has 859.54 M params"
    # every stage the child timed, smoke (the sum of its parts) included, as the progress line shows them
    assert rows["Time"] == "import 5.05 s, instantiate 0.34 s, load 0.07 s, device 14.40 s, smoke 0.10 s (total 19.96 s)"
    assert rows["Checkpoint keys"] == "1143 of 1143 loaded; 688 missing, 1 unexpected, 0 size mismatches"
    assert rows["GPU memory (max allocated)"] == "2.0 GiB"
    assert rows["Smoke forward: vae"] == "1x3x512x512 NOT finite"
    assert "| Smoke forward: unet | 1x4x64x64 finite, 0.10 s |" in render_markdown(report)
