"""The CLIP tokenizer files built from the shipped BPE merges are the Hub's, byte for byte where it matters."""

from __future__ import annotations

import json

import pytest

from diagnostics import clip_files


@pytest.fixture(scope="module")
def files():
    return clip_files.tokenizer_files()


def test_vocab_and_merges_have_the_sizes_the_seed_lists(files):
    assert len(files["vocab.json"]) == 961143
    assert len(files["merges.txt"]) == 524619
    assert {k: len(files[k]) for k in clip_files.EXPECTED_SIZES} == clip_files.EXPECTED_SIZES


def test_vocabulary_has_49408_tokens_in_clip_order(files):
    vocab = json.loads(files["vocab.json"])
    assert len(vocab) == clip_files.VOCAB_SIZE
    assert sorted(vocab.values()) == list(range(clip_files.VOCAB_SIZE))
    assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407
    assert vocab["!"] == 0 and vocab["!</w>"] == 256
    # ids of the reference prompt's words, as FrozenCLIPEmbedder sees them
    assert [vocab[w] for w in ("a</w>", "photo</w>", "of</w>", "dog</w>")] == [320, 1125, 539, 1929]


def test_merges_file_has_header_and_every_rule(files):
    lines = files["merges.txt"].decode("utf-8").split("\n")
    assert lines[0] == "#version: 0.2"
    assert lines[-1] == ""  # ends with a newline
    assert len(lines) - 2 == clip_files.N_MERGES == 48894
    assert lines[1] == "i n"


def _openai_simple_tokenizer():
    """clip/simple_tokenizer.py loaded on its own: importing the `clip` package would import torch."""
    import importlib.util

    spec = importlib.util.find_spec("clip")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("openai-clip is not installed")
    pytest.importorskip("ftfy")
    pytest.importorskip("regex")
    path = list(spec.submodule_search_locations)[0] + "/simple_tokenizer.py"
    module_spec = importlib.util.spec_from_file_location("_openai_clip_simple_tokenizer", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def test_vocabulary_matches_openai_clip_own_encoder():
    simple = _openai_simple_tokenizer()
    theirs = simple.SimpleTokenizer(bpe_path=str(clip_files.BPE_FILE)).encoder
    assert theirs == clip_files.vocabulary()


def test_write_tokenizer_files_returns_paths_sizes_and_hashes(tmp_path):
    out = clip_files.write_tokenizer_files(tmp_path / "clip")
    assert set(out) == set(clip_files.TOKENIZER_FILES)
    assert out["vocab.json"]["size"] == 961143 and out["merges.txt"]["size"] == 524619
    for name, info in out.items():
        assert (tmp_path / "clip" / name).stat().st_size == info["size"]
        assert len(info["sha256"]) == 64
    assert sorted(p.name for p in (tmp_path / "clip").iterdir()) == sorted(clip_files.TOKENIZER_FILES)  # no temp files
    config = json.loads((tmp_path / "clip" / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "CLIPTokenizer" and config["model_max_length"] == 77


def test_write_tokenizer_files_keeps_existing_files_without_overwrite(tmp_path):
    (tmp_path / "vocab.json").write_text("{}")
    out = clip_files.write_tokenizer_files(tmp_path, overwrite=False)
    assert out["vocab.json"]["size"] == 2
    assert out["merges.txt"]["size"] == 524619


def test_a_tampered_merges_file_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / "bpe.txt.gz"
    fake.write_bytes(b"not gzip")
    monkeypatch.setattr(clip_files, "BPE_FILE", fake)
    with pytest.raises(clip_files.ClipDataError):
        clip_files.bpe_merges()


def test_licence_notice_ships_with_the_data():
    text = clip_files.LICENSE_FILE.read_text()
    assert "MIT License" in text and "Copyright (c) 2021 OpenAI" in text
    assert "bpe_simple_vocab_16e6.txt.gz" in text


def test_transformers_clip_tokenizer_reads_the_files(tmp_path):
    transformers = pytest.importorskip("transformers")
    clip_files.write_tokenizer_files(tmp_path)
    tok = transformers.CLIPTokenizer.from_pretrained(str(tmp_path))
    assert tok.vocab_size == clip_files.VOCAB_SIZE
    assert tok(clip_files.PROBE_TEXT)["input_ids"] == clip_files.PROBE_IDS
