"""The Hugging Face files of the CLIP tokenizer, built from the BPE merges list shipped in this package.

`openai/clip-vit-large-patch14` (and every OpenAI CLIP checkpoint) uses one byte-level BPE tokenizer:
49,408 tokens = 256 byte symbols + the same 256 with the end-of-word marker `</w>` + 48,894 merges +
`<|startoftext|>` and `<|endoftext|>`. OpenAI's `clip` package ships the merges as
`bpe_simple_vocab_16e6.txt.gz` (MIT, see data/CLIP-LICENSE); this module turns it into the files
`CLIPTokenizer.from_pretrained(<dir>)` reads, byte for byte the same `vocab.json` (961,143 bytes) and
`merges.txt` (524,619 bytes) as the Hub repository has, so a tokenizer can be provisioned without the
Hub. Pure standard library: no transformers needed to build the files.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path
from typing import Dict, List, Optional

DATA_DIR = Path(__file__).resolve().parent / "data"
BPE_FILE = DATA_DIR / "bpe_simple_vocab_16e6.txt.gz"
LICENSE_FILE = DATA_DIR / "CLIP-LICENSE"
BPE_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"

VOCAB_SIZE = 49408
MODEL_MAX_LENGTH = 77
BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
# Number of merges CLIP uses: the vocabulary is 49,408 = 2 * 256 byte symbols + merges + 2 specials.
N_MERGES = VOCAB_SIZE - 2 * 256 - 2

# What the seed's working download listed, and what the Hub serves for openai/clip-vit-large-patch14.
EXPECTED_SIZES = {"vocab.json": 961143, "merges.txt": 524619}

# The reference encoding FrozenCLIPEmbedder depends on (CLIP's own tokenizer gives the same ids).
PROBE_TEXT = "a photo of a dog"
PROBE_IDS = [49406, 320, 1125, 539, 320, 1929, 49407]

TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")


class ClipDataError(RuntimeError):
    """The shipped merges file is missing or is not the one this module was written for."""


def _bytes_to_unicode() -> Dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable characters (the BPE base alphabet)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1))
    printable += list(range(ord("\u00ae"), ord("\u00ff") + 1))
    byte_values = printable[:]
    code_points = printable[:]
    shifted = 0
    for byte in range(256):
        if byte not in printable:  # control and blank bytes get code points above 255, in byte order
            byte_values.append(byte)
            code_points.append(256 + shifted)
            shifted += 1
    return dict(zip(byte_values, [chr(c) for c in code_points]))


def bpe_merges(path: Optional[Path] = None) -> List[str]:
    """The 48,894 merge rules ("a b" per line) in priority order."""
    path = Path(path) if path is not None else BPE_FILE
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ClipDataError(f"cannot read the CLIP merges file {path}: {exc}") from exc
    if path == BPE_FILE and hashlib.sha256(raw).hexdigest() != BPE_SHA256:
        raise ClipDataError(f"{path} is not the merges file shipped with ldm-diagnostics (sha256 differs)")
    lines = gzip.decompress(raw).decode("utf-8").split("\n")
    # Line 0 is a header; CLIP keeps the first N_MERGES rules (simple_tokenizer.py does the same slice).
    merges = lines[1:1 + N_MERGES]
    if len(merges) != N_MERGES:
        raise ClipDataError(f"{path} holds {len(merges)} merges, expected {N_MERGES}")
    return merges


def vocabulary(merges: Optional[List[str]] = None) -> Dict[str, int]:
    """Token -> id, in CLIP's order (ids 0..49407)."""
    merges = bpe_merges() if merges is None else merges
    base = list(_bytes_to_unicode().values())
    tokens = base + [t + "</w>" for t in base]
    tokens.extend("".join(m.split()) for m in merges)
    tokens.extend([BOS_TOKEN, EOS_TOKEN])
    return {tok: i for i, tok in enumerate(tokens)}


def tokenizer_files() -> Dict[str, bytes]:
    """File name -> content for a CLIP tokenizer directory (the four files CLIPTokenizer reads)."""
    merges = bpe_merges()
    vocab = vocabulary(merges)
    tokenizer_config = {
        "tokenizer_class": "CLIPTokenizer",  # lets transformers 4.19 skip AutoConfig
        "model_max_length": MODEL_MAX_LENGTH,
        "do_lower_case": True,
        "errors": "replace",
        "add_prefix_space": False,
        "bos_token": BOS_TOKEN,
        "eos_token": EOS_TOKEN,
        "unk_token": EOS_TOKEN,
        "pad_token": EOS_TOKEN,
    }
    special_tokens = {"bos_token": BOS_TOKEN, "eos_token": EOS_TOKEN, "unk_token": EOS_TOKEN, "pad_token": EOS_TOKEN}
    return {
        # Hub serialisation: json.dumps defaults except non-ASCII kept as UTF-8.
        "vocab.json": json.dumps(vocab, ensure_ascii=False).encode("utf-8"),
        "merges.txt": ("#version: 0.2\n" + "\n".join(merges) + "\n").encode("utf-8"),
        "tokenizer_config.json": (json.dumps(tokenizer_config, indent=2) + "\n").encode("utf-8"),
        "special_tokens_map.json": (json.dumps(special_tokens, indent=2) + "\n").encode("utf-8"),
    }


def write_tokenizer_files(dest_dir, overwrite: bool = True) -> Dict[str, Dict[str, object]]:
    """Write the CLIP tokenizer files into `dest_dir` (created if needed).

    Returns file name -> {"path", "size", "sha256"}. Each file is written to a temporary name and
    renamed, so an interrupted run never leaves a truncated vocab.json behind. With
    `overwrite=False` existing files are kept and reported as they are.
    """
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    written: Dict[str, Dict[str, object]] = {}
    for name, content in tokenizer_files().items():
        target = dest / name
        if overwrite or not target.exists():
            tmp = dest / f".{name}.tmp-{os.getpid()}"
            tmp.write_bytes(content)
            os.replace(str(tmp), str(target))
        data = target.read_bytes()
        written[name] = {"path": str(target), "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return written
