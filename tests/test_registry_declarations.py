"""The check declarations are the one source: of the catalog, of what may be named, of titles."""

import ast
import re
from pathlib import Path

import pytest

from diagnostics.catalog import render_catalog
from diagnostics.context import Context, Options
from diagnostics.facts import FACT_PROBES, probe_for
from diagnostics.findings import Finding, Status, verdict
from diagnostics.registry import (
    CODE_MODULES,
    Check,
    Precondition,
    all_checks,
    module_errors,
    registered_codes,
    run_check,
)

ROOT = Path(__file__).resolve().parents[1]

# What a code looks like where a signature, a fix or a doc names one: `area.name-with-dashes`.
CODE_TOKEN = re.compile(r"(?<![\w./-])((?:env|compat|cuda|hub|cache|tokenizer|ckpt|config|model|explain|remedy|fleet)"
                        r"\.[a-z0-9]+(?:-[a-z0-9]+)*)(?![\w.(/-])")
# Tokens of that shape that are not codes: file names and yaml paths the texts mention.
NOT_CODES = {
    "config.json", "tokenizer.json", "model.safetensors", "model.ckpt", "explain.py", "fleet.log",  # file names
    "model.params", "model.target", "config.model",  # yaml keys of an LDM config
}


def _named_in_code():
    """Code-like tokens in every string constant of the package (signatures, fixes, summaries)."""
    for path in sorted((ROOT / "diagnostics").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for token in CODE_TOKEN.findall(node.value):
                    yield token, path.relative_to(ROOT)


def _named_in_docs():
    for path in sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]:
        for token in CODE_TOKEN.findall(path.read_text(encoding="utf-8")):
            yield token, path.relative_to(ROOT)


def test_the_committed_catalog_is_the_generated_one():
    committed = (ROOT / "docs" / "finding-codes.md").read_text(encoding="utf-8")
    assert committed == render_catalog(), "regenerate: python -m diagnostics.catalog > docs/finding-codes.md"


def test_every_rules_module_imports():
    all_checks()
    assert module_errors() == {}


@pytest.mark.parametrize("source", [_named_in_code, _named_in_docs], ids=["package", "docs"])
def test_every_code_a_signature_fix_or_doc_names_is_registered(source):
    registered = set(registered_codes())
    unknown = sorted({(token, str(where)) for token, where in source() if token not in registered | NOT_CODES})
    assert unknown == []


def test_codes_are_unique_and_each_check_has_a_title_of_its_own():
    checks = all_checks()
    codes = [c.code for c in checks]
    assert len(codes) == len(set(codes))
    assert all(c.title and c.title != c.code for c in checks)


def test_every_fact_a_check_reads_has_a_probe():
    for check in all_checks():
        for name in check.fact_names():  # preconditions', rule's and on-demand facts
            assert name in FACT_PROBES, f"{check.code} reads {name!r}, which no probe gathers"
    for name in FACT_PROBES:
        assert callable(probe_for(name))


def test_no_registered_check_reads_the_context_itself():
    assert [check.code for check in all_checks() if "ctx" in check.fact_names()] == []


def test_other_code_modules_declare_what_they_emit():
    import importlib

    for name in CODE_MODULES:
        docs = importlib.import_module(name).OTHER_CODES
        assert docs and all(doc.code.split(".", 1)[0] in ("explain", "remedy", "fleet") for doc in docs)


# --- the registry's plumbing on a hand-made check ----------------------------------------------

GIVEN = Precondition("value given", ("value",), lambda value: None if value is not None else "No value was given.")


def _decide(value):
    return verdict(Status.FAIL if value > 1 else Status.OK, f"value is {value}")


DECLARED = Check("fake.value", "Value small enough", _decide, reads=("value",), requires=(GIVEN,))


def test_the_registry_stamps_code_and_title_on_a_verdict():
    [finding] = DECLARED.evaluate(value=3)
    assert (finding.code, finding.title, finding.status, finding.blocking) == ("fake.value", "Value small enough",
                                                                             Status.FAIL, True)


def test_an_unmet_precondition_is_the_result_and_the_rule_does_not_run():
    [finding] = DECLARED.evaluate(value=None)
    assert (finding.code, finding.status, finding.summary) == ("fake.value", Status.SKIP, "No value was given.")


def test_a_precondition_may_answer_with_a_finding_of_its_own():
    needs_evidence = Precondition("value given", ("value",),
                                  lambda value: verdict(Status.WARN, "unknown", evidence={"value": value}))
    [finding] = Check("fake.value", "Value", _decide, reads=("value",), requires=(needs_evidence,)).evaluate(value=1)
    assert (finding.status, finding.evidence, finding.title) == (Status.WARN, {"value": 1}, "Value")


def _costly(value, expensive):
    return verdict(Status.FAIL if value > 1 and expensive() else Status.OK, f"value is {value}")


ON_DEMAND = Check("fake.costly", "Costly value", _costly, reads=("value",), on_demand=("expensive",))


