"""Read tensor-shape errors as UNet input channels, whatever library printed them.

A UNet built for one variant and fed (or loaded) for another fails with a shape message, not a
key list: torch's convolution (`weight of size [320, 9, 3, 3], expected input[2, 4, 64, 64] to
have 9 channels, but got 4 channels instead`), a converted model's runtime (Core ML, ONNX Runtime,
TensorRT: `Expected shape (1, 9, 64, 64), got (1, 4, 64, 64)`, `Got: 4 Expected: 9` for index 1),
often printed without any traceback. `shape_verdict(text)` finds the channel counts in any of
these and, when both are UNet input-channel counts of different variants (4 txt2img, 9 inpainting,
8 instruct-pix2pix, 5 depth, 7 upscaler), names it as the state-dict analyser's `unet-in-channels`
verdict. Standard library only.
"""

from __future__ import annotations

import re
from typing import Optional, Tuple

from .state_dict import UNET_IN_CHANNELS, Verdict

_DIMS = r"[\(\[](?P<{0}>\d+(?:,\s*\d+){{3}})[\)\]]"
_FORMS = (
    # torch.nn.functional.conv2d
    re.compile(r"weight of size \[\d+, (?P<expected>\d+), \d+, \d+\], expected input\[[\d, ]+\] to have "
               r"(?P=expected) channels, but got (?P<got>\d+) channels"),
    # Core ML / ONNX / TensorRT style: the whole 4-D shape on both sides
    re.compile(r"[Ee]xpected (?:input )?shape:?\s*" + _DIMS.format("expected_shape") + r",?\s*(?:but )?got:?\s*"
               + _DIMS.format("got_shape")),
    re.compile(r"[Gg]ot:?\s*" + _DIMS.format("got_shape") + r",?\s*(?:but )?expected:?\s*"
               + _DIMS.format("expected_shape")),
    # ONNX Runtime: "Got invalid dimensions for input: sample ... index: 1 Got: 4 Expected: 9"
    re.compile(r"invalid dimensions for input: (?P<name>\S+) for the following indices\s+index: 1 Got: (?P<got>\d+) "
               r"Expected: (?P<expected>\d+)"),
)


def _channels(found) -> Optional[Tuple[int, int]]:
    groups = found.groupdict()
    if groups.get("expected") and groups.get("got"):
        return int(groups["expected"]), int(groups["got"])
    expected = [int(n) for n in re.findall(r"\d+", groups.get("expected_shape") or "")]
    got = [int(n) for n in re.findall(r"\d+", groups.get("got_shape") or "")]
    if len(expected) == len(got) == 4 and expected[2:] == got[2:] and expected[1] != got[1]:
        return expected[1], got[1]
    return None


def shape_verdict(text: str) -> Optional[Verdict]:
    """The `unet-in-channels` verdict of a shape message in `text`, or None."""
    if not text or "xpected" not in text:
        return None
    for form in _FORMS:
        for found in form.finditer(text):
            channels = _channels(found)
            if channels is None:
                continue
            expected, got = channels
            if expected == got or expected not in UNET_IN_CHANNELS or got not in UNET_IN_CHANNELS:
                continue
            return Verdict(
                "unet-in-channels", "config.in-channels",
                f"the UNet takes {expected} input channels ({UNET_IN_CHANNELS[expected]}) but is given {got} "
                f"({UNET_IN_CHANNELS[got]}): the model and the config or pipeline feeding it are of different "
                "variants",
                f"use the config and pipeline of the checkpoint's variant ({UNET_IN_CHANNELS[expected]} UNet: "
                f"{expected} channels), or a {UNET_IN_CHANNELS[got]} checkpoint with this one")
    return None
