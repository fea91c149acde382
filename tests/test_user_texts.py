"""The words a person reads: check titles, and the summaries, causes and fixes the rules give.

Titles name what is checked, so that they read right under any status ("FAIL DNS lookup of the Hub
host", not "FAIL Hub host name resolves"). No user-facing text carries internal references
(knowledge-base ids, "(K29)"), runs of dots, or says the same thing twice; fixes start with a
capital or with a name, and their code sits in closed fences.

The summaries, causes and fixes are those the rules give for the facts of the rule test suites:
the suites run once more with `tests.text_recorder`, which writes every finding built (the
few tests that build none, `NO_FINDINGS`, are left out of that run).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from diagnostics.findings import parse_fix
from diagnostics.registry import all_checks, other_codes

ROOT = Path(__file__).resolve().parent.parent
RULE_SUITES = ["tests/test_cache_rules.py", "tests/test_checkpoint_rules.py", "tests/test_config_rules.py",
               "tests/test_rules_compat.py", "tests/test_rules_cuda.py", "tests/test_rules_environment.py",
               "tests/test_rules_open_clip.py"]
# Tests of the rule suites that build no Finding (they run a probe, which never builds one): the
# recording run leaves them out, since they add no text (the suites themselves still run them).
NO_FINDINGS = ["tests/test_rules_cuda.py::test_torch_cuda_script_runs_in_a_real_child"]  # a real torch child

INTERNAL = re.compile(r"\(K\d{2}|\bK\d{2}\b|knowledge[ -]base|\bseed\b|\bissue \d|\.{4}", re.I)
# Words that make a title a claim ("... resolves", "... is writable") instead of naming what is checked.
CLAIM = re.compile(r"(?<![\w.])(is|are|resolves?|loads?|builds?|exists?|present|readable|importable|writable|correctly|"
                   r"trained|covers|match(es)?|answers|explained|provisioned|did not)\b")
# Titles still worded as claims, in modules outside the rules these tests cover; each entry must
# still be flagged (test_pending_titles_are_still_claims), so the list only shrinks.
PENDING_TITLES = set()
# Lower-case words a sentence may start with: names of packages, tools and functions.
NAMES = {"torch", "transformers", "huggingface_hub", "ldm", "ldm's", "open_clip", "pytorch_lightning", "httpx2",
         "requests", "from_pretrained", "numpy", "safetensors", "xformers", "diffusers", "omegaconf", "certifi",
         "pip", "hf", "python", "python3", "rm", "mv", "export", "unset", "sudo", "sd"}


def _titles() -> Dict[str, str]:
    titles = {check.code: check.title for check in all_checks()}
    titles.update({doc.code: doc.title for doc in other_codes()})
    titles.update({doc.code: doc.title for check in all_checks() for doc in check.emits})
    return titles


def test_every_title_names_what_is_checked():
    bad = {code: title for code, title in _titles().items()
           if code not in PENDING_TITLES and (CLAIM.search(title) or INTERNAL.search(title) or title.endswith("."))}
    assert not bad, f"titles that read wrong under fail/skip (name what is checked instead): {bad}"


def test_pending_titles_are_still_claims():
    titles = _titles()
    settled = {code for code in PENDING_TITLES if code in titles and not CLAIM.search(titles[code])}
    assert not settled, f"reworded: remove from PENDING_TITLES: {settled}"


@pytest.fixture(scope="module")
def texts(tmp_path_factory) -> List[Dict[str, str]]:
    out = tmp_path_factory.mktemp("texts") / "texts.json"
    env = dict(os.environ, LDM_DIAG_TEXTS_OUT=str(out), PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.text_recorder",
                           *RULE_SUITES, *(f"--deselect={test}" for test in NO_FINDINGS)],
                          cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    records = json.loads(out.read_text())
    assert len(records) > 200  # every rule suite contributed
    return records


def _first_word(text: str) -> str:
    return (text.strip().split() or [""])[0]


def _reads_as_a_sentence(text: str) -> bool:
    word = _first_word(text)
    return (not word or not word[0].islower() or word.lower().rstrip(":,") in NAMES
            or bool(re.search(r"[_./`=<>-]|\d", word)))


def _runs(text: str, size: int = 8) -> set:
    words = text.split()
    return {" ".join(words[i:i + size]) for i in range(len(words) - size + 1)}


def test_no_internal_references_or_runs_of_dots(texts):
    bad = [(r["code"], field, r[field]) for r in texts for field in ("title", "summary", "cause", "fix")
           if INTERNAL.search(r[field] or "")]
    assert not bad, bad[:5]


def test_causes_and_fix_steps_start_like_sentences(texts):
    bad = []
    for r in texts:
        if not _reads_as_a_sentence(r["cause"] or ""):
            bad.append((r["code"], "cause", r["cause"]))
        bad.extend((r["code"], "fix", step.text) for step in parse_fix(r["fix"]) if not _reads_as_a_sentence(step.text))
    assert not bad, bad[:5]


def test_fix_code_sits_in_closed_fences(texts):
    for r in texts:
        fences = [line for line in (r["fix"] or "").splitlines() if line.strip().startswith("```")]
        assert len(fences) % 2 == 0, (r["code"], r["fix"])


def test_a_summary_is_not_said_again_in_the_cause_or_the_fix(texts):
    repeats = [(r["code"], field, sorted(_runs(r["summary"]) & _runs(r[field] or ""))[0])
               for r in texts for field in ("cause", "fix") if _runs(r["summary"] or "") & _runs(r[field] or "")]
    assert not repeats, repeats[:5]


def test_ok_findings_do_not_read_like_failures(texts):
    bad = [(r["code"], r["summary"]) for r in texts
           if r["status"] == "ok" and re.search(r"\bnot found\b|\bfails?\b|\bbroken\b", r["summary"] or "")]
    assert not bad, bad[:5]
