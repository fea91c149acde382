"""The vocabulary of the knowledge base: signatures, their patterns, causes and the questions
(`Need`) that checks answer; and the questions several signatures share.

The failure-signature knowledge base, as data.

One `Signature` per known failure of CompVis/Stability `ldm` deployments (K01-K33 of the
research notes). Each holds:
- `patterns`: regular expressions searched in the log, each with where it is searched (`scope`),
  the versions whose wording it is (`versions`), and a label for that variant;
- `causes`: what can make it happen, each with the checks (`Need`) that decide on this machine
  whether that cause is true, and the fix for that cause;
- `reproduce`: checks that say whether the failure itself still happens here (e.g. the CLIP
  tokenizer check for K01), independent of the cause;
- the finding codes it points to (every code named in a `Need`), a summary cause, fix and links.

Patterns are matched
against text with whitespace collapsed to single spaces, so they are written for one line.

Versions: a `versions` value is a tuple of alternatives; each alternative maps a package label (as
in `probes.environment.LDM_STACK`, plus "python") to a PEP 440 specifier, or to "absent" /
"present". The local part of a version (`+cu121`) is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

Versions = Tuple[Dict[str, str], ...]

# How a check's finding status reads for one question; see `Need`.
PROBLEM = ("fail", "warn")  # the check found the problem
PROBLEM_OR_NOTE = ("fail", "warn", "info")  # info counts: e.g. "xformers is not installed" is info


@dataclass(frozen=True)
class Need:
    """One question a cause depends on, answered by a check's finding or by installed versions.

    `codes`: finding codes, any of which can answer (e.g. `hub.dns` or `hub.connect`). A finding
    whose status is in `confirms` says yes, in `refutes` says no; other statuses (skip, error)
    leave it open; a need with neither only records what the check says. When the status alone
    cannot tell (ckpt.clip-position-ids is `ok` both when the key is absent and when it is sane),
    `evidence_key` names a field of the finding's evidence whose value decides first
    (`evidence_confirms` / `evidence_refutes`). `versions`: installed versions that make the answer
    yes (no when they are known and outside), used when no check answers. `required=False` needs
    only add evidence."""

    says: str
    codes: Tuple[str, ...] = ()
    confirms: Tuple[str, ...] = PROBLEM
    refutes: Tuple[str, ...] = ("ok",)
    versions: Versions = ()
    required: bool = True
    evidence_key: str = ""
    evidence_confirms: Tuple[Any, ...] = ()
    evidence_refutes: Tuple[Any, ...] = ()


@dataclass(frozen=True)
class Cause:
    id: str  # e.g. "K01.b"
    title: str
    needs: Tuple[Need, ...]
    fix: str


@dataclass(frozen=True)
class Pattern:
    """How a signature is recognised: a message `regex`; or an `operation` (see operations.py) with
    an `exception` class regex; or an `analysis` tag of the state-dict analyser (state_dict.py)."""

    regex: str = ""
    scope: str = "exception"  # exception (Type: message) | line (any log line or warning) | any
    label: str = ""  # which wording this is, e.g. "transformers 4.19-4.4x"
    versions: Versions = ()  # versions that print this wording (informational)
    frames: str = ""  # regex that must match a frame (file, function or code) of the same traceback
    blocking: bool = True  # False for wordings that only warn (deprecations, fallbacks)
    # A catch-all wording raised on top of the real error (`raise ... from e`, or while handling it):
    # when the same traceback also shows a known error further up its chain, that one explains the
    # failure. E.g. huggingface_hub < 1.0 turns a 401 into LocalEntryNotFoundError ("check your
    # connection"), and transformers 4.x turns a GatedRepoError into "is not a valid model identifier".
    wrapper: bool = False
    operation: str = ""  # the failed operation, e.g. "text-encoder-load"
    exception: str = ""  # regex on the exception class (its last dotted part), with `operation`
    analysis: str = ""  # a verdict tag of the state-dict analyser, e.g. "unet-in-channels"
    # A wording many failures share (`No module named X`): it explains the failure only when no
    # other signature's wording or analysis does. Operation patterns are always such fallbacks.
    fallback: bool = False

    @property
    def generic(self) -> bool:
        return self.fallback or bool(self.operation)


@dataclass(frozen=True)
class Signature:
    id: str  # K01..
    slug: str
    title: str
    patterns: Tuple[Pattern, ...]
    cause: str
    fix: str
    causes: Tuple[Cause, ...] = ()
    reproduce: Tuple[Need, ...] = ()
    context: Tuple[str, ...] = ()  # codes shown as background (never decide)
    links: Tuple[str, ...] = ()
    blocking: bool = True

    @property
    def codes(self) -> List[str]:
        """Every finding code this signature points to, in the order they are asked."""
        seen: List[str] = []
        for need in list(self.reproduce) + [n for c in self.causes for n in c.needs]:
            for code in need.codes:
                if code not in seen:
                    seen.append(code)
        for code in self.context:
            if code not in seen:
                seen.append(code)
        return seen


CLIP = "openai/clip-vit-large-patch14"
# The statuses below follow the checks' own conventions (rules/hub.py, rules/cache.py): a hub
# problem is `info` when every needed file is cached anyway; cache.offline-flag fails only when
# offline mode is on *and* a needed file is missing; cache.model-missing warns when a missing file
# can still be downloaded.
_NET = Need("the Hugging Face Hub cannot be reached from here", ("hub.dns", "hub.connect"), confirms=PROBLEM_OR_NOTE)
_EMPTY = Need("the model files are missing from the cache and cannot be fetched", ("cache.model-missing",),
              confirms=("fail",))
_OFFLINE = Need("offline mode (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE) is on while files are missing",
                ("cache.offline-flag",), confirms=("fail",), refutes=("ok", "info", "warn"))
_TLS = Need("TLS to the Hub fails (certificate not trusted)", ("hub.tls",), confirms=PROBLEM_OR_NOTE)
_PROXY = Need("the proxy in HTTPS_PROXY/HTTP_PROXY fails", ("hub.proxy",), refutes=("ok", "info"))
_HTTP = Need("the Hub answers the file request with an error status", ("hub.http-status",), confirms=PROBLEM_OR_NOTE)
# model.load-keys loads with strict=False: a harmless unexpected key is `info` there.
_LOAD_KEYS = Need("loading the checkpoint into the model reports key mismatches here", ("model.load-keys",),
                  confirms=PROBLEM_OR_NOTE)
_READONLY = Need("the cache directory is not writable", ("cache.not-writable",), refutes=("ok", "info"))
_PREFETCH = (f"On a machine with network, fill the cache this transformers reads: `huggingface-cli download {CLIP}` "
             "(or `python -m diagnostics provision-clip`), copy it to the server, then set HF_HUB_OFFLINE=1 "
             "(and TRANSFORMERS_OFFLINE=1 for transformers < 4.22). Or point `cond_stage_config.params.version` "
             "in the YAML at a local folder holding vocab.json, merges.txt, tokenizer_config.json, "
             "special_tokens_map.json, config.json and the weights.")

