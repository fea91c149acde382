"""Every knowledge-base signature is recognised on a realistic log.

The logs are in tests/logs (see its README: `real/` was produced by running the real code path,
`doc_*` was written from the documented wording). A file name lists the signatures it must match:
`k29_k02_hub_retries.log` must match K29 and K02, and the top-ranked match must be one of them.
Confirmation is off here (matching only); tests/test_explain_confirm.py covers confirmation.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from diagnostics.context import Context
from diagnostics.knowledge.explain import explain_file, match_signatures
from diagnostics.knowledge import operations, state_dict
from diagnostics.knowledge.signatures import SIGNATURES, get_signature
from diagnostics.knowledge.traceback import parse_log
from diagnostics.registry import AREA_TITLES

LOGS = Path(__file__).parent / "logs"
FIXTURES = sorted(p for p in [*LOGS.glob("*.log"), *(LOGS / "real").glob("*.log")] if re.match(r"(?:doc_)?k\d\d_", p.name))


def expected_ids(path: Path):
    head = re.match(r"(?:doc_)?((?:k\d\d_)+)", path.name).group(1)
    return ["K" + n for n in re.findall(r"k(\d\d)_", head)]


@pytest.fixture(scope="module")
def ctx():
    return Context(environ={}, cwd=LOGS)


def test_every_signature_has_a_log():
    covered = {k for p in FIXTURES for k in expected_ids(p)}
    assert covered == {s.id for s in SIGNATURES}


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: str(p.relative_to(LOGS)))
def test_log_is_recognised(path, ctx):
    want = expected_ids(path)
    explanation = explain_file(str(path), ctx, confirm_causes=False)
    got = [m.signature.id for m in explanation.matches]
    for sig in want:
        assert sig in got, f"{path.name}: {sig} not matched; got {got}"
    assert got[0] in want, f"{path.name}: top match {got[0]}, expected one of {want}"
    problem = explanation.original_problem
    if explanation.parsed.has_traceback:
        assert problem["exception_type"] and problem["file"] and problem["line"]
        assert not any(f.code == "explain.unmatched" for f in explanation.findings())


def test_every_signature_is_well_formed():
    ids = [s.id for s in SIGNATURES]
    assert len(set(ids)) == len(ids) and ids == sorted(ids)  # unique, listed in id order
    assert all(re.fullmatch(r"K\d{2,3}", sig_id) for sig_id in ids)  # stable format: ids are cited in docs
    assert len({s.slug for s in SIGNATURES}) == len(SIGNATURES)
    verdict_tags = set(re.findall(r'Verdict\(\s*"([\w-]+)"', Path(state_dict.__file__).read_text()))
    for sig in SIGNATURES:
        assert sig.patterns and sig.cause and sig.fix, sig.id
        for pat in sig.patterns:
            assert bool(pat.regex) + bool(pat.operation) + bool(pat.analysis) == 1, (sig.id, pat.label)
            re.compile(pat.regex)
            re.compile(pat.exception)
            assert not pat.operation or pat.operation in operations.BY_NAME, (sig.id, pat.operation)
            assert not pat.analysis or pat.analysis in verdict_tags, (sig.id, pat.analysis)
            assert pat.scope in ("exception", "line", "any")
        for code in sig.codes:
            area, _, name = code.partition(".")
            assert area in AREA_TITLES and name, (sig.id, code)
        for cause in sig.causes:
            assert cause.id.startswith(sig.id + ".") and cause.needs and cause.fix
            for need in cause.needs:
                assert need.codes or need.versions, (cause.id, need.says)
        for link in sig.links:
            assert link.startswith("https://")
    assert get_signature("clip-tokenizer-load").id == "K01"


def test_one_line_log_patterns_match_across_wrapped_lines():
    # numpy splits its notice over lines; the pattern is written for one line.
    log = ("A module that was compiled using NumPy 1.x cannot be run in\n"
           "NumPy 2.0.1 as it may crash. To support both 1.x and 2.x\n")
    matches = match_signatures(parse_log(log))
    assert [m.signature.id for m in matches] == ["K23"]
    assert matches[0].hits[0].log_line == 1


def test_frame_condition_keeps_a_generic_error_from_matching():
    plain = ('Traceback (most recent call last):\n  File "/app/read.py", line 3, in <module>\n    json.load(f)\n'
             "json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)\n")
    assert match_signatures(parse_log(plain)) == []
    clip = plain.replace("/app/read.py", "/venv/site-packages/transformers/models/clip/tokenization_clip.py")
    assert [m.signature.id for m in match_signatures(parse_log(clip))] == ["K01"]


def test_position_ids_alone_is_not_a_family_mismatch():
    log = ("RuntimeError: Error(s) in loading state_dict for LatentDiffusion:\n\tUnexpected key(s) in state_dict: "
           '"cond_stage_model.transformer.text_model.embeddings.position_ids". \n')
    assert [m.signature.id for m in match_signatures(parse_log(log))] == ["K05"]


def test_every_code_a_signature_names_is_registered():
    from diagnostics.registry import registered_codes

    named = {code for sig in SIGNATURES for code in sig.codes}
    assert named - set(registered_codes()) == set()


def test_catalog_lists_every_code_and_signature():
    from diagnostics.knowledge import explain

    doc = (Path(__file__).parent.parent / "docs" / "finding-codes-explain.md").read_text()
    for code in (explain.CODE_TRACEBACK, explain.CODE_NO_TRACEBACK, explain.CODE_SIGNATURE, explain.CODE_UNMATCHED):
        assert f"| `{code}` |" in doc
    from diagnostics.knowledge.catalog import signature_table

    assert signature_table() in doc  # regenerate with `python -m diagnostics.knowledge.catalog`
    for sig in SIGNATURES:
        row = next((l for l in doc.splitlines() if l.startswith(f"| {sig.id} | `{sig.slug}` |")), None)
        assert row is not None, sig.id
        for code in sig.codes:
            assert f"`{code}`" in row, (sig.id, code)
