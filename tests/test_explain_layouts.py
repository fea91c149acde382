"""A traceback means the same after it is re-indented, prefixed, coloured or wrapped.

The logs are the captured ones in tests/logs/real and the seed log; each is put through the layout
changes real pastes show (web UI loaders indent and mark lines with `***`, log shippers prefix every
line, terminals colour and wrap, Windows adds CR) and must keep its top-ranked signature and its
exception type. Also: explain never raises, whatever it is given.
"""

from __future__ import annotations

import functools
import random
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diagnostics.context import Context
from diagnostics.facts import get_fact
from diagnostics.knowledge.explain import explain_text
from diagnostics.knowledge.matching import match_signatures, rank
from diagnostics.knowledge.traceback import parse_log

LOGS = Path(__file__).parent / "logs"
SOURCES = sorted([*(LOGS / "real").glob("k*.log"), LOGS / "seed_clip_tokenizer.log"])
TEXTS = {p.name: p.read_text() for p in SOURCES}


def top(text: str):
    ranked = rank(match_signatures(parse_log(text)))
    explaining = [m.signature.id for m in ranked if m.weight >= 3]
    return explaining[0] if explaining else (ranked[0].signature.id if ranked else None)


def final_type(text: str) -> str:
    tb = parse_log(text).primary
    return tb.final.short_type if tb is not None else ""


PREFIXES = [
    lambda i: "",
    lambda i: "    ",
    lambda i: "*** ",
    lambda i: "| ",
    lambda i: f"2024-03-14 10:01:{i % 60:02d},123 ERROR ",
    lambda i: f"[03/14/24 10:01:{i % 60:02d}] ",
    lambda i: "sd-webui-1  | ",
    lambda i: f"[10:01:{i % 60:02d}] ",
]


def relayout(text: str, prefix: int, indent: int, colour: bool, crlf: bool, width: int) -> str:
    """Indent, prefix, then wrap what is shown at `width` (a terminal or web page), then colour it."""
    lines = [PREFIXES[prefix](i) + " " * indent + line for i, line in enumerate(text.splitlines())]
    if width:
        wrapped = []
        for line in lines:
            while len(line) > width:
                wrapped.append(line[:width])
                line = line[width:]
            wrapped.append(line)
        lines = wrapped
    if colour:
        lines = [f"\x1b[3{i % 7}m{line}\x1b[0m" if line.strip() else line for i, line in enumerate(lines)]
    return ("\r\n" if crlf else "\n").join(lines) + "\n"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(TEXTS)), prefix=st.integers(0, len(PREFIXES) - 1), indent=st.integers(0, 6),
       colour=st.booleans(), crlf=st.booleans())
def test_prefixes_indentation_colour_and_crlf_keep_the_answer(name, prefix, indent, colour, crlf):
    text = TEXTS[name]
    changed = relayout(text, prefix, indent, colour, crlf, 0)
    assert top(changed) == top(text), (name, prefix, indent, colour, crlf)
    assert final_type(changed) == final_type(text)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(TEXTS)), width=st.integers(60, 200), colour=st.booleans())
def test_wrapping_at_any_width_keeps_the_answer(name, width, colour):
    text = TEXTS[name]
    changed = relayout(text, 0, 0, colour, False, width)
    assert top(changed) == top(text), (name, width)


# Widths where a line of Python's own is exactly as long as the wrap by chance, or where few lines
# reach the width: a caret line (k20 at 76), a code line before the exception line (k03 at 70, k06 at
# 67), a caret line before it (k21 at 63), the width known only from cut frame lines (k20 at 77,
# k21 reader at 80 and 88).
@pytest.mark.parametrize("name, width", [
    ("k20_html_as_safetensors.log", 76), ("k20_html_as_safetensors.log", 77), ("k03_pl2_ldm_import.log", 70),
    ("k06_weights_only.log", 67), ("k21_truncated_zip.log", 63), ("k21_truncated_zip_reader.log", 80),
    ("k21_truncated_zip_reader.log", 88)])
def test_lines_as_long_as_the_wrap_by_chance_keep_the_answer(name, width):
    text = TEXTS[name]
    changed = relayout(text, 0, 0, False, False, width)
    assert top(changed) == top(text), (name, width)
    assert final_type(changed) == final_type(text)


COMFY = """got prompt
!!! Exception during processing !!!
Error occurred when executing CheckpointLoaderSimple:

Error while deserializing header: HeaderTooLarge

  File "C:\\ComfyUI\\execution.py", line 151, in recursive_execute
    output_data = get_output_data(obj, input_data_all)
  File "C:\\ComfyUI\\comfy\\utils.py", line 13, in load_torch_file
    sd = safetensors.torch.load_file(ckpt, device=device.type)
  File "C:\\python_embeded\\Lib\\site-packages\\safetensors\\torch.py", line 308, in load_file
    with safe_open(filename, framework="pt", device=device) as f:

Prompt executed in 0.02 seconds
"""


def test_message_first_layout_without_a_final_line():
    tb = parse_log(COMFY).primary
    assert "HeaderTooLarge" in tb.final.message and tb.final.frames[-1].function == "load_file"
    assert top(COMFY) == "K20"


def test_unindented_frames_and_an_application_error_line():
    log = ("Traceback (most recent call last):\nFile \"/app/ldm/modules/encoders/modules.py\", line 99, in __init__\n"
           "self.tokenizer = CLIPTokenizer.from_pretrained(version)\nFile \"/usr/lib/python3.10/site-packages/"
           "transformers/models/clip/tokenization_clip.py\", line 312, in __init__\nwith open(vocab_file) as f:\n"
           "TypeError: expected str, bytes or os.PathLike object, not NoneType\n")
    assert top(log) == "K01"
    popup = "Error: Could not load the model. Reason: Can't load tokenizer for 'openai/clip-vit-large-patch14'.\n"
    assert top(popup) == "K01"


def test_an_unfamiliar_error_in_the_text_encoder_lands_on_the_clip_files_cause():
    log = ('Traceback (most recent call last):\n  File "/app/ldm/modules/encoders/modules.py", line 99, in __init__\n'
           '    self.tokenizer = CLIPTokenizer.from_pretrained(version)\n'
           '  File "/venv/lib/python3.10/site-packages/transformers/tokenization_utils_base.py", line 2000, in '
           'from_pretrained\n    raise SomethingNew("never seen")\nSomethingNewError: a wording from a future release\n')
    assert top(log) == "K01"


@functools.lru_cache(maxsize=None)
def _environment():
    """The installed packages, read once: reading them is most of an explanation's time, and every
    example explains on the same machine."""
    return get_fact(Context(environ={}), "environment")


@settings(max_examples=80, deadline=None)
@given(st.one_of(st.text(max_size=3000), st.binary(max_size=3000).map(lambda b: b.decode("latin-1"))))
def test_explain_never_raises(text):
    ctx = Context(environ={})
    ctx.set_fact("environment", _environment())
    explanation = explain_text(text, ctx, confirm_causes=False)
    assert explanation.findings()


def test_a_large_log_is_explained_from_its_end():
    rng = random.Random(4)
    noise = "\n".join(f"step {i} loss {rng.random():.4f} " + "x" * rng.randrange(80) for i in range(60000))
    text = noise + "\n" + TEXTS["seed_clip_tokenizer.log"]
    explanation = explain_text(text, Context(environ={}), confirm_causes=False)
    assert explanation.matches[0].signature.id == "K01"
