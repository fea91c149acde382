"""The offline CLIP remedy on small text towers: key layouts, containers, placement rules, safety.

The remedy provisions the ViT-L/14 tower; `provision(..., tower=TINY)` runs the same code on a 2-layer
tower so every layout and container is covered in seconds. The full-size path, with the real `ldm`
classes and the command line, is tests/test_provision_clip_end_to_end.py.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from diagnostics.remedies import clip_offline as co
from diagnostics.remedies.clip_offline import TextTower, provision, writers
from tests import ckpt_factory as f
from tests.fakehub import download_cli, pythonpath

ROOT = Path(__file__).resolve().parents[1]
TINY = TextTower("tiny CLIP text tower", vocab_size=1000, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                 num_attention_heads=4, max_position_embeddings=77, projection_dim=32)
UNET_KEY = "model.diffusion_model.input_blocks.0.0.weight"


def versions(transformers=None):
    import importlib.metadata as md

    def v(name):
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    if transformers:  # hand-made facts: a modern stack, whatever this interpreter has
        return {"transformers": transformers, "safetensors": "0.8.0", "huggingface_hub": "2.4.0", "torch": "2.14.1"}
    return {"transformers": v("transformers"), "safetensors": v("safetensors"),
            "huggingface_hub": v("huggingface_hub"), "torch": v("torch")}


@pytest.fixture(scope="module")
def hub_state():
    """A tiny CLIPTextModel's weights under the Hub's names (text_model.*), in float16."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = {k: v for k, v in co.text_config(TINY).items() if k not in ("architectures", "model_type")}
    torch.manual_seed(0)
    model = transformers.CLIPTextModel(transformers.CLIPTextConfig(**config))
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("position_ids"):
            continue
        name = key if key.startswith("text_model.") else "text_model." + key  # transformers 5 has flat names
        state[name] = value.detach().to(torch.float16).contiguous().clone()
    return state


def layout(state, style):
    """The checkpoint spellings of the same tower, next to a UNet tensor and (SD 1.x) merged position_ids."""
    import torch

    prefix = {"sd1": "cond_stage_model.transformer.", "nai": "cond_stage_model.transformer.",
              "sdxl": "conditioner.embedders.0.transformer."}[style]
    out = {}
    for key, value in state.items():
        out[prefix + (key[len("text_model."):] if style == "nai" else key)] = value
    if style == "sd1":
        out = f.merged_position_ids(out)  # float32 with 75.9975: must never be copied
    out[UNET_KEY] = torch.zeros(32, 4, 3, 3, dtype=torch.float16)
    return out


def save(sd, container, tmp_path):
    if container == "zip":
        return f.save_zip(f.lightning_checkpoint(sd), tmp_path / "model.ckpt")
    if container == "legacy":
        return f.save_legacy(f.lightning_checkpoint(sd), tmp_path / "model-legacy.ckpt")
    if container == "safetensors":
        return f.save_safetensors(sd, tmp_path / "model.safetensors")
    folder = tmp_path / "diffusers"
    (folder / "text_encoder").mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    te = {k[len("cond_stage_model.transformer."):]: v for k, v in sd.items()
          if k.startswith("cond_stage_model.transformer.") and not k.endswith("position_ids")}
    f.save_safetensors(te, folder / "text_encoder" / "model.safetensors")
    return folder


