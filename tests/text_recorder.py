"""A pytest plugin that records the user-facing text of every `Finding` built while tests run.

`python -m pytest -p tests.text_recorder ...` with LDM_DIAG_TEXTS_OUT=FILE writes one JSON list of
{code, status, title, summary, cause, fix} to FILE at the end of the session: the summaries, causes
and fixes the rules give for the facts the rule tests use, for `test_user_texts` to read.
"""

from __future__ import annotations

import json
import os

from diagnostics.findings import Finding

_SEEN = {}
_ORIGINAL_POST_INIT = Finding.__post_init__


def _recording_post_init(self: Finding) -> None:
    _ORIGINAL_POST_INIT(self)
    record = {"code": self.code, "status": str(self.status), "title": self.title, "summary": self.summary,
              "cause": self.cause, "fix": self.fix}
    _SEEN[tuple(record.values())] = record


def pytest_configure(config) -> None:
    Finding.__post_init__ = _recording_post_init


def pytest_sessionfinish(session, exitstatus) -> None:
    Finding.__post_init__ = _ORIGINAL_POST_INIT
    out = os.environ.get("LDM_DIAG_TEXTS_OUT")
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            json.dump(list(_SEEN.values()), fh)