def test_an_on_demand_fact_is_a_callable_the_rule_calls_only_when_it_needs_it():
    asked = []

    def expensive():
        asked.append(1)
        return True

    assert ON_DEMAND.evaluate(value=1, expensive=expensive)[0].status is Status.OK
    assert asked == []
    assert ON_DEMAND.evaluate(value=3, expensive=expensive)[0].status is Status.FAIL
    assert asked == [1]
    assert ON_DEMAND.evaluate(value=3, expensive=False)[0].status is Status.OK  # a plain value is wrapped
    assert ON_DEMAND.evaluate(value=1)[0].status is Status.OK  # not given, not asked: fine
    with pytest.raises(KeyError):
        ON_DEMAND.evaluate(value=3)
    assert ON_DEMAND.fact_names() == ("value", "expensive")


def test_a_fact_is_either_read_or_gathered_on_demand():
    with pytest.raises(ValueError):
        Check("fake.both", "Both", _costly, reads=("value", "expensive"), on_demand=("expensive",))


_GATHERED = []


def gather_counted(ctx):
    _GATHERED.append(1)
    return 3


def test_in_a_context_facts_are_gathered_lazily_and_once(monkeypatch):
    monkeypatch.setitem(FACT_PROBES, "fake_value", "tests.test_registry_declarations:gather_counted")
    monkeypatch.setitem(FACT_PROBES, "fake_expensive", "tests.test_registry_declarations:gather_counted")
    del _GATHERED[:]
    asked_twice = Check("fake.twice", "Twice", lambda fake_expensive: verdict(
        Status.OK, f"{fake_expensive() + fake_expensive()}"), on_demand=("fake_expensive",))
    ctx = Context(Options(), environ={})
    assert run_check(asked_twice, ctx).findings[0].summary == "6"
    assert _GATHERED == [1] and ctx.facts["fake_expensive"] == 3

    # a precondition's facts are gathered only once the preconditions before it hold
    del _GATHERED[:]
    no_environ = Precondition("an environment", ("environ",), lambda environ: None if environ else "No environment.")
    needs_value = Precondition("value small", ("fake_value",), lambda fake_value: None)
    guarded = Check("fake.guarded", "Guarded", lambda fake_value: verdict(Status.OK, "ran"), reads=("fake_value",),
                    requires=(no_environ, needs_value))
    [finding] = run_check(guarded, Context(Options(), environ={})).findings
    assert (finding.status, finding.summary, _GATHERED) == (Status.SKIP, "No environment.", [])
    [finding] = run_check(guarded, Context(Options(), environ={"HOME": "/home/user"})).findings
    assert (finding.status, _GATHERED) == (Status.OK, [1])


def test_no_checkpoint_is_read_for_a_config_that_is_not_there(tmp_path):
    from diagnostics.registry import get_check

    ckpt = tmp_path / "model.safetensors"
    ckpt.write_bytes(b"not read")
    ctx = Context(Options(checkpoint=str(ckpt), config=str(tmp_path / "missing.yaml")), environ={})
    [finding] = run_check(get_check("config.in-channels"), ctx).findings
    assert finding.status is Status.SKIP
    assert "checkpoint_layout" not in ctx.facts and "checkpoint" not in ctx.facts


def test_a_result_runs_once_per_context_and_a_needed_result_is_shared():
    calls = []

    def count(ctx):
        calls.append(1)
        return verdict(Status.OK, "counted")

    counted = Check("fake.counted", "Counted", count, reads=("ctx",))

    def after(results):
        return verdict(Status.INFO, f"after {results['fake.counted'].status}")

    dependent = Check("fake.after", "After", after, needs=("fake.counted",))
    ctx = Context(Options(), environ={})
    import diagnostics.registry as registry

    original = registry.find_check
    registry.find_check = lambda code: counted if code == "fake.counted" else original(code)
    try:
        first = run_check(counted, ctx)
        assert run_check(counted, ctx) is first
        assert run_check(dependent, ctx).findings[0].summary == "after ok"
    finally:
        registry.find_check = original
    assert len(calls) == 1


def test_a_rule_that_raises_is_an_error_finding_with_the_checks_title():
    def boom(ctx):
        raise ValueError("probe exploded")

    result = run_check(Check("fake.boom", "Boom check", boom, reads=("ctx",)), Context(Options(), environ={}))
    [finding] = result.findings
    assert (finding.status, finding.title, finding.blocking) == (Status.ERROR, "Boom check", False)
    assert "ValueError: probe exploded" in finding.summary


def test_findings_are_frozen():
    finding = Finding("fake.x", Status.OK, "X", "fine")
    with pytest.raises(Exception):
        finding.summary = "changed"
    assert finding.with_fix_prefix("first").fix == "first"


def test_views_of_the_context_never_land_in_the_facts_the_report_writes():
    from diagnostics.registry import get_check

    ctx = Context(Options(), environ={"HF_TOKEN": "hf_secret"})
    run_check(get_check("compat.torch-weights-only-default"), ctx)
    run_check(Check("fake.ctx", "Context", lambda ctx: verdict(Status.OK, "seen"), reads=("ctx",)), ctx)
    assert not {"ctx", "environ", "options"} & set(ctx.facts)