def read_out(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def assert_same_tensors(written, state):
    import torch

    assert sorted(written) == sorted(state)
    for key, value in state.items():
        assert written[key].dtype == value.dtype, key
        assert torch.equal(written[key], value), key


# -- the text tower, its config and its names -----------------------------------------------------------

def test_expected_names_and_sizes_match_transformers_clip_text_model():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = {k: v for k, v in co.text_config(co.VIT_L14).items() if k not in ("architectures", "model_type")}
    with torch.device("meta"):
        model = transformers.CLIPTextModel(transformers.CLIPTextConfig(**config))
    actual = {}
    for key, value in model.state_dict().items():
        if not key.endswith("position_ids"):
            actual[key if key.startswith("text_model.") else "text_model." + key] = tuple(value.shape)
    assert co.VIT_L14.expected_shapes() == actual
    assert co.VIT_L14.parameters() == sum(p.numel() for p in model.parameters())
    assert len(actual) == 196  # the SD 1.x text encoder: 197 keys with position_ids


def test_config_json_loads_as_clip_text_model_in_float32_from_float16_weights(tmp_path, hub_state):
    transformers = pytest.importorskip("transformers")
    import torch

    ckpt = save(layout(hub_state, "sd1"), "safetensors", tmp_path)
    result = provision(str(ckpt), "out", versions(), out_dir=str(tmp_path / "clip"), tower=TINY)
    assert result.state == "provisioned", result.message
    config = json.loads((tmp_path / "clip" / "config.json").read_text())
    assert config["model_type"] == "clip_text_model" and config["torch_dtype"] == "float32"
    model, info = transformers.CLIPTextModel.from_pretrained(str(tmp_path / "clip"), output_loading_info=True)
    assert not any(info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    assert model.dtype == torch.float32  # as the Hub's config, and as ldm's model after load_state_dict
    params = {("text_model." + k if not k.startswith("text_model.") else k): v for k, v in model.state_dict().items()}
    for key, value in hub_state.items():
        assert torch.equal(params[key], value.float()), key
    tokenizer = transformers.CLIPTokenizer.from_pretrained(str(tmp_path / "clip"))
    assert tokenizer.vocab_size == 49408
    assert tokenizer("a photo of a dog")["input_ids"] == [49406, 320, 1125, 539, 320, 1929, 49407]


# -- layouts and containers --------------------------------------------------------------------------------

@pytest.mark.parametrize("container", ["zip", "legacy", "safetensors"])
@pytest.mark.parametrize("style", ["sd1", "nai", "sdxl"])
def test_text_encoder_is_copied_unchanged_from_every_layout_and_container(tmp_path, hub_state, style, container):
    ckpt = save(layout(hub_state, style), container, tmp_path)
    result = provision(str(ckpt), "out", versions("5.24.0"), out_dir=str(tmp_path / "out"), tower=TINY)
    assert result.state == "provisioned", result.message
    assert result.source["tensors"] == len(hub_state)
    assert result.source["dtypes"] == {"float16": len(hub_state)}
    written = read_out(tmp_path / "out" / "model.safetensors")
    assert_same_tensors(written, hub_state)  # renamed to text_model.*, no position_ids for transformers >= 4.31
    names = sorted(os.listdir(tmp_path / "out"))
    assert names == sorted(["README.md", "config.json", "merges.txt", "model.safetensors", "special_tokens_map.json",
                            "tokenizer_config.json", "vocab.json"])
    assert (tmp_path / "out" / "vocab.json").stat().st_size == 961143
    assert (tmp_path / "out" / "merges.txt").stat().st_size == 524619


def test_diffusers_text_encoder_folder(tmp_path, hub_state):
    folder = save(layout(hub_state, "sd1"), "diffusers", tmp_path)
    result = provision(str(folder), "out", versions("5.24.0"), out_dir=str(tmp_path / "out"), tower=TINY)
    assert result.state == "provisioned", result.message
    assert result.source["prefix"] == "text_encoder/text_model."
    assert_same_tensors(read_out(tmp_path / "out" / "model.safetensors"), hub_state)


def test_fp32_checkpoint_stays_fp32(tmp_path, hub_state):
    import torch

    state32 = {k: v.float() for k, v in hub_state.items()}
    ckpt = save(layout(state32, "nai"), "safetensors", tmp_path)
    result = provision(str(ckpt), "out", versions("5.24.0"), out_dir=str(tmp_path / "out"), tower=TINY)
    written = read_out(tmp_path / "out" / "model.safetensors")
    assert result.source["dtypes"] == {"float32": len(state32)}
    assert all(v.dtype == torch.float32 for v in written.values())
    assert_same_tensors(written, state32)


def test_position_ids_are_fresh_for_transformers_before_4_31_and_never_the_checkpoints(tmp_path, hub_state):
    import torch

    ckpt = save(layout(hub_state, "sd1"), "zip", tmp_path)  # carries float position_ids with 75.9975
    result = provision(str(ckpt), "out", versions("4.30.2"), out_dir=str(tmp_path / "out"), tower=TINY)
    assert result.state == "provisioned", result.message
    written = read_out(tmp_path / "out" / "model.safetensors")
    ids = written.pop("text_model.embeddings.position_ids")
    assert ids.dtype == torch.int64 and torch.equal(ids, torch.arange(77)[None])
    assert_same_tensors(written, hub_state)
    assert co.position_ids_wanted("4.19.2") and co.position_ids_wanted("4.30.2")
    assert not co.position_ids_wanted("4.31.0") and not co.position_ids_wanted("5.24.0")


def test_both_spellings_complete_the_one_ldm_applies_with_this_transformers_wins(tmp_path, hub_state):
    import torch

    nested = layout(hub_state, "sd1")
    other = {k: (v + 1 if v.is_floating_point() else v) for k, v in hub_state.items()}
    both = dict(nested)
    both.update({k: v for k, v in layout(other, "nai").items() if k != UNET_KEY})
    ckpt = save(both, "safetensors", tmp_path)
    for tv, prefix, expected in (("5.24.0", "cond_stage_model.transformer.", other),
                                 ("4.30.2", "cond_stage_model.transformer.text_model.", hub_state)):
        out = tmp_path / tv
        result = provision(str(ckpt), "out", versions(tv), out_dir=str(out), tower=TINY)
        assert result.source["prefix"] == prefix
        written = read_out(out / "model.safetensors")
        written.pop("text_model.embeddings.position_ids", None)
        assert_same_tensors(written, expected)
        assert torch.equal(written["text_model.final_layer_norm.bias"], expected["text_model.final_layer_norm.bias"])


# -- refusals --------------------------------------------------------------------------------------------------

def test_checkpoint_without_text_encoder_says_so_and_writes_nothing(tmp_path, hub_state):
    sd = {k: v for k, v in layout(hub_state, "sd1").items() if not k.startswith("cond_stage_model.")}
    ckpt = save(sd, "safetensors", tmp_path)
    result = provision(str(ckpt), "out", versions(), out_dir=str(tmp_path / "out"), tower=TINY)
    assert result.state == "no-text-encoder" and not result.ok
    assert "no CLIP ViT-L/14 text encoder" in result.message
    assert not (tmp_path / "out").exists()
    command = co.minimal_download(versions())
    assert command.startswith(f"{download_cli()} openai/clip-vit-large-patch14 vocab.json merges.txt")
    assert "config.json model.safetensors" in command and "tokenizer.json" not in command


def test_an_sd2_checkpoint_names_its_openclip_text_encoder(tmp_path):
    torch = pytest.importorskip("torch")

    sd = {"cond_stage_model.model.token_embedding.weight": torch.zeros(49408, 8, dtype=torch.float16),
          "cond_stage_model.model.positional_embedding": torch.zeros(77, 8, dtype=torch.float16),
          UNET_KEY: torch.zeros(32, 4, 3, 3, dtype=torch.float16)}
    ckpt = save(sd, "safetensors", tmp_path)
    result = provision(str(ckpt), "out", versions(), out_dir=str(tmp_path / "out"), tower=TINY)
    assert result.state == "no-text-encoder"
    assert "its text encoder is openclip-h, not CLIP ViT-L/14" in result.message


def test_incomplete_text_encoder_is_refused(tmp_path, hub_state):
    sd = layout(hub_state, "nai")
    dropped = "cond_stage_model.transformer.encoder.layers.1.mlp.fc2.weight"
    del sd[dropped]
    ckpt = save(sd, "safetensors", tmp_path)
    result = provision(str(ckpt), "out", versions(), out_dir=str(tmp_path / "out"), tower=TINY)
    assert result.state == "unusable-text-encoder"
    assert result.source["missing"] == ["text_model.encoder.layers.1.mlp.fc2.weight"]
    assert f"1 of {len(TINY.expected_shapes())} tensors are missing" in result.message
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_a_tower_of_another_size_is_refused_with_the_shape(tmp_path, hub_state):
    ckpt = save(layout(hub_state, "sd1"), "safetensors", tmp_path)
    result = provision(str(ckpt), "out", versions(), out_dir=str(tmp_path / "out"))  # the ViT-L/14 remedy
    assert result.state == "unusable-text-encoder"
    assert "other shapes than the CLIP ViT-L/14 text tower" in result.message
    assert "[1000, 32]" in result.message and "[49408, 768]" in result.message


def test_unreadable_file_is_a_result_not_an_exception(tmp_path):
    bad = f.write_bytes(tmp_path / "model.ckpt", b"version https://git-lfs.github.com/spec/v1\noid sha256:" +
                        b"0" * 64 + b"\nsize 123\n")
    result = provision(str(bad), "out", versions(), out_dir=str(tmp_path / "out"), tower=TINY)
    assert result.state == "unreadable" and "git-lfs" in result.message


def test_the_checkpoints_pickle_code_never_runs(tmp_path, hub_state):
    clean = save(layout(hub_state, "sd1"), "zip", tmp_path)
    marker = tmp_path / "pwned"
    for kind, payload in f.payloads(marker).items():
        if not payload.startswith(b"\x80\x02"):
            continue
        evil = tmp_path / f"evil-{kind}.ckpt"
        pkl = f.inject_into_data_pkl(f.data_pkl_of(clean), payload[2:-1])
        f.rewrite_zip(clean, evil, {"/data.pkl": pkl})
        result = provision(str(evil), "out", versions("5.24.0"), out_dir=str(tmp_path / kind), tower=TINY)
        assert not marker.exists(), kind
        assert result.state == "provisioned" and result.source["executed"] is False
        assert result.source["unsafe_globals"], kind  # seen, reported, not run
        assert_same_tensors(read_out(tmp_path / kind / "model.safetensors"), hub_state)


# -- placement ------------------------------------------------------------------------------------------------

def cache_world(tmp_path, tv="5.24.0"):
    from diagnostics.probes.cache import cache_locations

    env = {"HOME": str(tmp_path / "home"), "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": "https://huggingface.co"}
    return env, cache_locations(env, versions(tv))


def test_hub_layout_as_huggingface_hub_reads_it(tmp_path, hub_state):
    hub = pytest.importorskip("huggingface_hub")
    ckpt = save(layout(hub_state, "sd1"), "safetensors", tmp_path)
    env, locations = cache_world(tmp_path)
    result = provision(str(ckpt), "hf-cache", versions("5.24.0"), locations=locations, tower=TINY)
    assert result.state == "provisioned", result.message
    cache = locations["transformers"]["path"]
    repo = Path(cache) / "models--openai--clip-vit-large-patch14"
    assert (repo / "refs" / "main").read_text() == result.revision and len(result.revision) == 40
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "config.json", "model.safetensors"):
        found = hub.try_to_load_from_cache("openai/clip-vit-large-patch14", name, cache_dir=cache)
        assert found == str(repo / "snapshots" / result.revision / name)
        assert os.path.islink(found) and os.readlink(found).startswith(os.path.join("..", "..", "blobs"))
    info = hub.scan_cache_dir(cache)
    assert [r.repo_id for r in info.repos] == ["openai/clip-vit-large-patch14"] and not info.warnings
    assert co.is_ours(str(repo / "snapshots" / result.revision))
    assert not [p for p in repo.rglob("*") if p.name.endswith(".incomplete")]
    weights = repo / "snapshots" / result.revision / "model.safetensors"
    assert os.path.basename(os.readlink(weights)) == writers.sha256_file(str(weights))  # LFS etag = sha256


def test_a_complete_entry_is_never_overwritten(tmp_path, hub_state):
    from tests.fakehub import clip_repo, populate_cache

    ckpt = save(layout(hub_state, "sd1"), "safetensors", tmp_path)
    env, locations = cache_world(tmp_path)
    repo = populate_cache(Path(locations["transformers"]["path"]), "openai/clip-vit-large-patch14", clip_repo())
    before = {str(p): (p.stat().st_mtime_ns, p.read_bytes()) for p in repo.rglob("*") if p.is_file()}
    ref = (repo / "refs" / "main").read_text()
    result = provision(str(ckpt), "hf-cache", versions("5.24.0"), locations=locations, tower=TINY)
    assert result.state == "already-complete" and result.existing_ours is False
    assert result.files == [] and "never overwritten" in result.message
    assert {str(p): (p.stat().st_mtime_ns, p.read_bytes()) for p in repo.rglob("*") if p.is_file()} == before
    assert (repo / "refs" / "main").read_text() == ref


def test_an_incomplete_entry_gets_our_snapshot_and_keeps_its_files(tmp_path, hub_state):
    from tests.fakehub import COMMIT, clip_repo, populate_cache

    ckpt = save(layout(hub_state, "sd1"), "safetensors", tmp_path)
    env, locations = cache_world(tmp_path)
    partial = {k: v for k, v in clip_repo().items() if k in ("vocab.json", "merges.txt")}  # an interrupted download
    repo = populate_cache(Path(locations["transformers"]["path"]), "openai/clip-vit-large-patch14", partial)
    real_vocab = (repo / "snapshots" / COMMIT / "vocab.json").resolve()
    mtime = real_vocab.stat().st_mtime_ns
    result = provision(str(ckpt), "hf-cache", versions("5.24.0"), locations=locations, tower=TINY)
    assert result.state == "provisioned" and result.previous_ref == COMMIT
    assert (repo / "refs" / "main").read_text() == result.revision != COMMIT
    assert sorted(os.listdir(repo / "snapshots" / COMMIT)) == ["merges.txt", "vocab.json"]  # untouched
    vocab = next(x for x in result.files if x["name"] == "vocab.json")
    assert vocab["written"] is False  # byte-identical to the Hub's: the same blob serves both snapshots
    assert Path(vocab["path"]).resolve() == real_vocab and real_vocab.stat().st_mtime_ns == mtime
    assert f"refs/main pointed to `{COMMIT}`" in (repo / "snapshots" / result.revision / "README.md").read_text()


def test_a_second_run_finds_its_own_complete_entry(tmp_path, hub_state):
    ckpt = save(layout(hub_state, "sd1"), "safetensors", tmp_path)
    env, locations = cache_world(tmp_path)
    first = provision(str(ckpt), "hf-cache", versions("5.24.0"), locations=locations, tower=TINY)
    second = provision(str(ckpt), "hf-cache", versions("5.24.0"), locations=locations, tower=TINY)
    assert first.state == "provisioned" and second.state == "already-complete"
    assert second.existing_ours is True and "written earlier by provision-clip" in second.message


def test_an_interrupted_write_leaves_no_visible_entry_and_no_temporary_files(tmp_path, hub_state, monkeypatch):
    from diagnostics.probes.cache import _hub_lib, resolve_model

    ckpt = save(layout(hub_state, "sd1"), "safetensors", tmp_path)
    env, locations = cache_world(tmp_path)

    def fail(fh, entries, sources, metadata):
        fh.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writers, "write_safetensors", fail)
    result = provision(str(ckpt), "hf-cache", versions("5.24.0"), locations=locations, tower=TINY)
    assert result.state == "write-error" and "No space left on device" in result.message
    repo = Path(locations["transformers"]["path"]) / "models--openai--clip-vit-large-patch14"
    assert not repo.exists()  # an empty repo folder would read as a corrupted cache entry
    assert Path(locations["transformers"]["path"]).is_dir()  # the cache itself stays, without temporary files
    assert not [p for p in Path(locations["transformers"]["path"]).rglob("*") if p.name.endswith(".incomplete")]
    assert resolve_model(co.clip_model_entry(versions("5.24.0")), locations, _hub_lib())["complete"] is False


