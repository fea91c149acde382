"""The failure-log corpus under tests/logs/public and tests/logs/seed is well formed.

These tests check the data only (every case has its file, source, layout and expected codes;
every file is a case; the codes are documented ones), not whether `explain` names the causes.
"""

from __future__ import annotations

import json
import os
import re

import pytest

LOGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "logs")
PUBLIC = os.path.join(LOGS, "public")
SEED = os.path.join(LOGS, "seed")
DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")

LAYOUTS = {"plain", "indented-stars", "comfyui", "rich", "app-wrapped", "popup", "prefixed", "ansi", "crlf",
           "mixed"}
REQUIRED = ("file", "source", "project", "layout", "family", "settled_cause", "expected_codes")
# Codes the corpus may expect before the product emits them (named by the issue that asked for the corpus).
PLANNED_CODES = {"compat.transformers5-clip-layout"}
SOURCE = re.compile(r"^https://github\.com/[\w.-]+/[\w.-]+/(?:issues|pull|discussions)/\d+$")
MIN_PUBLIC_CASES = 60


def _cases():
    with open(os.path.join(PUBLIC, "cases.json"), encoding="utf-8") as handle:
        return json.load(handle)


def _documented_codes():
    codes = set(PLANNED_CODES)
    for name in ("finding-codes.md", "finding-codes-explain.md"):
        with open(os.path.join(DOCS, name), encoding="utf-8") as handle:
            codes.update(re.findall(r"`([a-z]+\.[a-z0-9-]+)`", handle.read()))
    return codes


CASES = _cases()


def test_corpus_has_enough_public_cases():
    as_posted = [case for case in CASES if "derived_from" not in case]
    assert len(as_posted) >= MIN_PUBLIC_CASES


def test_every_log_file_is_a_case_and_every_case_has_its_file():
    listed = [case["file"] for case in CASES]
    assert len(listed) == len(set(listed)), "a file is listed twice"
    on_disk = sorted(name for name in os.listdir(PUBLIC) if name.endswith(".log"))
    assert sorted(listed) == on_disk


@pytest.mark.parametrize("case", CASES, ids=[case["file"] for case in CASES])
def test_case_is_complete(case):
    missing = [key for key in REQUIRED if not case.get(key)]
    assert not missing, f"missing {missing}"
    assert SOURCE.match(case["source"]), case["source"]
    assert case["layout"] in LAYOUTS
    assert isinstance(case["expected_codes"], list) and case["expected_codes"]
    unknown = set(case["expected_codes"]) - _documented_codes()
    assert not unknown, f"codes not in docs/finding-codes*.md: {sorted(unknown)}"
    for signature in case.get("signatures", []):
        assert re.match(r"^K\d\d$", signature), signature
    with open(os.path.join(PUBLIC, case["file"]), "rb") as handle:
        data = handle.read()
    assert data.strip(), "empty log"
    data.decode("utf-8")  # every log is UTF-8 text


@pytest.mark.parametrize("case", [c for c in CASES if "derived_from" in c],
                         ids=[c["file"] for c in CASES if "derived_from" in c])
def test_derived_case_keeps_the_text_of_its_original(case):
    assert case.get("derivation")
    with open(os.path.join(PUBLIC, case["derived_from"]), encoding="utf-8", newline="") as handle:
        original = handle.read()
    with open(os.path.join(PUBLIC, case["file"]), encoding="utf-8", newline="") as handle:
        derived = handle.read()
    plain = re.sub(r"\x1b\[[0-9;]*m", "", derived).replace("\r\n", "\n")
    assert plain.replace(" ", "") == original.replace(" ", "")
    assert plain != derived, "a derived case must differ from its original in layout bytes"


def test_every_public_log_is_in_the_readme():
    with open(os.path.join(PUBLIC, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    assert [case["file"] for case in CASES if case["file"] not in readme] == []


def test_seed_logs_are_listed_and_hold_no_machine_paths():
    with open(os.path.join(SEED, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    logs = sorted(name for name in os.listdir(SEED) if name.endswith(".log"))
    assert logs, "no seed captures"
    for name in logs:
        assert name in readme, name
        with open(os.path.join(SEED, name), encoding="utf-8") as handle:
            text = handle.read()
        assert "Traceback (most recent call last)" in text, name
        assert not re.search(r"/work/|/tmp/|/root/|\.pyenv", text), name
