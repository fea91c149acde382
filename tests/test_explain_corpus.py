"""The public-log corpus (tests/logs/public/cases.json) and the seed failure under every
transformers boundary (tests/logs/seed/): the top-ranked cause points to an expected code.

Matching only (no check runs), so the answer is the same on every machine. Skipped with the reason
where the corpus is not in this checkout.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

LOGS = Path(__file__).parent / "logs"
CASES = LOGS / "public" / "cases.json"
SEED = sorted((LOGS / "seed").glob("seed_transformers_*.log")) if (LOGS / "seed").is_dir() else []
CLIP_FILES_CODES = {"cache.model-missing", "tokenizer.functional", "cache.offline-flag", "hub.dns", "hub.connect"}

_spec = importlib.util.spec_from_file_location("corpus_table", Path(__file__).parent.parent / "benchmarks" /
                                               "corpus_table.py")
corpus_table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus_table)


def _cases():
    if not CASES.exists():
        return []
    return json.loads(CASES.read_text())


@pytest.mark.skipif(not CASES.exists(), reason="the public-log corpus is not in this checkout")
@pytest.mark.parametrize("case", _cases(), ids=lambda c: c["file"])
def test_public_log_gets_the_right_cause_first(case):
    text = (CASES.parent / case["file"]).read_text(encoding="utf-8", errors="replace")
    signature, codes = corpus_table.top_codes(text)
    assert set(codes) & set(case["expected_codes"]), (case["file"], signature, codes, case.get("settled_cause"))


@pytest.mark.skipif(not SEED, reason="the seed logs per transformers boundary are not in this checkout")
@pytest.mark.parametrize("path", SEED, ids=lambda p: p.name)
def test_seed_failure_is_the_clip_files_cause_under_every_transformers(path):
    signature, codes = corpus_table.top_codes(path.read_text(encoding="utf-8", errors="replace"))
    assert set(codes) & CLIP_FILES_CODES, (path.name, signature, codes)