def test_out_dir_never_overwrites_an_existing_file(tmp_path, hub_state):
    ckpt = save(layout(hub_state, "sd1"), "safetensors", tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text("{\"mine\": true}\n")
    result = provision(str(ckpt), "out", versions("5.24.0"), out_dir=str(out), tower=TINY)
    assert result.state == "provisioned"
    assert (out / "config.json").read_text() == "{\"mine\": true}\n"
    kept = next(x for x in result.files if x["name"] == "config.json")
    assert kept["written"] is False and kept["kept_existing"] is True
    assert not [p for p in out.iterdir() if p.name.endswith(".incomplete")]


def test_legacy_flat_cache_for_transformers_before_4_22(tmp_path, hub_state):
    import torch

    from diagnostics.probes.cache import legacy_filename, resolve_model

    ckpt = save(layout(hub_state, "sd1"), "zip", tmp_path)
    env, locations = cache_world(tmp_path, "4.19.2")
    assert locations["transformers"]["layout"] == "legacy"
    result = provision(str(ckpt), "hf-cache", versions("4.19.2"), locations=locations, tower=TINY)
    assert result.state == "provisioned", result.message
    assert result.weights_name == "pytorch_model.bin"  # transformers 4.19 reads nothing else
    cache = locations["transformers"]["path"]
    url = "https://huggingface.co/openai/clip-vit-large-patch14/resolve/main/pytorch_model.bin"
    weights = next(x for x in result.files if x["name"] == "pytorch_model.bin")
    assert os.path.basename(weights["path"]).split(".")[0] == legacy_filename(url)
    sidecar = json.loads(Path(weights["path"] + ".json").read_text())
    assert sidecar["url"] == url and sidecar["provisioned_by"] == co.MARKER_LINE
    state = torch.load(weights["path"], map_location="cpu", weights_only=True)
    ids = state.pop("text_model.embeddings.position_ids")
    assert torch.equal(ids, torch.arange(77)[None])
    assert_same_tensors(state, hub_state)
    resolution = resolve_model(co.clip_model_entry(versions("4.19.2")), locations)
    assert resolution["layout"] == "legacy" and resolution["complete"], resolution
    listing = sorted(os.listdir(cache))
    assert len([n for n in listing if not n.endswith(".json")]) == len(result.files)
    again = provision(str(ckpt), "hf-cache", versions("4.19.2"), locations=locations, tower=TINY)
    assert again.state == "already-complete" and again.existing_ours is True
    assert sorted(os.listdir(cache)) == listing  # nothing added the second time


def test_pytorch_model_bin_without_torch_is_a_clear_result(tmp_path, hub_state, monkeypatch):
    ckpt = save(layout(hub_state, "sd1"), "safetensors", tmp_path)
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    result = provision(str(ckpt), "out", versions("4.19.2"), out_dir=str(tmp_path / "out"), tower=TINY)
    assert result.state == "needs-torch" and "reads only pytorch_model.bin" in result.message
    assert not (tmp_path / "out").exists()


BLOCKER = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "numpy", "safetensors", "transformers", "huggingface_hub"):
            raise ImportError("blocked for this test: " + name)
        return None
