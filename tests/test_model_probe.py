"""The model probe: child-process protocol (faked runner), key grouping, CLIP files on disk, checkpoint shapes."""

from __future__ import annotations

import json
import struct

import pytest

from diagnostics.context import CommandResult, Context, Options
from diagnostics.probes import _model_child as child
from diagnostics.probes.checkpoint import read_safetensors_header as safetensors_header
from diagnostics.probes.environment import TorchBuild
from diagnostics.probes.model import (MARK, checkpoint_shapes, clip_key_shift, group_keys, probe_model,
                                      run_model_child, text_encoder_files)

from .rules_helpers import environment_facts


def line(event, **data):
    data["event"] = event
    return MARK + json.dumps(data)


class FakeRunner:
    def __init__(self, result):
        self.result = result
        self.calls = []

    def __call__(self, argv, timeout, env):
        self.calls.append((list(argv), timeout, dict(env or {})))
        return self.result


def context(tmp_path, runner, **options):
    cfg = tmp_path / "v1.yaml"
    cfg.write_text("model:\n  target: ldm.models.diffusion.ddpm.LatentDiffusion\n  params: {}\n", encoding="utf-8")
    opts = Options(config=str(cfg), timeout=30, **options)
    ctx = Context(opts, environ={"PATH": "/usr/bin", "PYTHONPATH": "/user/site"}, runner=runner, python="python3")
    ctx.set_fact("environment", environment_facts(torch=TorchBuild(installed=True, version="2.14.1", kind="cpu")))
    ctx.set_fact("ldm_config", {"given": True, "loaded": True, "path": str(cfg)})  # no yaml reader needed
    return ctx


def test_timeout_names_the_stage_that_was_running_and_keeps_the_output(tmp_path):
    out = "\n".join([line("start"), line("begin", stage="import"), "No module 'xformers'. Proceeding without it.",
                     line("end", stage="import", data={"target": "x.Y"}), line("begin", stage="instantiate"),
                     "DiffusionWrapper has 859.52 M params."])
    runner = FakeRunner(CommandResult(None, out, "", timed_out=True, error="timed out after 30 s"))
    facts = probe_model(context(tmp_path, runner))
    assert facts["error"]["stage"] == "instantiate" and facts["error"]["kind"] == "timeout"
    assert facts["stages"]["import"] == {"target": "x.Y"}
    assert facts["notable"]["xformers_missing"] and facts["notable"]["params_lines"] == ["DiffusionWrapper has 859.52 M params."]
    argv, timeout, env = runner.calls[0]
    assert argv[:3] == ["python3", "-m", "diagnostics.probes._model_child"] and timeout == 30
    assert env["PYTHONPATH"].split(":")[0] == "/user/site"  # the user's path first, ours after


def test_a_killed_child_is_reported_with_its_signal(tmp_path):
    out = "\n".join([line("start"), line("begin", stage="load")])
    facts = probe_model(context(tmp_path, FakeRunner(CommandResult(-9, out, "Killed"))))
    assert facts["error"]["kind"] == "killed" and facts["error"]["stage"] == "load"
    assert "signal 9" in facts["error"]["message"]


def test_load_keys_are_grouped_in_the_facts(tmp_path):
    data = {"missing": ["model_ema.decay"] + [f"model_ema.k{i}" for i in range(40)], "unexpected": [],
            "mismatched": [{"key": "model.diffusion_model.input_blocks.0.0.weight", "checkpoint": [1], "model": [2]}]}
    out = "\n".join([line("begin", stage="load"), line("end", stage="load", data=data), line("done")])
    facts = run_model_child(context(tmp_path, FakeRunner(CommandResult(0, out, ""))), {"config": "c"})
    load = facts["stages"]["load"]
    assert load["missing"]["count"] == 41 and load["missing"]["groups"][0]["component"] == "ema"
    assert len(load["missing"]["groups"][0]["keys"]) == 20  # a report shows counts and the first keys
    assert load["mismatched"]["groups"][0]["component"] == "unet" and facts["error"] is None


