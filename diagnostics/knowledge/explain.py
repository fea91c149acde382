"""Explain a failure: parse a pasted log, match it against the knowledge base, confirm each match
with the checks behind it on this machine, and rank the causes by what the checks found.

The API the report and the `explain` command use:

    from diagnostics.knowledge.explain import explain_text, explain_file
    explanation = explain_text(log_text, ctx)          # ctx: diagnostics.context.Context
    explanation.original_problem   # {"error_message", "exception_type", "file", "qualname",
                                   #  "function", "line", "code", ...} or None (no error found)
    explanation.matches            # [SignatureMatch], best first: .status is confirmed / likely /
                                   #  unverified / refuted, .causes ranked the same way
    explanation.root_causes()      # the same as plain dicts, for a Root Cause Analysis section
    explanation.findings()         # [Finding]: explain.traceback or explain.no-traceback,
                                   #  one explain.signature per match, explain.unmatched
    explanation.blocking           # a confirmed blocking cause remains (exit 1)
    explanation.to_dict()          # everything, JSON-ready (schema ldm-diagnostics/1)

A match is a hypothesis. Each of its causes names the finding codes that decide it (`Need`); the
checks behind those codes are looked up in the registry *at run time*, so checks added later are
used without touching this module, and a code nobody implements yet is reported as "no check for
X on this installation yet". Results the caller already has (the report runs every check) can be
passed in as `results=` and are used instead of running the check again.

Everything taken from the log is redacted (tokens, passwords, this machine's secret environment
values) and kept as plain text: renderers escape it.
"""

from __future__ import annotations

from .confirmation import CheckResults, evaluate_need, evaluate_versions
from .explanation import (CODE_NO_TRACEBACK, CODE_SIGNATURE, CODE_TRACEBACK, CODE_UNMATCHED, MAX_LOG_BYTES,
                          Explanation, decode_log, explain_file, explain_text, read_log)
from .matching import match_signatures, rank
from .results import STATUS_RANK, CauseResult, Hit, NeedResult, SignatureMatch

__all__ = ["CODE_NO_TRACEBACK", "CODE_SIGNATURE", "CODE_TRACEBACK", "CODE_UNMATCHED", "CauseResult",
           "CheckResults", "Explanation", "Hit", "MAX_LOG_BYTES", "NeedResult", "STATUS_RANK", "SignatureMatch",
           "decode_log", "evaluate_need", "evaluate_versions", "explain_file", "explain_text", "match_signatures",
           "rank", "read_log"]