sys.meta_path.insert(0, Block())
"""


def test_model_safetensors_is_written_without_torch_numpy_or_safetensors(tmp_path, hub_state):
    ckpt = save(layout(hub_state, "sd1"), "zip", tmp_path)
    code = BLOCKER + (
        "from diagnostics.remedies.clip_offline import TextTower, provision\n"
        f"tower = TextTower(**{TINY.__dict__!r})\n"
        f"r = provision({str(ckpt)!r}, 'out', {{'transformers': '5.24.0', 'safetensors': '0.8.0'}}, "
        f"out_dir={str(tmp_path / 'out')!r}, "
        "tower=tower)\n"
        "print(r.state, sorted(m for m in ('torch', 'numpy', 'safetensors') if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["provisioned", "[]"]
    assert_same_tensors(read_out(tmp_path / "out" / "model.safetensors"), hub_state)


def test_safetensors_header_is_valid_for_the_safetensors_library(tmp_path):
    safetensors = pytest.importorskip("safetensors")
    entries = [("a", "float16", (2, 3), b"\x00" * 12), ("b", "int64", (1, 77), struct.pack("<77q", *range(77)))]
    path = tmp_path / "x.safetensors"
    with open(path, "wb") as fh:
        writers.write_safetensors(fh, entries, writers.TensorSources(str(path)), {"format": "pt"})
    with safetensors.safe_open(str(path), "np") as st:
        assert st.metadata() == {"format": "pt"}
        assert list(st.get_tensor("b")[0]) == list(range(77))
        assert st.get_tensor("a").shape == (2, 3)
    assert (8 + struct.unpack("<Q", path.read_bytes()[:8])[0]) % 8 == 0


# -- the command line ----------------------------------------------------------------------------------------

def cli(*args, cwd, env=None):
    full = dict(os.environ if env is None else env)
    full["PYTHONPATH"] = pythonpath(ROOT)
    return subprocess.run([sys.executable, "-m", "diagnostics", "provision-clip", *args], cwd=str(cwd), env=full,
                          capture_output=True, text=True, timeout=300)


def test_usage_errors_exit_2(tmp_path):
    (tmp_path / "file").write_text("x")
    cases = [
        (["--hf-cache"], "--checkpoint CKPT is required"),
        (["--checkpoint", str(tmp_path / "missing.ckpt"), "--hf-cache"], "does not exist"),
        (["--checkpoint", str(tmp_path / "file"), "--out", str(tmp_path / "file")], "is not a directory"),
        (["--checkpoint", str(tmp_path / "file"), "--clip-dir", str(tmp_path / "file")], "is not a directory"),
        (["--checkpoint", str(tmp_path / "file"), "--hf-cache", "--clip-dir", str(tmp_path / "o")], "not allowed with"),
        (["--checkpoint", str(tmp_path / "file"), "--hf-cache", "--out", str(tmp_path / "o")], "not allowed with"),
        (["--checkpoint", str(tmp_path / "file")], "one of the arguments --hf-cache --clip-dir/--out is required"),
    ]
    env = {k: v for k, v in os.environ.items() if k != "LDM_DIAG_CHECKPOINT"}
    for args, message in cases:
        proc = cli(*args, cwd=tmp_path, env=env)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert message in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_no_text_encoder_prints_the_minimal_download_and_exits_1(tmp_path, hub_state):
    from tests.fakehub import closed_port, hermetic_env

    sd = {k: v for k, v in layout(hub_state, "sd1").items() if not k.startswith("cond_stage_model.")}
    ckpt = save(sd, "safetensors", tmp_path)
    env = hermetic_env(tmp_path, HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}")
    proc = cli("--checkpoint", str(ckpt), "--hf-cache", "--report-dir", "rep", "--format", "json", cwd=tmp_path,
               env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "no CLIP ViT-L/14 text encoder" in proc.stdout
    assert f"{download_cli()} openai/clip-vit-large-patch14 vocab.json merges.txt" in proc.stdout
    data = json.loads((tmp_path / "rep" / "resolution-report.json").read_text())
    assert data["status"] == "UNRESOLVED" and "remedy.clip-offline" in data["blocking"]
    assert not (tmp_path / "hf" / "hub" / "models--openai--clip-vit-large-patch14").exists()


def test_the_remedy_verdict_follows_the_offline_load_in_the_child():
    from diagnostics.remedies.clip_offline.recheck import remedy_finding
    from diagnostics.findings import Status

    done = co.ProvisionResult("provisioned", "hf-cache", "Provisioned it.", files=[], seconds=1.0)
    good = {"vocab_size": 49408, "ids": [49406, 320, 1125, 539, 320, 1929, 49407], "finite": True}
    ok = remedy_finding(done, versions("5.24.0"), "HF_HUB_OFFLINE=1", good)
    assert ok.status is Status.OK and "HF_HUB_OFFLINE=1" in ok.fix
    degenerate = remedy_finding(done, versions("5.24.0"), "HF_HUB_OFFLINE=1", dict(good, vocab_size=2, ids=[0, 2]))
    assert degenerate.status is Status.FAIL and degenerate.blocking and "vocabulary 2, ids [0, 2]" in degenerate.summary
    crashed = remedy_finding(done, versions("5.24.0"), "HF_HUB_OFFLINE=1", {"error": "OSError: no config.json"})
    assert crashed.status is Status.FAIL and "OSError: no config.json" in crashed.summary
    untried = remedy_finding(done, versions("5.24.0"), "HF_HUB_OFFLINE=1", {"error": "ModuleNotFoundError: torch"})
    assert untried.status is Status.WARN and not untried.blocking
    missing = co.ProvisionResult("no-text-encoder", "hf-cache", "The checkpoint has no CLIP ViT-L/14 text encoder.")
    fail = remedy_finding(missing, versions("5.24.0"), "HF_HUB_OFFLINE=1")
    assert fail.status is Status.FAIL and fail.blocking
    assert fail.fix.startswith("On a machine with network: `hf download openai/clip-vit-large-patch14 vocab.json")