def test_no_config_and_missing_code_root_do_not_start_a_child(tmp_path):
    runner = FakeRunner(CommandResult(0, "", ""))
    ctx = Context(Options(), environ={}, runner=runner)
    assert probe_model(ctx)["reason"] == "no-config"
    ctx = context(tmp_path, runner, code_root=str(tmp_path / "missing"))
    assert probe_model(ctx)["reason"] == "code-root-missing" and not runner.calls


def test_group_keys_orders_components_and_keeps_counts():
    groups = group_keys(["first_stage_model.a", "model.diffusion_model.b", "betas", "model_ema.c"])
    assert [g["component"] for g in groups] == ["unet", "ema", "vae", "other"]
    assert all(g["count"] == 1 for g in groups)


def test_clip_key_shift_detects_the_transformers_5_rename():
    nested = "cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc1.weight"
    flat = "cond_stage_model.transformer.encoder.layers.0.mlp.fc1.weight"
    assert clip_key_shift([flat], [nested]) == {"file": "text_model", "count": 1}
    assert clip_key_shift([nested], [flat]) == {"file": "flat", "count": 1}
    assert clip_key_shift([], ["cond_stage_model.transformer.text_model.embeddings.position_ids"]) is None


def test_text_encoder_files_in_an_empty_hub_cache(tmp_path):
    facts = text_encoder_files("openai/clip-vit-large-patch14", {"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"},
                               cwd=str(tmp_path))
    assert facts["kind"] == "hub-id" and facts["cache_dir"] == str(tmp_path / "hub") and facts["offline"]
    assert facts["missing"] == ["vocab.json", "merges.txt", "config.json", "model.safetensors or pytorch_model.bin"]


def test_text_encoder_files_in_a_partly_filled_snapshot_and_a_local_dir(tmp_path):
    snap = tmp_path / "hub" / "models--openai--clip-vit-large-patch14" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    for name in ("vocab.json", "merges.txt", "config.json"):
        (snap / name).write_text("{}")
    (snap / "model.safetensors").symlink_to(tmp_path / "blob-that-is-gone")  # broken link = absent
    facts = text_encoder_files("openai/clip-vit-large-patch14", {"HF_HUB_CACHE": str(tmp_path / "hub")})
    assert facts["revisions"] == ["abc"] and facts["missing"] == ["model.safetensors or pytorch_model.bin"]
    local = tmp_path / "clip"
    local.mkdir()
    (local / "vocab.json").write_text("{}")
    facts = text_encoder_files(str(local), {})
    assert facts["kind"] == "local-dir" and "merges.txt" in facts["missing"] and not facts["shadows_hub_id"]


def test_safetensors_header_is_read_without_torch(tmp_path):
    header = json.dumps({"a": {"dtype": "F16", "shape": [2, 3], "data_offsets": [0, 12]}, "__metadata__": {}}).encode()
    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 12)
    assert safetensors_header(str(path))["a"]["shape"] == [2, 3]
    (tmp_path / "x.safetensors").write_bytes(b"<html>not a model</html>")
    assert safetensors_header(str(tmp_path / "x.safetensors")) is None
    ctx = Context(Options(checkpoint=str(path)), environ={})
    layout = checkpoint_shapes(ctx)
    assert layout["ok"] and layout.shapes == {"a": [2, 3]}
    assert ctx.facts["checkpoint_layout"]["tensors"] == 1 and "shapes" not in ctx.facts["checkpoint_layout"]


CHILD_WITHOUT_DEPENDENCIES = """
import json, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("jinja2", "requests", "packaging", "torch", "numpy", "omegaconf", "transformers"):
            raise ImportError("blocked for this test: " + name)
        return None
sys.meta_path.insert(0, Block())
from diagnostics.probes._model_child import checkpoint_format, main
print(json.dumps([checkpoint_format(path) for path in sys.argv[1:]]))
main(["layout", sys.argv[1]])
"""


