"""Confirmation and ranking: a match is a hypothesis until the checks behind it say so.

These tests hand `explain_text` made-up checks (the `checks=` seam) and made-up installed
versions (the context's `environment` fact), so every outcome is decided by the test's world.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diagnostics import registry
from diagnostics.context import Context
from diagnostics.knowledge.explain import explain_text
from diagnostics.findings import Finding, Status
from diagnostics.registry import Check, CheckResult

from .rules_helpers import environment_facts, python_facts

LOGS = Path(__file__).parent / "logs"
SEED_LOG = (LOGS / "seed_clip_tokenizer.log").read_text()
K04_LOG = (LOGS / "doc_k04_torchmetrics_get_num_classes.log").read_text()
K03_LOG = (LOGS / "real" / "k03_pl2_ldm_import.log").read_text()

VERSIONS = {"torch": "2.14.1", "transformers": "4.19.2", "huggingface_hub": "0.10.1", "pytorch_lightning": "1.4.2",
            "torchmetrics": "0.6.0", "numpy": "1.23.1", "xformers": None, "protobuf": "3.20.3"}


def make_ctx(tmp_path, **versions) -> Context:
    ctx = Context(environ={"HOME": str(tmp_path)}, cwd=tmp_path)
    packages = dict(VERSIONS, **versions)
    ctx.set_fact("environment", environment_facts(packages, python=python_facts(version="3.10.12")))
    ctx.set_fact("ldm", {"found": False, "path": None})
    return ctx


def check(code: str, status: str, summary: str = "", calls=None) -> Check:
    def run(ctx):
        if calls is not None:
            calls.append(code)
        return [Finding(code, Status(status), code, summary or f"{code} says {status}", evidence={"probe": code})]

    return Check(code, code, run, reads=("ctx",))


def match(explanation, sig_id):
    return next(m for m in explanation.matches if m.signature.id == sig_id)


def test_offline_flag_with_empty_cache_is_the_confirmed_cause(tmp_path):
    checks = [check("cache.offline-flag", "fail", "Offline mode is on, but openai/clip-vit-large-patch14 is not cached"),
              check("cache.model-missing", "fail"), check("hub.dns", "ok"), check("hub.connect", "ok"),
              check("cache.shadowing-dir", "ok"), check("tokenizer.functional", "fail")]
    e = explain_text(SEED_LOG, make_ctx(tmp_path), checks=checks)
    k01 = match(e, "K01")
    assert k01.status == "confirmed" and k01.rank == 1
    assert [c.cause.id for c in k01.causes][0] == "K01.b"
    assert {c.cause.id: c.status for c in k01.causes}["K01.a"] == "refuted"
    assert "confirmed by cache.offline-flag: Offline mode is on" in k01.summary()
    finding = next(f for f in e.findings() if f.code == "explain.signature" and f.evidence["signature"] == "K01")
    assert finding.status is Status.FAIL and finding.blocking
    assert e.blocking


def test_no_network_ranks_the_network_cause_first(tmp_path):
    checks = [check("hub.dns", "fail", "huggingface.co does not resolve"), check("cache.model-missing", "fail"),
              check("cache.offline-flag", "ok"), check("tokenizer.functional", "fail")]
    k01 = match(explain_text(SEED_LOG, make_ctx(tmp_path), checks=checks), "K01")
    ranked = [(c.cause.id, c.status) for c in k01.causes]
    assert ranked[0] == ("K01.a", "confirmed")
    assert ("K01.b", "refuted") in ranked
    # Undecided causes come after confirmed ones and before refuted ones.
    order = [c.status for c in k01.causes]
    assert order == sorted(order, key=["confirmed", "likely", "unverified", "refuted"].index)


def test_codes_without_a_registered_check_are_said_so(tmp_path):
    e = explain_text(SEED_LOG, make_ctx(tmp_path), checks=[])
    k01 = match(e, "K01")
    assert k01.status == "unverified" and not k01.blocking
    assert "no check for tokenizer.functional on this installation yet" in k01.statements("unavailable")
    finding = next(f for f in e.findings() if f.code == "explain.signature" and f.evidence["signature"] == "K01")
    assert finding.status is Status.WARN and not finding.blocking
    assert not e.blocking


def test_failure_that_does_not_reproduce_here_is_not_confirmed(tmp_path):
    checks = [check("tokenizer.functional", "ok", "vocabulary 49408, 'a photo of a dog' -> 7 ids"),
              check("cache.offline-flag", "fail"), check("cache.model-missing", "fail")]
    e = explain_text(SEED_LOG, make_ctx(tmp_path), checks=checks)
    k01 = match(e, "K01")
    assert k01.status == "refuted" and not e.blocking
    assert "but not confirmed here (tokenizer.functional: vocabulary 49408" in k01.summary()
    assert "not confirmed here: tokenizer.functional: vocabulary 49408, 'a photo of a dog' -> 7 ids" in k01.statements(
        "refuted")
    finding = next(f for f in e.findings() if f.code == "explain.signature" and f.evidence["signature"] == "K01")
    assert finding.status is Status.INFO


def test_a_crashed_check_leaves_the_question_open(tmp_path):
    def boom(ctx):
        raise RuntimeError("probe exploded")

    k01 = match(explain_text(SEED_LOG, make_ctx(tmp_path), checks=[Check("tokenizer.functional", "t", boom, reads=("ctx",))]), "K01")
    repro = k01.reproduce[0]
    assert repro.outcome == "open" and repro.status == "error"
    assert repro.statement.startswith("not decided by tokenizer.functional (error)")
    assert k01.status == "unverified"


@pytest.mark.parametrize("torchmetrics, outcome", [("0.11.4", "confirmed"), ("0.6.0", "refuted")])
def test_installed_versions_decide_when_no_check_exists(tmp_path, torchmetrics, outcome):
    e = explain_text(K04_LOG, make_ctx(tmp_path, pytorch_lightning="1.4.2", torchmetrics=torchmetrics), checks=[])
    k04 = match(e, "K04")
    assert k04.causes[0].status == outcome
    need = k04.causes[0].needs[0]
    assert need.by == "installed versions" and f"torchmetrics {torchmetrics}" in need.summary
    assert k04.status == outcome


def test_a_check_outranks_the_version_rule(tmp_path):
    # pytorch_lightning 2.x lacks the import, but this ldm does not import it from there.
    checks = [check("compat.pl-rank-zero-only", "ok", "the ldm code here does not import it from there")]
    k03 = match(explain_text(K03_LOG, make_ctx(tmp_path, pytorch_lightning="2.6.6"), checks=checks), "K03")
    assert k03.causes[0].status == "refuted"
    assert k03.causes[0].needs[0].by == "compat.pl-rank-zero-only"
    k03 = match(explain_text(K03_LOG, make_ctx(tmp_path, pytorch_lightning="2.6.6"), checks=[]), "K03")
    assert k03.causes[0].status == "confirmed" and k03.blocking


def test_results_the_caller_already_has_are_not_run_again(tmp_path):
    calls = []
    tok = check("tokenizer.functional", "fail", calls=calls)
    prior = [CheckResult(tok, [Finding("tokenizer.functional", Status.FAIL, "t", "vocabulary 2")])]
    k01 = match(explain_text(SEED_LOG, make_ctx(tmp_path), checks=[tok], results=prior), "K01")
    assert calls == []
    assert k01.reproduce[0].summary == "vocabulary 2"


def test_each_check_runs_once_even_when_several_causes_ask(tmp_path):
    calls = []
    explain_text(SEED_LOG, make_ctx(tmp_path), checks=[check("cache.model-missing", "fail", calls=calls)])
    assert calls == ["cache.model-missing"]


def test_a_code_emitted_by_a_check_of_another_name_is_found(tmp_path):
    def probe(ctx):
        return [Finding("hub.dns", Status.FAIL, "dns", "huggingface.co does not resolve"),
                Finding("hub.connect", Status.SKIP, "connect", "not reached")]

    checks = [Check("hub.network", "network", probe, reads=("ctx",)), check("cache.model-missing", "fail")]
    k01 = match(explain_text(SEED_LOG, make_ctx(tmp_path), checks=checks), "K01")
    cause = next(c for c in k01.causes if c.cause.id == "K01.a")
    assert cause.status == "confirmed"
    assert cause.needs[0].by == "hub.dns"


def test_confirmation_can_be_switched_off(tmp_path):
    calls = []
    e = explain_text(SEED_LOG, make_ctx(tmp_path), checks=[check("tokenizer.functional", "fail", calls=calls)],
                     confirm_causes=False)
    assert calls == [] and not e.confirmed_run
    assert match(e, "K01").reproduce[0].outcome == "unavailable"


def test_a_check_module_that_does_not_import_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "CHECK_MODULES", ("diagnostics.rules.compat", "diagnostics.rules.no_such_area"))
    e = explain_text(K03_LOG, make_ctx(tmp_path, pytorch_lightning="2.6.6"))
    assert any("diagnostics.rules.no_such_area" in err for err in e.check_module_errors)
    assert match(e, "K03").causes[0].needs[0].by == "compat.pl-rank-zero-only"


def test_the_failure_s_signature_ranks_before_side_notes(tmp_path):
    checks = [check("compat.xformers-missing", "info", "xformers is not installed")]
    e = explain_text(SEED_LOG, make_ctx(tmp_path), checks=checks)
    assert [m.signature.id for m in e.matches] == ["K01", "K10"]
    k10 = match(e, "K10")
    assert k10.status == "confirmed" and not k10.blocking
    assert [f.status for f in e.findings() if f.code == "explain.signature"] == [Status.WARN, Status.WARN]


def test_wording_of_another_version_is_pointed_out(tmp_path):
    hit = match(explain_text(SEED_LOG, make_ctx(tmp_path, transformers="5.24.0"), checks=[]), "K01").hits[0]
    assert "transformers <5" in hit.wording_note and "transformers 5.24.0" in hit.wording_note
    hit = match(explain_text(SEED_LOG, make_ctx(tmp_path, transformers="4.19.2"), checks=[]), "K01").hits[0]
    assert hit.wording_note == ""


def test_deprecation_warning_variant_never_blocks(tmp_path):
    log = (LOGS / "real" / "k03_k10_ldm_import.log").read_text()
    checks = [check("compat.pl-rank-zero-only", "fail")]
    e = explain_text(log, make_ctx(tmp_path, pytorch_lightning="2.0.0"), checks=checks)
    k03 = match(e, "K03")
    assert k03.status == "confirmed" and not k03.blocking and not e.blocking


def test_secrets_in_the_log_and_the_environment_are_not_echoed(tmp_path):
    token = "hf_" + "a1B2c3D4e5" * 4
    own = "s3cr3t-value-of-this-machine"
    log = (f"export HF_TOKEN={token}\n"
           "Authorization: Bearer abcdefghijklmnop123\n"
           f"using proxy http://alice:hunter2pass@proxy.corp:3128 with key {own}\n" + SEED_LOG)
    ctx = make_ctx(tmp_path)
    ctx.environ["MY_API_TOKEN"] = own
    e = explain_text(log, ctx, checks=[])
    dumped = json.dumps(e.to_dict())
    for secret in (token, "abcdefghijklmnop123", "hunter2pass", own):
        assert secret not in dumped
    assert "export HF_TOKEN=***" in e.parsed.lines


def test_hostile_html_is_kept_as_plain_text_and_long_lines_are_capped(tmp_path):
    log = ('Traceback (most recent call last):\n  File "/app/x.py", line 1, in <module>\n    load()\n'
           'ValueError: <script>alert("x")</script>' + "A" * 10000 + "\n")
    e = explain_text(log, make_ctx(tmp_path), checks=[])
    message = e.original_problem["error_message"]
    assert message.startswith('ValueError: <script>alert("x")</script>')
    assert len(message) < 5000
    assert any(f.code == "explain.unmatched" and f.status is Status.WARN and not f.blocking for f in e.findings())


def test_a_log_without_traceback_gets_a_clear_finding(tmp_path):
    e = explain_text("server started\nlistening on 0.0.0.0:7860\n", make_ctx(tmp_path), checks=[])
    findings = e.findings()
    assert [f.code for f in findings] == ["explain.no-traceback"]
    assert findings[0].status is Status.INFO and not findings[0].blocking
    assert findings[0].summary.startswith("No Python traceback found in the log (2 lines read).")
    assert e.original_problem is None and e.matches == []


def test_to_dict_is_json_with_the_schema_and_the_location(tmp_path):
    e = explain_text(SEED_LOG, make_ctx(tmp_path), checks=[check("tokenizer.functional", "fail")])
    data = json.loads(json.dumps(e.to_dict()))
    assert data["schema"] == "ldm-diagnostics/1"
    assert data["original_problem"]["qualname"] == "FrozenCLIPEmbedder.__init__"
    assert data["matches"][0]["signature"] == "K01"
    assert data["matches"][0]["codes"][0] == "tokenizer.functional"
    assert data["root_causes"][0]["status"] == "confirmed"
    assert {f["code"] for f in data["findings"]} >= {"explain.traceback", "explain.signature"}


K05_LOG = (LOGS / "real" / "k05_position_ids.log").read_text()


@pytest.mark.parametrize("position_ids, outcome", [("ok", "confirmed"), ("absent", "refuted")])
def test_evidence_decides_where_the_status_cannot(tmp_path, position_ids, outcome):
    # ckpt.clip-position-ids is `ok` both for a sane key and for no key: its evidence tells them apart.
    def position(ctx):
        return [Finding("ckpt.clip-position-ids", Status.OK, "CLIP position_ids", "fine",
                        evidence={"position_ids": position_ids})]

    checks = [Check("ckpt.clip-position-ids", "p", position, reads=("ctx",)), check("compat.transformers-position-ids", "info")]
    k05 = match(explain_text(K05_LOG, make_ctx(tmp_path, transformers="4.31.0"), checks=checks), "K05")
    assert k05.causes[0].needs[1].outcome == outcome
    assert k05.causes[0].status == outcome


# --- with the checks registered in this installation ---------------------------------------------


def real_ctx(tmp_path, checkpoint):
    from diagnostics.context import Options

    return Context(options=Options(checkpoint=str(checkpoint)), environ={"HOME": str(tmp_path)}, cwd=tmp_path)


def need_registered(*codes):
    from diagnostics.knowledge.explain import CheckResults

    have = {c.id for c in CheckResults(Context(environ={})).checks}
    missing = [c for c in codes if c not in have]
    if missing:
        pytest.skip(f"no check for {', '.join(missing)} on this installation yet")


def test_git_lfs_pointer_is_confirmed_by_the_checkpoint_checks(tmp_path):
    need_registered("ckpt.format")
    pointer = tmp_path / "512-inpainting-ema.ckpt"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:b29e2ed9\nsize 5214865159\n")
    e = explain_text((LOGS / "real" / "k22_lfs_pointer_unsafe.log").read_text(), real_ctx(tmp_path, pointer))
    k22 = match(e, "K22")
    assert k22.status == "confirmed" and k22.blocking
    assert any(s.startswith("confirmed by ckpt.format:") for s in k22.statements("confirmed"))


def test_truncated_zip_is_confirmed_only_for_a_truncated_file(tmp_path):
    torch = pytest.importorskip("torch")
    need_registered("ckpt.corrupt")
    path = tmp_path / "sd.ckpt"
    torch.save({"state_dict": {"model.diffusion_model.out.2.bias": torch.zeros(1000)}}, str(path))
    log = (LOGS / "real" / "k21_truncated_zip.log").read_text()
    assert match(explain_text(log, real_ctx(tmp_path, path)), "K21").status == "refuted"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    k21 = match(explain_text(log, real_ctx(tmp_path, path)), "K21")
    assert k21.status == "confirmed"
    assert k21.causes[0].needs[0].by == "ckpt.corrupt"
