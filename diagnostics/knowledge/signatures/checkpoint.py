"""Reading a checkpoint file: the unpickler, safetensors headers, truncated archives, files that are not checkpoints."""

from __future__ import annotations

from typing import List

from .base import Cause, Need, PROBLEM_OR_NOTE, Pattern, Signature

SIGNATURES: List[Signature] = [
    Signature(
        "K06", "torch-weights-only", "torch >= 2.6 refuses to unpickle a Lightning checkpoint (weights_only)",
        patterns=(
            Pattern(r"Weights only load failed.*(?:Unsupported global: GLOBAL|WeightsUnpickler error: Unsupported "
                    r"class) (?P<global>(?:pytorch_lightning|lightning|omegaconf|numpy|argparse|collections)[\w.]*)",
                    label="torch >= 2.6 default weights_only=True", versions=({"torch": ">=2.6"},)),
            Pattern(r"WeightsUnpickler error: Unsupported (?:global: GLOBAL|class) (?P<global>[\w.]+)",
                    label="weights_only=True (explicit or default)"),
        ),
        cause="torch 2.6 changed torch.load's default to weights_only=True. Original SD .ckpt files are Lightning "
              "training checkpoints that pickle pytorch_lightning's ModelCheckpoint callback (and sometimes numpy "
              "or omegaconf objects), which the safe unpickler refuses; ldm calls torch.load without weights_only.",
        fix="For a file you trust: `torch.load(path, map_location='cpu', weights_only=False)` at the call site, or "
            "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 where the call site passes no weights_only; or allow the globals "
            "with `torch.serialization.add_safe_globals([...])`. Best: convert once to safetensors or a plain "
            "state_dict file.",
        causes=(
            Cause("K06.a", "torch >= 2.6 with a checkpoint that pickles non-tensor objects",
                  (Need("the installed torch defaults to weights_only=True", ("compat.torch-weights-only-default",),
                        refutes=("ok", "info"), versions=({"torch": ">=2.6"},)),
                   Need("the checkpoint holds globals the safe unpickler refuses", ("ckpt.weights-only-refused",),
                        confirms=PROBLEM_OR_NOTE)),
                  "Convert the checkpoint to safetensors, or load it with weights_only=False if you trust it."),
        ),
        links=("https://pytorch.org/docs/stable/notes/serialization.html#weights-only",
               "https://github.com/Lightning-AI/pytorch-lightning/issues/20450"),
    ),
    Signature(
        "K20", "safetensors-header", "The .safetensors file is not a valid safetensors file",
        patterns=(
            Pattern(r"Error while deserializing header: (?P<kind>[A-Z]\w+|"
                    r"header too large|header too small|incomplete metadata, file not fully covered|invalid \w+)"),
            Pattern(r"SafetensorError|safetensors_rust\.\w+Error", label="safetensors could not read the file"),
        ),
        cause="The file is not safetensors (an HTML error page or git-lfs pointer: the first 8 bytes read as a huge "
              "header length → header too large), or the download was cut (incomplete metadata), or it is "
              "almost empty (header too small).",
        fix="Download the file again and compare its size and sha256 with the source (the Hub shows both); with "
            "git, run `git lfs pull`.",
        causes=(
            Cause("K20.a", "The checkpoint file is truncated or not a checkpoint",
                  (Need("the checkpoint file is corrupt or of another format", ("ckpt.corrupt", "ckpt.format"),
                        confirms=("fail",), refutes=("ok", "info")),),
                  "Re-download the checkpoint."),
        ),
    ),
    Signature(
        "K21", "ckpt-truncated-zip", "Truncated torch zip checkpoint",
        patterns=(
            Pattern(r"PytorchStreamReader failed reading zip archive: failed finding central directory"),
            Pattern(r"PytorchStreamReader failed reading (?:zip archive|file [\w/.]+): (?:invalid header or archive "
                    r"is corrupted|file read failed)", label="partially readable archive"),
            Pattern(r"OSError: \[Errno 22\] Invalid argument", frames=r"_open_zipfile_reader|PyTorchFileReader",
                    label="torch 2.14 zip reader on a cut file", versions=({"torch": ">=2.14"},)),
        ),
        cause="A zip-format .ckpt/.pt whose end is missing: an interrupted download or copy (the zip directory "
              "lives at the end of the file).",
        fix="Download the checkpoint again and compare size and sha256 with the published values.",
        causes=(
            Cause("K21.a", "The checkpoint file is truncated",
                  (Need("the checkpoint file is corrupt", ("ckpt.corrupt",), confirms=("fail",)),),
                  "Re-download the checkpoint."),
        ),
    ),
    Signature(
        "K22", "ckpt-not-a-checkpoint", "The checkpoint is a git-lfs pointer or an HTML page",
        patterns=(
            Pattern(r"You seem to have cloned a repository without having git-lfs installed", scope="any",
                    label="transformers: a git-lfs pointer where weights should be"),
            Pattern(r"git lfs pull|version https://git-lfs\.github\.com/spec", scope="any",
                    label="a git-lfs pointer in the log"),
            Pattern(r"(?:EOFError: Ran out of input|pickle data was truncated|could not find MARK|"
                    r"A load persistent id instruction was encountered)", frames=r"torch|pickle|serialization|load",
                    label="an empty, cut or random file read as a pickle"),
            Pattern(operation="checkpoint-read",
                    exception=r"^(?!.*(?:OutOfMemory|ModuleNotFound|MemoryError|Cuda|CUDA|KeyboardInterrupt)).",
                    label="any error while reading the checkpoint file"),
            Pattern(r"invalid load key, '(?P<key>[^']{1,8})'", label="weights_only=False"),
            Pattern(r"Weights only load failed.*WeightsUnpickler error: Unsupported operand (?P<op>\d+)\b",
                    label="torch >= 2.6 default weights_only=True", versions=({"torch": ">=2.6"},)),
            Pattern(r"Error verifying pickled file from", scope="any",
                    label="AUTOMATIC1111 safe unpickler"),
        ),
        cause="The file is text: a git-lfs pointer (`version https://git-lfs.github.com/spec/v1`, from a git clone "
              "without git-lfs) or an HTML page (a login or error page saved instead of the file).",
        fix="`git lfs install && git lfs pull` in the clone, or download the file directly (the Hub's "
            "resolve/main URL, with a token for gated repos).",
        causes=(
            Cause("K22.a", "The checkpoint file is a pointer or web page",
                  (Need("the checkpoint file is not a checkpoint", ("ckpt.format", "ckpt.corrupt"),
                        confirms=("fail",), refutes=("ok", "info")),),
                  "Fetch the real file (git lfs pull / direct download)."),
        ),
    ),
    Signature(
        "K40", "ckpt-pickled-class", "The checkpoint pickles a class that cannot be imported here",
        patterns=(
            Pattern(r"Can't get attribute '(?P<name>\w+)' on <module '(?P<module>[\w.]+)'",
                    label="the class moved or was renamed"),
            Pattern(operation="checkpoint-read", exception=r"ModuleNotFoundError|AttributeError",
                    label="unpickling needs a module that is not importable"),
        ),
        cause="A full (not weights-only) checkpoint stores Python objects by their module and class name; "
              "unpickling imports them, so a class renamed, moved or from a package not installed here fails.",
        fix="Install the package the class comes from, or (for a file you trust) re-save the checkpoint as a "
            "plain state dict or safetensors where it loads; weights_only=True never imports classes.",
        causes=(
            Cause("K40.a", "The checkpoint pickles objects besides tensors",
                  (Need("the checkpoint holds pickled objects that weights_only refuses", ("ckpt.weights-only-refused",),
                        confirms=PROBLEM_OR_NOTE),),
                  "Convert the checkpoint once to safetensors."),
        ),
    ),
]
