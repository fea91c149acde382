"""Layouts that rewrite the traceback's lines, not only their margins: a JSON error report, a
traceback flattened onto one line (and that line broken by the paste), IPython/Colab frames, a
log cut inside a key list or before the exception line, shape messages without a traceback.

Each captured log of tests/logs/real is rewritten into the layout and must keep its top-ranked
signature; the analysers are also tested on hand-written inputs of each form.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from diagnostics.knowledge.layouts import expand_layouts
from diagnostics.knowledge.matching import match_signatures, rank
from diagnostics.knowledge.shapes import shape_verdict
from diagnostics.knowledge.state_dict import flat_clip_prefix, parse_key_report
from diagnostics.knowledge.traceback import FRAME, parse_log

LOGS = Path(__file__).parent / "logs"
REAL = {p.name: p.read_text() for p in sorted((LOGS / "real").glob("k*.log"))}
HEADER = "Traceback (most recent call last):"


def top(text: str):
    ranked = rank(match_signatures(parse_log(text)))
    explaining = [m.signature.id for m in ranked if m.weight >= 3]
    return explaining[0] if explaining else (ranked[0].signature.id if ranked else None)


def _from_header(text: str) -> str:
    return text[text.find(HEADER):] if HEADER in text else text


def as_json_report(text: str) -> str:
    """A ComfyUI-style report: type and message fields first, the frames as an array of strings."""
    final = parse_log(text).primary.final
    frames = []
    for frame in final.frames:
        frames.append(f'  File "{frame.file}", line {frame.line}, in {frame.function}\n'
                      + (f"    {frame.code}\n" if frame.code else ""))
    report = {"node_type": "Loader", "exception_message": final.message, "exception_type": final.exception_type,
              "traceback": frames, "current_inputs": {}}
    return json.dumps(report, indent=2).replace('\\"', "\\u0022")


def as_one_json_line(text: str) -> str:
    return json.dumps({"level": "error", "traceback": _from_header(text)})


def flattened(text: str, break_at: float = 0.0) -> str:
    """The traceback joined onto one line; `break_at` > 0 breaks that line in two there."""
    body = _from_header(text)
    head = text[: len(text) - len(body)]
    line = " ".join(piece.strip() for piece in body.splitlines() if piece.strip())
    if break_at:
        cut = int(len(line) * break_at)
        line = line[:cut] + "\n" + line[cut:]
    return head + line + "\n"


def as_ipython(text: str) -> str:
    """Colab's rendering: `ErrorType  Traceback`, `[path](url) in func()` and `---> N code` lines."""
    final_type = parse_log(text).primary.final.exception_type.rsplit(".", 1)[-1]
    out = []
    lines = _from_header(text).splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        found = FRAME.match(line)
        if line.strip() == HEADER:
            out += ["-" * 75, f"{final_type}{' ' * 20}Traceback (most recent call last)"]
        elif found:
            code = lines[i + 1].strip() if i + 1 < len(lines) and not FRAME.match(lines[i + 1]) else ""
            out += ["", f"[{found.group('file')}](https://localhost:8080/#) in {found.group('func') or '<module>'}()",
                    f"    {int(found.group('line')) - 1} ", f"--> {found.group('line')} {code}"]
            i += 1 if code else 0
        elif not re.match(r"^\s*[\^~]+\s*$", line):
            out.append(line)
        i += 1
    return "\n".join(out) + "\n"


REWRITES = {"json-report": as_json_report, "json-line": as_one_json_line, "flattened": flattened,
            "flattened-broken": lambda t: flattened(t, 0.37), "ipython": as_ipython}


@pytest.mark.parametrize("rewrite", sorted(REWRITES))
@pytest.mark.parametrize("name", sorted(n for n, t in REAL.items() if HEADER in t))
def test_real_log_keeps_its_signature_in_a_rewritten_layout(name, rewrite):
    original = top(REAL[name])
    assert original is not None
    assert top(REWRITES[rewrite](REAL[name])) == original, (name, rewrite)


def test_json_report_gets_its_exception_line_after_the_frames():
    report = ('{\n  "exception_message": "Numpy is not available",\n  "exception_type": "RuntimeError",\n'
              '  "traceback": [\n    "  File \\u0022app.py\\u0022, line 3, in run\\n    go()\\n"\n  ]\n}\n')
    lines, origins = expand_layouts(report.splitlines())
    assert lines[-1] == "RuntimeError: Numpy is not available"
    assert '  File "app.py", line 3, in run' in lines
    assert origins[-1] == 2  # the message field's line
    final = parse_log(report).primary.final
    assert (final.exception_type, final.message, final.frames[0].function) == ("RuntimeError",
                                                                              "Numpy is not available", "run")


def test_a_field_called_type_alone_is_no_exception():
    lines, _ = expand_layouts(['{', '  "type": "KSampler",', '  "inputs": {}', '}'])
    assert lines == ['{', '  "type": "KSampler",', '  "inputs": {}', '}']


def test_flattened_traceback_is_split_into_frames_and_exception():
    line = ('Traceback (most recent call last): File "a.py", line 1, in <module> main() File "b.py", line 9, '
            'in main raise OSError("x") OSError: cannot open the file')
    final = parse_log(line).primary.final
    assert [f.function for f in final.frames] == ["<module>", "main"]
    assert [f.code for f in final.frames] == ["main()", 'raise OSError("x")']
    assert (final.exception_type, final.message) == ("OSError", "cannot open the file")