def test_child_runs_in_an_interpreter_without_our_dependencies_or_torch(tmp_path):
    """The child runs in the user's interpreter: it imports only the standard library and our probes."""
    import subprocess
    import sys
    from pathlib import Path

    header = json.dumps({"a": {"dtype": "F16", "shape": [2, 3], "data_offsets": [0, 12]}}).encode()
    safetensors = tmp_path / "m.safetensors"
    safetensors.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 12)
    zipped = tmp_path / "m.ckpt"
    zipped.write_bytes(b"PK\x03\x04" + b"\0" * 60)
    pickled = tmp_path / "legacy.pt"
    pickled.write_bytes(b"\x80\x02" + b"\0" * 60)
    html = tmp_path / "page.ckpt"
    html.write_bytes(b"<!doctype html><title>Sign in</title>")
    root = str(Path(__file__).resolve().parents[1])
    argv = [sys.executable, "-c", CHILD_WITHOUT_DEPENDENCIES] + [str(p) for p in (safetensors, zipped, pickled, html)]
    proc = subprocess.run(argv, cwd=root, env={"PYTHONPATH": root, "PATH": "/usr/bin:/bin"}, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert json.loads(lines[0]) == ["safetensors", "torch-zip", "torch-legacy", "unknown"]
    event = child.parse_event_line(lines[1])
    assert event["event"] == "layout" and not event["ok"] and event["error"]["kind"] == "torch-missing"


# ------------------------------------------------------------------ the child's own functions (need torch)

class Payload:
    """A class a weights-only load must refuse (pickled by reference, never constructed by the reader)."""


def test_child_refuses_pickled_objects_and_names_them(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "unsafe.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "callbacks": Payload()}, str(path))
    with pytest.raises(child.StageError) as info:
        child.read_state_dict(str(path), torch)
    assert info.value.kind == "weights-only-refused"
    assert info.value.extra["unsafe_globals"] == [f"{__name__}.Payload"]


def test_child_unwraps_lightning_state_dict_and_reads_meta_shapes(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "ok.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2, 3), "step": 5}, "global_step": 7}, str(path))
    sd, fmt, extras = child.read_state_dict(str(path), torch, map_location="meta")
    assert fmt == "torch-zip" and list(sd) == ["w"] and sd["w"].shape == (2, 3) and sd["w"].device.type == "meta"
    assert extras["global_step"] == 7 and extras["non_tensor_entries"] == ["step"]


def test_parameters_on_meta_skips_allocation_but_not_pretrained_loaders():
    torch = pytest.importorskip("torch")
    original = torch.nn.Module.register_parameter
    with child.parameters_on_meta(torch, True):
        layer = torch.nn.Linear(4096, 4096)
    assert layer.weight.device.type == "meta" and layer.weight.shape == (4096, 4096)
    assert torch.nn.Module.register_parameter is original
    assert torch.nn.Linear(2, 2).weight.device.type == "cpu"


def test_static_shapes_of_a_pickled_checkpoint_come_from_the_non_executing_reader(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("diagnostics.probes.checkpoint")
    path = tmp_path / "unsafe.ckpt"
    torch.save({"state_dict": {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(8, 9, 3, 3)},
                "callbacks": Payload()}, str(path))
    layout = checkpoint_shapes(Context(Options(checkpoint=str(path)), environ={}))
    assert layout["ok"] and layout["format"] == "torch-zip"
    assert layout.shapes == {"model.diffusion_model.input_blocks.0.0.weight": [8, 9, 3, 3]}
    assert layout["unsafe_globals"] == [f"{__name__}.Payload"]


def test_layout_child_reads_shapes_with_weights_only(tmp_path):
    torch = pytest.importorskip("torch")
    from diagnostics.probes.model import read_checkpoint_shapes

    path = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(3, 4, dtype=torch.float16)}}, str(path))
    layout = read_checkpoint_shapes(Context(Options(checkpoint=str(path), timeout=120)), str(path))
    assert layout["ok"] and layout.shapes == {"w": [3, 4]} and layout.dtypes == {"w": "float16"}
