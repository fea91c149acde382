"""How a fix reaches a person: one parser of the rules' fix text, one renderer per format.

A multi-line YAML fix keeps its lines in Markdown (a fenced block), HTML (<pre><code>), the terminal
(indented) and pytest-html (the same HTML); prose stays prose; Markdown holds no HTML entity.
"""

import html
import re

from diagnostics.context import Context, Options
from diagnostics.findings import Finding, FixStep, Status, parse_fix
from diagnostics.registry import Check, CheckResult
from diagnostics.report.build import build_report
from diagnostics.report.fixes import fix_html_text, fix_markdown, fix_terminal, md_inline, user_text
from diagnostics.report.render import render_html, render_markdown
from diagnostics.report.terminal import ASCII_MARKS, render_terminal

# The shape cache.model-missing writes today: numbered steps, a YAML block flush left after "...:".
RULE_TEXT = (
    "1. hf download openai/clip-vit-large-patch14 vocab.json --local-dir /models/clip (on any machine with "
    "network; copy the folder here), then in v1-inference.yaml set `model.params.cond_stage_config.params.version`:\n"
    "model:\n"
    "  params:\n"
    "    cond_stage_config:\n"
    "      params:\n"
    "        version: /models/clip\n"
    "2. start with `HF_HUB_OFFLINE=1`\n"
    "Or use a mirror: `export HF_ENDPOINT=https://<mirror>`"
)
YAML = "model:\n  params:\n    cond_stage_config:\n      params:\n        version: /models/clip"
# The shape rules are asked to write: fences with a language.
FENCED_TEXT = "Set the local folder in the config:\n```yaml\n" + YAML + "\n```\nThen restart the server."


def test_the_rules_text_parses_into_prose_and_code_steps():
    steps = parse_fix(RULE_TEXT)
    assert [s.number for s in steps] == [1, 2, None]
    assert steps[0].code == YAML and steps[0].lang == "yaml"
    assert steps[0].text.endswith("set `model.params.cond_stage_config.params.version`:")
    assert steps[1] == FixStep("start with `HF_HUB_OFFLINE=1`", number=2)
    assert parse_fix(FENCED_TEXT) == [FixStep("Set the local folder in the config:", YAML, "yaml"),
                                      FixStep("Then restart the server.")]
    assert parse_fix("pip install torch") == [FixStep("pip install torch")]
    assert parse_fix("") == []


def test_indented_code_under_prose_is_a_block_and_the_language_is_guessed():
    steps = parse_fix("Run:\n    python -m diagnostics report\nor in Python:\n    import torch\n    torch.cuda.init()")
    assert [(s.code, s.lang) for s in steps] == [("python -m diagnostics report", "shell"),
                                                 ("import torch\ntorch.cuda.init()", "python")]


def test_markdown_gets_fenced_yaml_and_no_html_entities():
    lines = fix_markdown(RULE_TEXT)
    text = "\n".join(lines)
    assert "   ```yaml\n   model:\n     params:\n       cond_stage_config:" in text  # inside the list item
    assert lines[0].startswith("1. hf download")
    assert "2. start with `HF_HUB_OFFLINE=1`" in lines
    assert "`export HF_ENDPOINT=https://<mirror>`" in text  # in a code span: verbatim
    assert "&lt;" not in text and "&amp;" not in text
    assert md_inline("a <b> tag & &amp; `x <y>`") == "a \\<b> tag & \\&amp; `x <y>`"


def test_html_gets_prose_as_text_and_code_in_pre_code():
    fragment = fix_html_text(RULE_TEXT)
    assert '<pre><code class="language-yaml">' + html.escape(YAML, quote=False) + "</code></pre>" in fragment
    assert "set <code>model.params.cond_stage_config.params.version</code>:" in fragment
    assert "<code>export HF_ENDPOINT=https://&lt;mirror&gt;</code>" in fragment
    assert "`" not in fragment  # no literal backticks: code spans became <code>
    hostile = fix_html_text("run `<script>alert(1)</script>` now <img src=x onerror=alert(2)>")
    assert "<script>" not in hostile and "<img" not in hostile


def test_terminal_keeps_the_yaml_lines_indented_under_the_fix():
    lines = fix_terminal(RULE_TEXT, "fix: ", "     ")
    assert lines[0].startswith("fix: 1. hf download")
    assert lines[1:6] == ["         model:", "           params:", "             cond_stage_config:",
                          "               params:", "                 version: /models/clip"]
    assert lines[6] == "     2. start with `HF_HUB_OFFLINE=1`"


def test_pytest_html_extras_use_the_same_html():
    from diagnostics.pytest_plugin import _extras_html

    finding = Finding("cache.model-missing", Status.FAIL, "CLIP files", "missing", fix=FENCED_TEXT,
                      evidence={"where": "/hf/hub"})
    extras = _extras_html(CheckResult(Check("cache.model-missing", "t", lambda ctx: []), [finding]))
    assert fix_html_text(FENCED_TEXT) in extras
    assert "<details><summary>evidence</summary>" in extras


def _report(findings, options=None, facts=None):
    ctx = Context(options or Options(), environ={})
    for name, value in (facts or {}).items():
        ctx.set_fact(name, value)
    results = [CheckResult(Check(f.code, f.title, lambda c: []), [f]) for f in findings]
    return build_report(results, ctx)


def test_the_report_renders_a_multiline_yaml_fix_in_every_format():
    finding = Finding("cache.model-missing", Status.FAIL, "Text encoder files", "vocab.json is missing",
                      fix=RULE_TEXT, evidence={"model": "openai/clip-vit-large-patch14"})
    report = _report([finding])
    md = render_markdown(report)
    assert "```yaml\n" in md and "        version: /models/clip" in md
    assert "version`: model:   params:" not in md  # the old flattening
    assert "&lt;" not in md
    page = render_html(report)
    assert '<pre><code class="language-yaml">model:\n  params:' in page
    terminal = "\n".join(render_terminal(report.results, ASCII_MARKS, actions=report.actions))
    assert "\n             model:\n               params:" in terminal


def test_internal_references_never_reach_the_user():
    assert user_text("retries for minutes (knowledge base K29). Then") == "retries for minutes. Then"
    assert user_text("fails (K01 d).") == "fails."
    assert user_text("(knowledge base finding 4); or") == "; or"
    finding = Finding("hub.http-status", Status.FAIL, "HTTP status", "retried (K29)",
                      cause="huggingface_hub retries 5xx with back-off (knowledge base K29).", fix="wait")
    report = _report([finding])
    for text in (render_markdown(report), render_html(report)):
        assert not re.search(r"K29|knowledge base", text)


def test_markdown_report_never_writes_an_html_entity():
    finding = Finding("hub.dns", Status.FAIL, "Hub host name resolves", "no route <here>",
                      fix="use a reachable mirror: `export HF_ENDPOINT=https://<mirror>` or a <proxy> & retry")
    md = render_markdown(_report([finding]))
    assert not re.search(r"&(lt|gt|amp|quot|#\d+);", md)
    assert "`export HF_ENDPOINT=https://<mirror>`" in md and "a \\<proxy> & retry" in md
