"""Large logs: explain reads the tail in full and only the error lines before it, keeps every line
number of the log, and redacts what it reads as the whole-text Redactor would."""

from __future__ import annotations

import random
from pathlib import Path

from diagnostics.context import Context
from diagnostics import redact as log_redact
from diagnostics.knowledge import window
from diagnostics.knowledge.explain import explain_text
from diagnostics.redact import Redactor

SEED = (Path(__file__).parent / "logs" / "seed_clip_tokenizer.log").read_text()
SECRET = "hf_" + "a1B2c3D4e5F6g7H8i9J0kLmN"


def _noise(count: int, rng: random.Random):
    for index in range(count):
        yield f"2024-03-01 11:00:{index % 60:02d} - INFO - step {index} loss={rng.random():.4f} it/s=2.{index % 9}"


def test_window_keeps_the_tail_and_the_error_lines_with_their_numbers():
    rng = random.Random(1)
    lines = list(_noise(40_000, rng))
    lines[123] = "No module 'xformers'. Proceeding without it."
    text = "\n".join(lines) + "\n" + SEED
    picked, numbers = window.select(text, tail_chars=100_000)
    assert numbers is not None and len(picked) < len(text) // 10
    picked_lines = picked.splitlines()
    assert len(picked_lines) == len(numbers)
    original = text.splitlines()
    for line, number in zip(picked_lines, numbers):
        assert original[number - 1] == line
    assert 124 in numbers and numbers[-1] == len(original)


def test_large_log_is_explained_with_its_real_line_numbers(monkeypatch):
    monkeypatch.setattr(window, "TAIL_CHARS", 50_000)
    lines = list(_noise(30_000, random.Random(2)))
    lines[10] = "No module 'xformers'. Proceeding without it."
    text = "\n".join(lines) + "\n" + SEED
    assert window.select(text)[1] is not None  # the window is in use
    explanation = explain_text(text, Context(environ={}), confirm_causes=False)
    found = {m.signature.id: m for m in explanation.matches}
    assert explanation.matches[0].signature.id == "K01"
    assert "K10" in found and 11 in [h.log_line for h in found["K10"].hits]
    seed_exception = next(i for i, line in enumerate(SEED.splitlines()) if line.startswith("OSError"))
    assert explanation.original_problem["log_line"] == len(lines) + seed_exception + 1


def test_redacting_only_the_lines_with_anchors_equals_redacting_everything():
    rng = random.Random(3)
    secret_lines = [f"token: {SECRET}", f"export HF_TOKEN={SECRET}", "Authorization:\n   Zm9vYmFyYmF6cXV4MTIz",
                    "proxy http://user:pa55word@proxy.local:3128", "GET https://x.org/a?sig=abcdef0123&x=1",
                    "Bearer abcdefghijklmnopqrstuvwxyz012345", "AKIAABCDEFGHIJKLMNOP in the env dump",
                    '{"api_key": "supersecretvalue"}', "aws_secret_access_key=" + "A" * 40]
    lines = list(_noise(20_000, rng))
    for index, secret in enumerate(secret_lines):
        lines.insert(1000 * (index + 1), secret)
    text = "\n".join(lines) + "\n"
    environ = {"MY_PASSWORD": "environment-secret-value"}
    text = text.replace("loss=0.5", "environment-secret-value", 3)
    assert len(text) > log_redact.WHOLE_TEXT_BELOW
    assert log_redact.redact(text, environ) == Redactor(environ)(text)
    assert SECRET not in log_redact.redact(text, environ)
