"""The codes the remedies emit (no check of their own)."""

from ..registry import CodeDoc

OTHER_CODES = [
    CodeDoc("remedy.clip-offline", "Offline provisioning of CLIP",
            "`provision-clip`: the checkpoint's CLIP text encoder and tokenizer placed where FrozenCLIPEmbedder "
            "loads them offline, with the checks re-run before and after."),
]
