"""The codes `explain LOG` and `report --error-log LOG` emit (no check of their own; see docs/finding-codes-explain.md)."""

from ..registry import CodeDoc

OTHER_CODES = [
    CodeDoc("explain.traceback", "Error log explanation",
            "The log has a Python traceback: its exception, location and message."),
    CodeDoc("explain.no-traceback", "Error log explanation", "The log holds no Python traceback."),
    CodeDoc("explain.signature", "Known failure in the error log",
            "A known failure matched the log; its status says whether the checks confirm it here."),
    CodeDoc("explain.unmatched", "Error log explanation", "The log's final error matches no known failure."),
]
