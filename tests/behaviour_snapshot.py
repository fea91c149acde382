"""Codes and statuses the checkpoint and config checks give on a fixed set of test checkpoints.

`python -m tests.behaviour_snapshot OUT.json` writes them; tests/data/behaviour-before-refactor.json
holds what the code gave before the checks became declarations, and `test_behaviour_unchanged`
compares every later commit with it: a refactor keeps the same findings on the same inputs.
Only `ckpt.*` and `config.*` (and `inspect --json`) are compared: the other areas depend on the
machine (network, cache, GPU), not on the inputs.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

from . import ckpt_factory as cf


def _cases(root: Path) -> Dict[str, Path]:
    inpaint = cf.ldm_state_dict("v1-inpainting-inference.yaml")
    txt2img = cf.ldm_state_dict("v1-inference.yaml")
    unet = [k for k in txt2img if k.startswith("model.diffusion_model.")]
    cases = {
        "sd1-txt2img-lightning.ckpt": cf.save_zip(cf.lightning_checkpoint(txt2img), root / "a.ckpt"),
        "sd1-inpainting.safetensors": cf.save_safetensors(inpaint, root / "b.safetensors"),
        "sd1-legacy.ckpt": cf.save_legacy({"state_dict": txt2img}, root / "c.ckpt"),
        "sd1-no-clip.safetensors": cf.save_safetensors(cf.without_prefix(txt2img, cf.CLIP_PREFIX), root / "d.safetensors"),
        "sd1-nai-style.ckpt": cf.save_zip({"state_dict": cf.nai_style(txt2img)}, root / "e.ckpt"),
        "sd1-merged-position-ids.ckpt": cf.save_zip({"state_dict": cf.merged_position_ids(txt2img)}, root / "f.ckpt"),
        "sd1-no-ema.safetensors": cf.save_safetensors(cf.without_prefix(txt2img, "model_ema."), root / "g.safetensors"),
        "sd1-ema-incomplete.safetensors": cf.save_safetensors(cf.drop_ema_twins(txt2img, unet[:5]), root / "h.safetensors"),
        "sd1-ema-untrained.ckpt": cf.save_zip({"state_dict": cf.untrained_ema(txt2img)}, root / "i.ckpt"),
        "sd1-nonfinite.safetensors": cf.save_safetensors(cf.with_nonfinite(txt2img, unet[0]), root / "j.safetensors"),
        "html-page.ckpt": cf.write_bytes(root / "k.ckpt", b"<!DOCTYPE html><html><body>404</body></html>\n"),
        "git-lfs-pointer.ckpt": cf.write_bytes(root / "l.ckpt", b"version https://git-lfs.github.com/spec/v1\n"
                                               b"oid sha256:" + b"0" * 64 + b"\nsize 4265380512\n"),
        "empty.safetensors": cf.write_bytes(root / "m.safetensors", b""),
    }
    whole = (root / "a.ckpt").read_bytes()
    cases["truncated.ckpt"] = cf.write_bytes(root / "n.ckpt", whole[: len(whole) // 2])
    return cases


PAIRS = {  # checkpoint case -> the configs it is checked against
    "sd1-txt2img-lightning.ckpt": ("v1-inference.yaml", "v1-inpainting-inference.yaml", "v2-inference.yaml"),
    "sd1-inpainting.safetensors": ("v1-inference.yaml", "v1-inpainting-inference.yaml"),
    "sd1-no-ema.safetensors": ("v1-inference.yaml",),
    "sd1-no-clip.safetensors": ("v1-inference.yaml",),
    "truncated.ckpt": ("v1-inference.yaml",),
}


def _codes(findings) -> List[str]:
    return sorted(f"{f.code}: {f.status.value}" for f in findings)


def _inspect(path: Path) -> List[str]:
    from diagnostics.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        main(["inspect", str(path), "--json"])
    return sorted(f"{f['code']}: {f['status']}" for f in json.loads(out.getvalue())["findings"])


def _checks(path: Path, config: str) -> List[str]:
    from diagnostics.context import Context, Options
    from diagnostics.registry import checks_in, run_checks

    ctx = Context(Options(checkpoint=str(path), config=config), environ={})
    return _codes(f for r in run_checks(ctx, checks_in("ckpt", "config")) for f in r.findings)


def snapshot() -> Dict[str, Dict[str, List[str]]]:
    configs = cf.config_dir()
    result: Dict[str, Dict[str, List[str]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in _cases(Path(tmp)).items():
            entry = {"inspect": _inspect(path)}
            for config in PAIRS.get(name, ()):
                entry[f"checks with {config}"] = _checks(path, str(configs / config))
            result[name] = entry
    return result


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(json.dumps(snapshot(), indent=1, sort_keys=True) + "\n")