def test_ipython_8_frames():
    text = ("Cell In[3], line 1\n----> 1 import ldm.models.diffusion.ddpm\n\n"
            "File /opt/venv/lib/python3.11/site-packages/ldm/models/diffusion/ddpm.py:20, in <module>\n"
            "     18 import torch\n---> 20 from pytorch_lightning.utilities.distributed import rank_zero_only\n\n"
            "ModuleNotFoundError: No module named 'pytorch_lightning.utilities.distributed'\n")
    final = parse_log(text).primary.final
    assert [(f.line, f.function) for f in final.frames] == [(1, "<module>"), (20, "<module>")]
    assert final.frames[1].code.startswith("from pytorch_lightning")
    assert final.short_type == "ModuleNotFoundError"


def test_message_printed_before_a_cut_traceback_is_its_message():
    text = "Something failed: bad input\nTraceback (most recent call last):\n  File \"a.py\", line 3, in run\n    go()\n"
    final = parse_log(text).primary.final
    assert final.message == "Something failed: bad input" and final.truncated


@pytest.mark.parametrize("message, expected, given", [
    ("Given groups=1, weight of size [320, 9, 3, 3], expected input[2, 4, 64, 64] to have 9 channels, but got 4 "
     "channels instead", 9, 4),
    ("Expected shape (1, 9, 64, 64), got (1, 4, 64, 64) for input: sample", 9, 4),
    ("Got invalid dimensions for input: sample for the following indices index: 1 Got: 9 Expected: 4", 4, 9),
])
def test_shape_messages_name_the_unet_channels(message, expected, given):
    verdict = shape_verdict(message)
    assert verdict is not None and verdict.code == "config.in-channels"
    assert f"takes {expected} input channels" in verdict.text and f"given {given}" in verdict.text


@pytest.mark.parametrize("message", [
    "Given groups=1, weight of size [64, 3, 7, 7], expected input[1, 4, 224, 224] to have 3 channels, but got 4",
    "Expected shape (1, 77), got (1, 78)",
    "Expected shape (1, 9, 64, 64), got (1, 4, 32, 32)",
])
def test_other_shape_messages_are_not_unet_channels(message):
    assert shape_verdict(message) is None


def test_shape_message_without_traceback_is_k07():
    assert top("Expected shape (1, 9, 64, 64), got (1, 4, 64, 64) for input: sample\n") == "K07"


def test_size_mismatch_cut_inside_the_entry_keeps_its_key():
    report = parse_key_report("Error(s) in loading state_dict for LatentDiffusion:\n\tsize mismatch for "
                              "model.diffusion_model.input_blocks.0.0.weight: copyi")
    assert report is not None and report.truncated
    assert [v.tag for v in report.verdicts()] == ["unet-in-channels"]


CLIP_FLAT = ["model.sd.text_encoder.embeddings.token_embedding.weight",
             "model.sd.text_encoder.encoder.layers.0.self_attn.k_proj.weight",
             "model.sd.text_encoder.encoder.layers.0.mlp.fc1.bias", "model.sd.text_encoder.final_layer_norm.weight"]


def test_key_list_without_its_heading_is_read():
    line = ", ".join(f'"{key}"' for key in CLIP_FLAT * 3)
    report = parse_key_report(line)
    assert report is not None and len(report.listed) == 12 and not report.missing
    assert "compat.transformers5-clip-layout" in [v.code for v in report.verdicts()]
    assert top(line) == "K41"


def test_missing_flat_clip_keys_alone_point_to_the_transformers5_layout():
    message = "Missing key(s) in state_dict: " + ", ".join(f'"{key}"' for key in CLIP_FLAT) + ', "model.sd.te'
    report = parse_key_report(message)
    assert [v.tag for v in report.verdicts()][0] == "transformers5-clip-layout"


def test_flat_clip_prefix_needs_the_flat_layout():
    assert flat_clip_prefix(CLIP_FLAT) == "model.sd.text_encoder."
    assert flat_clip_prefix([k.replace("text_encoder.", "text_encoder.text_model.") for k in CLIP_FLAT]) is None
    assert flat_clip_prefix(["encoder.layer.0.attention.self.query.weight"] * 4) is None  # BERT


def test_size_mismatch_wrapped_inside_a_word_or_a_number_keeps_its_shapes():
    message = ("Error(s) in loading state_dict for LatentDiffusion:\n\tsize mismatch for model.diffusion_model.input_"
               "blocks.0.0.weight: copying a\n param with shape torch.Size([320, 9, 3, 3]) from checkpoint, the shape "
               "in current mode\nl is torch.Size([3\n20, 4, 3, 3]).\n\tsize mismatch for model.diffusion_model.out.2."
               "weight: copying a param with sh\nape torch.Size([4, 320, 3, 3]) from checkpoint, the shape in current "
               "model is torch.Size([4, 320, 3, 3]).")
    report = parse_key_report(message)
    first = report.mismatched[0]
    assert (first.checkpoint, first.model) == ((320, 9, 3, 3), (320, 4, 3, 3))
    assert len(report.mismatched) == 2 and not report.truncated
    assert report.verdicts()[0].tag == "unet-in-channels"
