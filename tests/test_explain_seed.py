"""The seed report's failure: `OSError: Can't load tokenizer for 'openai/clip-vit-large-patch14'` raised
at /app/ldm/modules/encoders/modules.py line 103 in FrozenCLIPEmbedder.__init__.

The location must come out of the traceback, and on this machine the cause must be confirmed by
the checks that are registered (an offline switch with an empty cache is set up here, the world
the seed's server was in).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from diagnostics.context import Context
from diagnostics.knowledge.explain import CheckResults, explain_file, explain_text

LOGS = Path(__file__).parent / "logs"
SEED_LOG = LOGS / "seed_clip_tokenizer.log"

# The seed document's "Error Message" block, as it was pasted (wrapped, trailing spaces kept).
SEED_ERROR_BLOCK = """### Error Message
```
OSError: Can't load tokenizer for 'openai/clip-vit-large-patch14'. 
If you were trying to load it from 'https://huggingface.co/models', 
make sure you don't have a local directory with the same name. 
Otherwise, make sure 'openai/clip-vit-large-patch14' is the correct path 
to a directory containing all relevant files for a CLIPTokenizer tokenizer.
```

### Error Location
- **File**: `/app/ldm/modules/encoders/modules.py`
"""
SEED_MESSAGE = " ".join(SEED_ERROR_BLOCK.split("```")[1].split())


def test_seed_location_is_found():
    problem = explain_file(str(SEED_LOG), Context(environ={}), confirm_causes=False).original_problem
    assert problem["file"] == "/app/ldm/modules/encoders/modules.py"
    assert problem["qualname"] == "FrozenCLIPEmbedder.__init__"
    assert problem["function"] == "__init__"
    assert problem["line"] == 103
    assert problem["code"] == "self.tokenizer = CLIPTokenizer.from_pretrained(version)"
    assert problem["exception_type"] == "OSError"
    assert " ".join(problem["error_message"].split()) == SEED_MESSAGE
    assert problem["library_frame"]["file"].endswith("transformers/tokenization_utils_base.py")


def test_seed_error_block_without_traceback_is_still_recognised():
    e = explain_text(SEED_ERROR_BLOCK, Context(environ={}), confirm_causes=False)
    assert [f.code for f in e.findings()][0] == "explain.no-traceback"
    assert " ".join(e.original_problem["error_message"].split()) == SEED_MESSAGE
    assert e.original_problem["file"] is None
    assert [m.signature.id for m in e.matches] == ["K01"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def seed_world(tmp_path):
    """Offline switch on, an empty Hugging Face cache, no network (a closed local endpoint)."""
    environ = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "HF_HOME": str(tmp_path / "hf"),
               "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"}
    return Context(environ=environ, cwd=tmp_path)


def test_seed_cause_is_confirmed_on_this_machine(seed_world):
    e = explain_file(str(SEED_LOG), seed_world)
    k01 = e.matches[0]
    assert k01.signature.id == "K01"
    registered = {c.id for c in CheckResults(seed_world).checks}
    if {"cache.offline-flag", "cache.model-missing"} <= registered:
        assert k01.status == "confirmed" and k01.blocking and e.blocking
        top = k01.causes[0]
        assert (top.cause.id, top.status) == ("K01.b", "confirmed")
        assert any(s.startswith("confirmed by cache.offline-flag:") for s in k01.statements("confirmed"))
        assert any(s.startswith("confirmed by cache.model-missing:") for s in k01.statements("confirmed"))
        if "cache.shadowing-dir" in registered:
            assert {c.cause.id: c.status for c in k01.causes}["K01.c"] == "refuted"
    else:
        assert "no check for cache.offline-flag on this installation yet" in k01.statements("unavailable")
        assert not k01.blocking
